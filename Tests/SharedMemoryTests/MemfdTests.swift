import Foundation
import SystemPackage
import Testing
@testable import SharedMemory

/// What only memfd regions have: no name anywhere, and seals.
@Suite("memfd")
struct MemfdTests {
    @Test("a memfd has no name in any namespace, and its label shows only in /proc")
    func noName() throws {
        let label = "smtest-\(getpid())-noname"
        let region = try MemfdRegion.create(try .memfd(label), size: 4096)
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: "/dev/shm")).contains { $0.contains(label) })
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(region.fileDescriptor!.rawValue)")
        #expect(link == "/memfd:\(label) (deleted)")
        expectError(.unsupported) { try region.remove() }
        expectError(.unsupported) { try SharedMemory.open(region.name) }
        expectError(.unsupported) { try SharedMemory.remove(region.name) }
        expectError(.unsupported) { try SharedMemory.list(.memfd) }
        let info = try region.info()
        #expect(info.size == 4096)
        #expect(info.permissions == [.ownerReadWrite])
        #expect(info.attachCount == 1)
        #expect(fcntl(region.fileDescriptor!.rawValue, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test("a System V segment, which maps prints with its id as inode on the memfds' device, is never counted as a memfd")
    func attachCountIgnoresSystemV() {
        let segment = Array("7f0000000000-7f0000001000 rw-s 00000000 00:01 5234                       /SYSV5d001234 (deleted)".utf8)
        let memfd = Array("7f0000002000-7f0000003000 rw-s 00000000 00:01 5234                       /memfd:orders (deleted)".utf8)
        #expect(ProcMaps.parse(segment[...]) == nil)
        #expect(ProcMaps.parse(memfd[...]) == ProcMaps.FileID(major: 0, minor: 1, inode: 5234))
    }

    @Test("seals can be added and read; sealed sizes and further seals are refused")
    func seals() throws {
        var region = try MemfdRegion.create(try .memfd("seals"), size: 8192)
        let initial = try region.seals
        #expect(initial.isSubset(of: [.exec]))  // MFD_NOEXEC_SEAL adds the exec seal on Linux 6.3+
        try region.addSeals([.grow])
        let grow = expectError(.sealed) { try region.resize(to: 16384) }
        #expect(grow?.reason.contains("sealed against growing (seals: [grow") == true, "\(grow?.reason ?? "")")
        try region.resize(to: 4096)
        try region.addSeals([.shrink])
        expectError(.sealed) { try region.resize(to: 100) }
        #expect(region.size == 4096)
        // A write seal while this writable mapping exists is busy; a future-write seal is not.
        expectError(.busy) { try region.addSeals([.write]) }
        try region.addSeals([.futureWrite, .seal])
        try region.set(bytes: [1], at: 0)  // this mapping stays writable
        // The error names the seals the object has, not the ones asked for.
        let further = expectError(.sealed) { try region.addSeals([.write]) }
        #expect(further?.reason.contains("futureWrite") == true && further?.reason.contains("[write]") == false)
        #expect(try region.seals == initial.union([.grow, .shrink, .futureWrite, .seal]))
    }

    @Test("a POSIX object cannot be sealed, and says so")
    func posixSeals() throws {
        try Names.with(.posix) { name in
            let region = try POSIXRegion.create(name, size: 4096)
            #expect(try region.seals == [.seal])
        }
    }

    @Test("labels follow the kernel's rules", arguments: ["", String(repeating: "x", count: 250), "a\u{0}b"])
    func badLabels(label: String) {
        expectError(.invalidName) { try RegionName.memfd(label) }
    }

    @Test("the longest label (249 bytes) works")
    func longestLabel() throws {
        let region = try SharedMemory.create(try .memfd(String(repeating: "m", count: 249)), size: 100)
        #expect(region.size == 100)
    }

    @Test("reserving more than the machine's memory is refused up front, not by the OOM killer")
    func tooLargeToReserve() throws {
        let error = expectError(.noSpace) { try SharedMemory.create(try .memfd("huge"), size: 1 << 50) }
        #expect(error?.reason.contains("more than this machine's memory") == true)
        let sparse = try SharedMemory.create(try .memfd("sparse"), size: 1 << 40, options: .init(reserve: false))
        #expect(sparse.size == 1 << 40)
    }
}
