import Glibc
import SystemPackage
import Testing
import SharedMemory  // not @testable: a user's own conformer sees only the public API

/// A user's own `SharedRegion`: a POSIX region wrapped with a counter of resizes, forwarding what it must and
/// taking every default (`_bytes` among them, read from `mapping`).
private struct CountingRegion: SharedRegion, ~Copyable {
    var inner: POSIXRegion
    var resizes = 0

    var mapping: RegionMapping { inner.mapping }
    mutating func resize(to newSize: Int) throws(SharedMemoryError) {
        try inner.resize(to: newSize)
        resizes += 1
    }
    mutating func remap() throws(SharedMemoryError) -> Int { try inner.remap() }
    func remove() throws(SharedMemoryError) { try inner.remove() }
    func info() throws(SharedMemoryError) -> RegionInfo { try inner.info() }
    func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) { try inner.setPermissions(permissions) }
    func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) { try inner.setOwner(uid: uid, gid: gid) }
    var fileDescriptor: FileDescriptor? { inner.fileDescriptor }
}

/// Design.md: a conforming type of a user's gets `_bytes` from `mapping` by default, so `get` and `set` check
/// what the mapping allows now, after a resize too, concrete and through the existential.
@Suite struct UserConformerTests {
    @Test func defaultsFollowTheMapping() throws {
        let name = try RegionName.posix("/smtest-conformer-\(getpid())-\(UInt32.random(in: 0...0xffff))")
        defer { _ = try? SharedMemory.remove(name) }
        var region = CountingRegion(inner: try POSIXRegion.create(name, size: 4096))
        try region.set(UInt64(0x1122_3344_5566_7788), at: 4088)
        #expect(try region.get(UInt64.self, at: 4088) == 0x1122_3344_5566_7788)
        let outside = #expect(throws: SharedMemoryError.self) { try region.get(UInt64.self, at: 4089) }
        #expect(outside?.code == .outOfBounds)

        try region.resize(to: 8192)
        #expect(region.resizes == 1)
        #expect(region.size == 8192)
        try region.set(UInt32(7), at: 8188)
        #expect(try region.get(UInt32.self, at: 8188) == 7)
        #expect(try region.get(UInt64.self, at: 4088) == 0x1122_3344_5566_7788)

        try region.resize(to: 4096)
        let shrunk = #expect(throws: SharedMemoryError.self) { try region.set(UInt32(7), at: 8188) }
        #expect(shrunk?.code == .outOfBounds)

        let existential: any SharedRegion & ~Copyable = region
        #expect(try existential.get(UInt64.self, at: 4088) == 0x1122_3344_5566_7788)
        #expect((try? existential.get(UInt64.self, at: 4096)) == nil)

        let reader = CountingRegion(inner: try POSIXRegion.open(name, options: .init(access: .readOnly)))
        #expect(try reader.get(UInt64.self, at: 4088) == 0x1122_3344_5566_7788)
        let readOnly = #expect(throws: SharedMemoryError.self) { try reader.set(UInt64(1), at: 0) }
        #expect(readOnly?.code == .readOnly)
        try existential.remove()
    }
}
