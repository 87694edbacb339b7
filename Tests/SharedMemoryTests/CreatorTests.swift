import Foundation
import Synchronization
import Testing
@testable import SharedMemory

/// Who created a region, whether it still runs, its lifetime, and which regions are orphans.
@Suite("Creators, lifetimes and orphans")
struct CreatorTests {
    @Test("records, names and the creator attribute are assembled exactly as interpolation would write them")
    func asciiText() {
        let integers: [Int64] = [0, 1, 9, 10, 99, 100, 12_345, -1, -10, 999_999_999_999_999_999, Int64.max, Int64.min]
        for value in integers {
            var text = ASCIIText(capacity: 0)
            text.append(decimal: value)
            #expect(text.string == "\(value)")
        }
        for value: UInt64 in [0, 9, 10, 10_000_000_000_000_000_000, UInt64.max, UInt64.max - 1] {
            var text = ASCIIText()
            text.append(decimal: value)
            #expect(text.string == "\(value)")
        }
        // A stack buffer that is outgrown moves to the heap and keeps what it had.
        let long = ASCIIText.withStack(capacity: 16) { text in
            text.append("creator ")
            for i in 0..<40 { text.append(decimal: Int32(i)) }
            text.append(contentsOf: "posix:/é")
            text.append(hex16: 0x0123_4567_89ab_cdef)
            return text.string
        }
        #expect(long == "creator " + (0..<40).map(String.init).joined() + "posix:/é" + "0123456789abcdef")
        #expect(randomName(".tmp-").count == 5 + 16 && randomName(".tmp-").hasPrefix(".tmp-") && randomName("") != randomName(""))
    }

    @Test("the creator is known, and so is whether it still runs", arguments: [Backend.systemV, .posix, .file])
    func creator(backend: Backend) throws {
        try Names.with(backend) { name in
            let mine = try SharedMemory.create(name, size: 4096)
            let info = try mine.info()
            #expect(info.creatorPID == getpid())
            #expect(info.creatorIsAlive == true)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
        }
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096"]) == "ok 4096")
            let info = try SharedMemory.info(name)
            #expect(info.creatorPID != nil && info.creatorPID != getpid())
            #expect(info.creatorIsAlive == false)
        }
    }

    @Test("a process's first creates, from 8 threads at once, each record it as the creator")
    func firstCreatesAtOnce() async {
        // In a process of its own, so that these are its first creates: the record of who this process is gets
        // made by whichever thread comes first while the others wait for it (under ThreadSanitizer, a race there
        // ends the process with 66).
        await #expect(processExitsWith: .success) {
            let wrong = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                do {
                    try Names.with(.posix) { name in
                        let region = try SharedMemory.create(name, size: 4096)
                        if try region.info().creatorPID != getpid() { wrong.add(1, ordering: .relaxed) }
                    }
                } catch {
                    wrong.add(1, ordering: .relaxed)
                }
            }
            if wrong.load(ordering: .relaxed) != 0 { exit(1) }
        }
    }

    @Test("a process lifetime is recorded, shown, and its record goes with the region", arguments: Backend.allCases)
    func lifetime(backend: Backend) throws {
        try Names.with(backend) { name in
            let persistent = try SharedMemory.create(name, size: 4096)
            let expected: Lifetime = backend.capabilities.contains(.named) ? .persistent : .process
            #expect(try persistent.info().lifetime == expected)
            guard backend.capabilities.contains(.named) else { return }
            try persistent.remove()

            let temporary = try SharedMemory.create(name, size: 4096, options: .init(lifetime: .process))
            let info = try temporary.info()
            #expect(info.lifetime == .process)
            #expect(try SharedMemory.info(backend == .systemV ? RegionName.systemV(id: info.systemVID!) : name).lifetime == .process)
            let records = LifetimeRecords.all(owner: getuid()).records.filter { $0.name == name }
            #expect(records.count == 1)
            try temporary.remove()
            #expect(!LifetimeRecords.all(owner: getuid()).records.contains { $0.name == name }, "the record outlived the region")
        }
    }

    @Test("createUnique makes process-lifetime regions", arguments: Backend.named)
    func uniqueIsTemporary(backend: Backend) throws {
        let region = try SharedMemory.createUnique(backend, size: 4096)
        defer { try? region.remove() }
        #expect(try region.info().lifetime == .process)
    }

    @Test("an orphan is a process-lifetime region, unattached, with a dead creator; removeOrphan checks again", arguments: [Backend.systemV, .posix, .file])
    func orphans(backend: Backend) throws {
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096", "600", "process"]) == "ok 4096")
            let orphan = try #require(try SharedMemory.orphans().first { $0.name == name })
            #expect(orphan.attachCount == 0 && orphan.lifetime == .process)
            #expect(!(try SharedMemory.leftovers()).contains { $0.name == name })

            // Attached again, it is no orphan: removeOrphan leaves it.
            let holder = try Probe.Holder(name)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
            #expect(try SharedMemory.removeOrphan(orphan) == false)
            holder.release()

            #expect(try SharedMemory.removeOrphan(orphan) == true)
            expectError(.notFound) { try SharedMemory.info(name) }
            #expect(try SharedMemory.removeOrphan(orphan) == false)
            #expect(!LifetimeRecords.all(owner: getuid()).records.contains { $0.name == name }, "the record outlived the region")
        }
    }

    @Test("a persistent region whose creator is gone is a leftover, kept: never an orphan", arguments: [Backend.systemV, .posix])
    func persistentIsKept(backend: Backend) throws {
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096"]) == "ok 4096")
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
            let leftover = try #require(try SharedMemory.leftovers().first { $0.name == name })
            #expect(leftover.lifetime == .persistent)
            #expect(try SharedMemory.removeOrphan(leftover) == false)
            _ = try SharedMemory.info(name)
            #expect(try SharedMemory.removeOrphan(leftover, includingPersistent: true) == true)
            expectError(.notFound) { try SharedMemory.info(name) }
        }
    }

    @Test("an orphan re-created under the same name between listing and removal is left alone", arguments: [Backend.posix, .file])
    func recreated(backend: Backend) throws {
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096", "600", "process"]) == "ok 4096")
            let orphan = try #require(try SharedMemory.orphans().first { $0.name == name })
            try SharedMemory.remove(name)
            #expect(try Probe.run(["create", name.description, "4096", "600", "process"]) == "ok 4096")  // an orphan too
            #expect(try SharedMemory.removeOrphan(orphan) == false)
            #expect(try SharedMemory.info(name).creatorPID != orphan.creatorPID)  // the new one is still there
        }
    }

    @Test("objects other programs made have no recorded creator and are never orphans")
    func unknownCreator() throws {
        try Names.with(.posix) { name in
            #expect(FileManager.default.createFile(atPath: path(of: name), contents: Data(count: 100), attributes: [.posixPermissions: 0o600]))
            let info = try SharedMemory.info(name)
            #expect(info.creatorPID == nil)
            #expect(info.creatorIsAlive == nil)
            #expect(info.lifetime == .persistent)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
        }
    }

    @Test("a corrupt record makes its region persistent, and gc removes the record; a stale one too")
    func corruptRecord() throws {
        try Names.with(.posix) { name throws in
            #expect(try Probe.run(["create", name.description, "4096", "600", "process"]) == "ok 4096")
            let info = try SharedMemory.info(name)
            let file = "/dev/shm/.sharedmemory-\(getuid())/posix-\(info.device!)-\(info.inode!)"
            try "sharedmemory-lifetime 1\ncreator x".write(toFile: file, atomically: false, encoding: .utf8)
            #expect(try SharedMemory.info(name).lifetime == .persistent)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
            // A half-written record a dead writer left: kept while it may still be being written, removed once a
            // minute old.
            let young = "/dev/shm/.sharedmemory-\(getuid())/.tmp-young\(getpid())", old = "/dev/shm/.sharedmemory-\(getuid())/.tmp-old\(getpid())"
            try "sharedmemory-lifetime 1\n".write(toFile: young, atomically: false, encoding: .utf8)
            try "sharedmemory-lifetime 1\n".write(toFile: old, atomically: false, encoding: .utf8)
            defer { unlink(young) }
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -120)], ofItemAtPath: old)
            let removed = SharedMemory.removeStaleRecords()
            #expect(removed.contains(file))
            #expect(removed.contains(old) && !removed.contains(young), "\(removed)")
            #expect(!FileManager.default.fileExists(atPath: file) && !FileManager.default.fileExists(atPath: old))
            #expect(FileManager.default.fileExists(atPath: young))
            _ = try SharedMemory.info(name)  // the region itself is untouched
        }
        try Names.with(.systemV) { name throws in
            #expect(try Probe.run(["create", name.description, "4096", "600", "process"]) == "ok 4096")
            _ = try shell("ipcrm -M \(name.description.dropFirst(5))")  // removed behind the library's back
            #expect(SharedMemory.removeStaleRecords().contains(name.description))
        }
    }

    @Test("another user's record directory, or one others can write, is never used or believed")
    func squattedRecordDirectory() throws {
        let directory = "/dev/shm/.sharedmemory-65534"
        try #require(mkdir(directory, 0o777) == 0 && chmod(directory, 0o777) == 0)  // root's, open to all: not 65534's
        defer { rmdir(directory) }
        try Names.with(.posix) { name throws in
            let answer = try Probe.run(["create", name.description, "4096", "600", "process"], uid: 65534)
            #expect(answer.hasPrefix("error foreign") && answer.contains(directory), "\(answer)")
            expectError(.notFound) { try SharedMemory.info(name) }  // nothing half-made
            #expect(try Probe.run(["create", name.description, "4096", "600"], uid: 65534) == "ok 4096")
            #expect(try SharedMemory.info(name).lifetime == .persistent)
        }
    }
}
