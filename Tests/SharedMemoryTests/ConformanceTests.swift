import Foundation
import SystemPackage
import Testing
@testable import SharedMemory

/// The semantics every backend promises (Docs/Semantics.md), run on every backend. Where a backend lacks a
/// capability, the test proves it says so with `unsupported` rather than doing something else.
@Suite("Conformance")
struct ConformanceTests {
    @Test("create, open, open-or-create", arguments: Backend.allCases)
    func createOpenOpenOrCreate(backend: Backend) throws {
        try Names.with(backend) { name in
            let created = try SharedMemory.create(name, size: 4096)
            #expect(created.size == 4096)
            #expect(created.access == .readWrite)
            #expect(created.backend == backend)
            guard backend.capabilities.contains(.named) else {
                expectError(.unsupported) { try SharedMemory.open(name) }
                expectError(.unsupported) { try SharedMemory.openOrCreate(name, size: 4096) }
                return
            }
            #expect(created.name == name)
            try created.set(bytes: [1, 2, 3], at: 10)
            let opened = try SharedMemory.open(name)
            #expect(opened.size == 4096)
            #expect(try opened.get(count: 3, at: 10) == [1, 2, 3])
            let either = try SharedMemory.openOrCreate(name, size: 4096)
            #expect(try either.get(count: 3, at: 10) == [1, 2, 3])
            // Asking open-or-create for more than the region holds never grows it.
            expectError(.invalidArgument) { try SharedMemory.openOrCreate(name, size: 8192) }
            expectError(.invalidArgument) { try SharedMemory.open(name, options: .init(minimumSize: 4097)) }
            #expect(try SharedMemory.info(name).size == 4096)
        }
        guard backend.capabilities.contains(.named) else { return }
        try Names.with(backend) { name in
            let fresh = try SharedMemory.openOrCreate(name, size: 5000)
            #expect(fresh.size == 5000)
            #expect(try fresh.get(count: 5000, at: 0).allSatisfy { $0 == 0 })
        }
    }

    @Test("exclusive create of an existing region fails and leaves it untouched", arguments: Backend.named)
    func exclusiveCreate(backend: Backend) throws {
        try Names.with(backend) { name in
            let first = try SharedMemory.create(name, size: 3000)
            try first.set(bytes: Array("original".utf8), at: 0)
            let error = expectError(.alreadyExists) { try SharedMemory.create(name, size: 5000) }
            #expect(error?.region == name)
            let again = try SharedMemory.open(name)
            #expect(again.size == 3000)
            #expect(try again.get(count: 8, at: 0) == Array("original".utf8))
        }
    }

    @Test("open of a missing region is notFound", arguments: Backend.named)
    func openMissing(backend: Backend) throws {
        let name = Names.unique(backend)
        expectError(.notFound) { try SharedMemory.open(name) }
        expectError(.notFound) { try SharedMemory.info(name) }
        let removal = expectError(.notFound) { try SharedMemory.remove(name) }
        // Opening advises creating it first; removing says there is nothing to remove.
        #expect(removal?.reason.contains("nothing to remove") == true, "\(String(describing: removal))")
        #expect(removal?.reason.contains("create it first") == false)
    }

    @Test("the size is reported exactly as asked", arguments: Backend.allCases)
    func exactSize(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 3333)
            #expect(region.size == 3333)
            #expect(region.withUnsafeBytes { $0.count } == 3333)
            #expect(try region.info().size == 3333)
            if backend.capabilities.contains(.named) {
                #expect(try SharedMemory.open(name).size == 3333)
                #expect(try SharedMemory.info(name).size == 3333)
            }
            // The last byte is in bounds, the next is not.
            try region.set(UInt8(7), at: 3332)
            expectError(.outOfBounds) { try region.set(UInt8(7), at: 3333) }
        }
    }

    @Test("bounds are checked without overflow", arguments: Backend.allCases)
    func bounds(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 100)
            expectError(.outOfBounds) { try region.get(count: 1, at: -1) }
            expectError(.outOfBounds) { try region.get(count: -1, at: 0) }
            expectError(.outOfBounds) { try region.get(count: 101, at: 0) }
            expectError(.outOfBounds) { try region.get(count: Int.max, at: 1) }
            expectError(.outOfBounds) { try region.get(count: 1, at: Int.max) }
            expectError(.outOfBounds) { try region.set(bytes: [1, 2], at: 99) }
            expectError(.outOfBounds) { try region.get(UInt64.self, at: 93) }
            #expect(try region.get(count: 0, at: 100) == [])
            // A write that does not fit writes nothing.
            #expect(try region.get(count: 1, at: 99) == [0])
            try region.set(UInt64(0x0102_0304_0506_0708), at: 92)
            #expect(try region.get(UInt64.self, at: 92) == 0x0102_0304_0506_0708)
            try region.set(Int32(-5), at: 1)  // unaligned
            #expect(try region.get(Int32.self, at: 1) == -5)
        }
    }

    @Test("bytes written through one attachment are read through another", arguments: Backend.attachable)
    func twoAttachments(backend: Backend) throws {
        try Names.with(backend) { name in
            let a = try SharedMemory.create(name, size: 8192)
            let b = try attachAgain(a)
            try a.set(bytes: Array("from a".utf8), at: 4000)
            #expect(try b.get(count: 6, at: 4000) == Array("from a".utf8))
            try b.set(UInt64(42), at: 8)
            #expect(try a.get(UInt64.self, at: 8) == 42)
            a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in #expect(pa.baseAddress != pb.baseAddress) } }
        }
    }

    @Test("bytes cross to a second process and back", arguments: Backend.named)
    func secondProcess(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            try region.set(bytes: Array("hello".utf8), at: 100)
            #expect(try Probe.run(["read", name.description, "100", "5"]) == "ok 68656c6c6f")
            #expect(try Probe.run(["write", name.description, "2000", "cafe"]) == "ok")
            #expect(try region.get(count: 2, at: 2000) == [0xca, 0xfe])
        }
    }

    @Test("a child created by fork shares the memory", arguments: Backend.allCases)
    func forkedChild(backend: Backend) async {
        // In a test process of its own: a fork copies every mapping of the process that forks, and other tests
        // running meanwhile count the mappings of their regions (a posix region's attachCount read 2, not 1).
        await #expect(processExitsWith: .success) { [raw = backend.rawValue as String] in
            try Names.with(Backend(rawValue: raw)!) { name in
                let region = try SharedMemory.create(name, size: 4096)
                let base = region.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
                let child = fork()
                if child == 0 {
                    // Only memory and _exit in the child of a multithreaded process.
                    base.storeBytes(of: 0xC0FFEE, toByteOffset: 64, as: UInt32.self)
                    _exit(0)
                }
                var status: Int32 = 0
                guard child > 0, waitpid(child, &status, 0) == child, status == 0 else { exit(2) }
                guard try region.get(UInt32.self, at: 64) == 0xC0FFEE else { exit(3) }
            }
        }
    }

    @Test("read-only attachments read, refuse writes, and offer no write path", arguments: Backend.allCases)
    func readOnly(backend: Backend) throws {
        try Names.with(backend) { name in
            let writer = try SharedMemory.create(name, size: 4096)
            try writer.set(bytes: [9, 8, 7], at: 0)
            guard backend.capabilities.contains(.readOnlyAttach) else {
                expectError(.unsupported) { try SharedMemory.open(name, options: .init(access: .readOnly)) }
                return
            }
            var reader = try attachAgain(writer, access: .readOnly)
            #expect(reader.access == .readOnly)
            #expect(try reader.get(count: 3, at: 0) == [9, 8, 7])
            expectError(.readOnly) { try reader.set(bytes: [1], at: 0) }
            expectError(.readOnly) { try reader.set(UInt32(1), at: 0) }
            expectError(.readOnly) { try reader.withUnsafeMutableBytes { _ in Issue.record("body ran") } }
            if backend.capabilities.contains(.resizable) {
                expectError(.readOnly) { try reader.resize(to: 8192) }
            }
            #expect(try writer.get(count: 3, at: 0) == [9, 8, 7])
        }
    }

    @Test("a raw write through a read-only attachment is a SIGSEGV", arguments: Backend.allCases.filter { $0.capabilities.contains(.readOnlyAttach) })
    func readOnlyCrash(backend: Backend) async throws {
        let name = Names.unique(backend)
        defer { Names.cleanUp(name) }
        let writer = try SharedMemory.create(name, size: 4096)
        let text = name.description
        await #expect(processExitsWith: .signal(SIGSEGV)) { [text = text as String] in
            // A new process: a region without a name (memfd) is made here and passed to ourselves read-only.
            let name = try RegionName(text)
            if name.backend.capabilities.contains(.named) {
                writeThrough(try SharedMemory.open(name, options: .init(access: .readOnly)))
            } else {
                let original = try SharedMemory.create(name, size: 4096)
                writeThrough(try attachAgain(original, access: .readOnly))
            }
        }
        #expect(try writer.get(UInt8.self, at: 0) == 0)
    }

    @Test("resize grows and shrinks where supported, and says unsupported elsewhere", arguments: Backend.allCases)
    func resize(backend: Backend) throws {
        try Names.with(backend) { name in
            var region = try SharedMemory.create(name, size: 4096)
            try region.set(bytes: Array(repeating: 0xAB, count: 4096), at: 0)
            guard backend.capabilities.contains(.resizable) else {
                let error = expectError(.unsupported) { try region.resize(to: 8192) }
                #expect(error?.reason.contains("\(backend)") == true)
                #expect(region.size == 4096)
                #expect(try region.get(count: 4096, at: 0).allSatisfy { $0 == 0xAB })
                return
            }
            var other = try attachAgain(region)
            try region.resize(to: 10000)
            #expect(region.size == 10000)
            #expect(try region.info().size == 10000)
            #expect(try region.get(count: 4096, at: 0).allSatisfy { $0 == 0xAB })
            #expect(try region.get(count: 10000 - 4096, at: 4096).allSatisfy { $0 == 0 })
            try region.set(UInt8(1), at: 9999)

            // The other attachment keeps its size until it remaps.
            #expect(other.size == 4096)
            #expect(try other.remap() == 10000)
            #expect(other.size == 10000)
            #expect(try other.get(UInt8.self, at: 9999) == 1)

            try region.resize(to: 100)
            #expect(region.size == 100)
            #expect(try region.get(count: 100, at: 0).allSatisfy { $0 == 0xAB })
            expectError(.outOfBounds) { try region.get(count: 1, at: 100) }
            // The typed accessors check against the size too (they read a copy the resize renews).
            expectError(.outOfBounds) { try region.get(UInt8.self, at: 100) }
            expectError(.outOfBounds) { try region.set(UInt8(1), at: 100) }
            #expect(try region.get(UInt8.self, at: 99) == 0xAB)
            try other.remap()
            #expect(other.size == 100)
            expectError(.outOfBounds) { try other.get(UInt8.self, at: 100) }
            let existential: any SharedRegion & ~Copyable = consume other
            expectError(.outOfBounds) { try existential.set(UInt8(1), at: 100) }
            #expect(try existential.get(UInt8.self, at: 99) == 0xAB)

            // Growing again after a shrink brings zeros, not the old bytes.
            try region.resize(to: 4096)
            #expect(try region.get(count: 4096 - 100, at: 100).allSatisfy { $0 == 0 })
            expectError(.invalidArgument) { try region.resize(to: 0) }
            expectError(.invalidArgument) { try region.resize(to: -1) }
            #expect(region.size == 4096)
        }
    }

    @Test("remove while attached: the name goes now, the memory when the last attachment detaches", arguments: Backend.named)
    func removeWhileAttached(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let second = try SharedMemory.open(name)
            try region.set(bytes: [1, 2, 3], at: 0)
            try region.remove()
            // Both attachments keep working.
            try region.set(bytes: [4], at: 3)
            #expect(try second.get(count: 4, at: 0) == [1, 2, 3, 4])
            // The name is gone.
            expectError(.notFound) { try SharedMemory.open(name) }
            expectError(.notFound) { try SharedMemory.info(name) }
            expectError(.notFound) { try region.remove() }
            expectError(.notFound) { try second.remove() }
            expectError(.notFound) { try SharedMemory.remove(name) }
            // The name can be used again at once, for a new region that has nothing to do with the old one.
            let successor = try SharedMemory.create(name, size: 100)
            #expect(try successor.get(count: 4, at: 0) == [0, 0, 0, 0])
            // This attachment sees that it was replaced, and never removes the successor.
            expectError(.removed) { try region.remove() }
            #expect(try region.info().isMarkedForRemoval)
            #expect(!(try successor.info().isMarkedForRemoval))
            #expect(try SharedMemory.info(name).size == 100)
        }
    }

    @Test("detach reports errors, and the dropped handle does not detach again", arguments: Backend.allCases)
    func detach(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            try region.set(bytes: [5], at: 0)
            if backend.capabilities.contains(.named) {
                let second = try SharedMemory.open(name)
                let address = second.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
                try second.detach()
                // Something new mapped where the detached one was must survive the old handle's end.
                let third = try SharedMemory.open(name, options: .init(address: .hint(address)))
                #expect(try third.get(count: 1, at: 0) == [5])
                try third.detach()
                #expect(try region.get(count: 1, at: 0) == [5])
                if backend.capabilities.contains(.exactAttachCount) {
                    #expect(try region.info().attachCount == 1)
                }
            }
            try region.detach()
        }
    }

    @Test("info agrees with ipcs and stat, and counts attachments", arguments: Backend.named)
    func infoAgreesWithKernel(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 12345, options: .init(permissions: [.ownerReadWrite, .groupRead]))
            let info = try region.info()
            #expect(info.name == name)
            #expect(info.size == 12345)
            #expect(info.permissions == [.ownerReadWrite, .groupRead])
            #expect(info.ownerUID == getuid())
            #expect(info.ownerGID == getgid())
            #expect(info == (try SharedMemory.info(name)))
            switch backend {
            case .systemV:
                let id = try #require(info.systemVID)
                // key shmid owner perms bytes nattch status
                let line = try shell("ipcs -m | awk '$2 == \(id)'").split(separator: " ", omittingEmptySubsequences: true)
                #expect(line.count >= 6)
                #expect(Int32(bitPattern: UInt32(line[0].dropFirst(2), radix: 16) ?? 0) == info.systemVKey)
                #expect(line[3] == "640")
                #expect(line[4] == "12345")
                #expect(line[5] == "1")
                #expect(info.attachCount == 1)
                #expect(info.creatorPID == getpid())
                #expect(info.creatorUID == getuid())
            default:
                let path = path(of: name)
                let fields = try shell("stat -c '%s %a %u %g %i' '\(path)'").split(whereSeparator: \.isWhitespace).map(String.init)
                #expect(fields == ["12345", "640", "\(getuid())", "\(getgid())", "\(info.inode ?? 0)"])
                #expect(info.attachCount == 1)
            }
            do {
                let second = try SharedMemory.open(name, options: .init(access: .readOnly))
                #expect(try second.info().attachCount == 2)
            }
            // The probe holds a third attachment from another process.
            let holder = try Probe.Holder(name, access: "ro")
            #expect(holder.answer == "ok 12345")
            #expect(try region.info().attachCount == 2)
            holder.release()
            #expect(try region.info().attachCount == 1)
        }
    }

    @Test("list shows what exists and not what was removed", arguments: Backend.allCases)
    func list(backend: Backend) throws {
        guard backend.capabilities.contains(.listable) else {
            expectError(.unsupported) { try SharedMemory.list(backend) }
            return
        }
        try Names.with(backend) { name in
            #expect(!(try SharedMemory.list(backend)).contains { $0.name == name })
            do {
                let region = try SharedMemory.create(name, size: 2222)
                let listed = try #require(try SharedMemory.list(backend).first { $0.name == name })
                #expect(listed.size == 2222)
                #expect(listed.permissions == [.ownerReadWrite])
                #expect(listed.ownerUID == getuid())
                #expect(listed.attachCount == 1)
                #expect(listed == (try region.info()))
                try region.remove()
                #expect(!(try SharedMemory.list(backend)).contains { $0.name == name })
                if backend == .systemV {
                    // Marked for removal, the segment is still listed under its id until the last detach.
                    let id = try #require(try region.info().systemVID)
                    let marked = try #require(try SharedMemory.list(.systemV).first { $0.systemVID == id })
                    #expect(marked.isMarkedForRemoval)
                    #expect(marked.name == (try RegionName.systemV(id: id)))
                }
            }
            if backend == .systemV {
                #expect(!(try SharedMemory.list(.systemV)).contains { $0.size == 2222 && $0.creatorPID == getpid() })
            }
        }
    }

    @Test("the mode is exact whatever the umask", arguments: Backend.named, ["022", "077", "000"])
    func exactModeUnderUmask(backend: Backend, umask: String) throws {
        for mode in ["600", "640", "666", "604"] {
            try Names.with(backend) { name throws in
                #expect(try Probe.run(["create", name.description, "4096", mode], umask: umask) == "ok 4096")
                #expect(try SharedMemory.info(name).permissions == FilePermissions(rawValue: CModeT(mode, radix: 8)!))
            }
        }
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096"], umask: umask) == "ok 4096")
            #expect(try SharedMemory.info(name).permissions == [.ownerReadWrite])
        }
    }

    @Test("another user cannot open or remove a 0600 region", arguments: Backend.named)
    func otherUser(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            try region.set(bytes: [1], at: 0)
            let nobody: UInt32 = 65534
            #expect(Probe.code(try Probe.run(["open", name.description, "rw"], uid: nobody)) == "permissionDenied")
            #expect(Probe.code(try Probe.run(["open", name.description, "ro"], uid: nobody)) == "permissionDenied")
            #expect(Probe.code(try Probe.run(["remove", name.description], uid: nobody)) == "permissionDenied")
            #expect(try SharedMemory.info(name).size == 4096)
            // Granting read to others lets the same user read, and still not write.
            try region.setPermissions([.ownerReadWrite, .otherRead])
            #expect(try Probe.run(["read", name.description, "0", "1"], uid: nobody) == "ok 01")
            #expect(Probe.code(try Probe.run(["write", name.description, "0", "02"], uid: nobody)) == "permissionDenied")
            #expect(try region.get(count: 1, at: 0) == [1])
        }
    }

    @Test("mode and owner can be changed", arguments: Backend.allCases)
    func changeModeAndOwner(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            guard backend.capabilities.contains(.changeOwner) else {
                expectError(.unsupported) { try region.setPermissions([.ownerRead]) }
                expectError(.unsupported) { try region.setOwner(uid: 65534, gid: 65534) }
                return
            }
            try region.setPermissions([.ownerReadWrite, .groupReadWrite])
            #expect(try region.info().permissions == [.ownerReadWrite, .groupReadWrite])
            expectError(.invalidArgument) { try region.setPermissions([.setUserID, .ownerRead]) }
            try region.setOwner(uid: 65534, gid: 65534)
            let info = try region.info()
            #expect(info.ownerUID == 65534)
            #expect(info.ownerGID == 65534)
        }
    }

    @Test("sizes of 0 or less are refused before anything is made", arguments: Backend.allCases)
    func badSizes(backend: Backend) throws {
        try Names.with(backend) { name in
            for size in [0, -1, Int.min] {
                expectError(.invalidArgument) { try SharedMemory.create(name, size: size) }
                if backend.capabilities.contains(.named) {
                    expectError(.notFound) { try SharedMemory.info(name) }
                    expectError(.invalidArgument) { try SharedMemory.openOrCreate(name, size: size) }
                    expectError(.notFound) { try SharedMemory.info(name) }
                }
            }
            expectError(.invalidArgument) { try SharedMemory.create(name, size: 4096, options: .init(permissions: FilePermissions(rawValue: 0o1600))) }
        }
    }

    @Test("a size beyond what the kernel allows is an error, with nothing left", arguments: Backend.allCases)
    func hugeSize(backend: Backend) throws {
        try Names.with(backend) { name in
            let error = try #require(expectError(of: [.noSpace, .limitExceeded]) { try SharedMemory.create(name, size: Int.max) })
            #expect(!error.reason.isEmpty)
            if backend.capabilities.contains(.named) {
                expectError(.notFound) { try SharedMemory.info(name) }
            }
        }
    }

    @Test("a fixed attach address that is taken is busy; a free one is used exactly", arguments: Backend.allCases)
    func attachAddress(backend: Backend) throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let scratch = try #require(mmap(nil, 16 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(scratch, 16 * page) }
        let taken = UInt(bitPattern: scratch)
        try Names.with(backend) { name in
            expectError(.busy) { try SharedMemory.create(name, size: 4096, options: .init(address: .fixed(taken))) }
            if backend.capabilities.contains(.named) {
                expectError(.notFound) { try SharedMemory.info(name) }  // backed out
            }
            expectError(.invalidArgument) { try SharedMemory.create(name, size: 4096, options: .init(address: .fixed(taken + 1))) }

            // Ask for exactly an address known to be free: 8 pages mapped and given back. Another test running at
            // the same time may map into them first (a window of microseconds): that create is rightly `busy`, and
            // the test tries a fresh address (never unmapping pages it gave back: they may be another test's now).
            func createAtFreedAddress(_ free: inout UInt, attempt: Int = 1) throws -> AnyRegion {
                let area = try #require(mmap(nil, 8 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
                munmap(area, 8 * page)
                free = UInt(bitPattern: area)
                do {
                    return try SharedMemory.create(name, size: 4096, options: .init(address: .fixed(free)))
                } catch {
                    guard error.code == .busy, attempt < 5 else { throw error }
                    return try createAtFreedAddress(&free, attempt: attempt + 1)
                }
            }
            var free: UInt = 0
            let region = try createAtFreedAddress(&free)
            #expect(region.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == free)
            try region.set(bytes: [1], at: 0)
            // A hint at a taken address still maps, somewhere else.
            if backend.capabilities.contains(.named) {
                let elsewhere = try SharedMemory.open(name, options: .init(address: .hint(taken)))
                #expect(elsewhere.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } != taken)
                #expect(try elsewhere.get(count: 1, at: 0) == [1])
                expectError(.busy) { try SharedMemory.open(name, options: .init(address: .fixed(free))) }
            }
        }
    }

    @Test("a failure half-way through create backs everything out", arguments: Backend.named)
    func createBacksOut(backend: Backend) throws {
        let attach = backend == .systemV ? "shmat" : "mmap"
        try Names.with(backend) { name in
            _ = injecting([attach: [.noMemory]]) {
                expectError(.noSpace) { try SharedMemory.create(name, size: 4096) }
            }
            expectError(.notFound) { try SharedMemory.info(name) }
            // EINTR is retried, not reported.
            try injecting([attach: [.interrupted, .interrupted]]) {
                _ = try SharedMemory.create(name, size: 4096)
            }
            #expect(try SharedMemory.info(name).size == 4096)
        }
    }
}

@Suite("Unique names")
struct UniqueNameTests {
    @Test("createUnique draws a fresh unguessable name, and draws again when one is taken", arguments: Backend.allCases)
    func unique(backend: Backend) throws {
        let first = try SharedMemory.createUnique(backend, size: 4096)
        defer { Names.cleanUp(first.name) }
        let second = try SharedMemory.createUnique(backend, size: 4096)
        defer { Names.cleanUp(second.name) }
        #expect(first.size == 4096)
        #expect(first.backend == backend)
        if backend != .anonymous { #expect(first.name != second.name) }
        switch first.name.location {
        case .posix(let object):
            #expect(object.count == 20)
            #expect(object.hasPrefix("/sm-"))
            #expect(object.dropFirst(4).allSatisfy { $0.isHexDigit })
        case .file(let path):
            #expect(path.removingLastComponent() == "/tmp")
            #expect(path.lastComponent?.string.count == 19)
        case .systemVID:
            #expect(try first.info().systemVKey == 0)
        case .anonymous:
            break
        case .memfd(let label):
            #expect(label.count == 19 && label.hasPrefix("sm-"))
        default:
            Issue.record("unexpected name \(first.name)")
        }
        if backend == .posix || backend == .file {
            // A collision is never adopted: the first draw "exists", the second is used.
            let open = backend == .posix ? "shm_open" : "open"
            let (third, size) = try injecting([open: [.fileExists]]) {
                let region = try SharedMemory.createUnique(backend, size: 100)
                return (region.name, region.size)
            }
            Names.cleanUp(third)
            #expect(size == 100)
        }
    }
}

/// Writes one byte through the raw pointer of what should be a read-only attachment.
func writeThrough(_ reader: borrowing some SharedRegion & ~Copyable) {
    reader.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!).storeBytes(of: 1, as: UInt8.self) }
}
