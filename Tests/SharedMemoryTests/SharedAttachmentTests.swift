import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// `SharedAttachment`: many tasks share one mapping, each making its own handles from it.
@Suite("One attachment shared by many tasks")
struct SharedAttachmentTests {
    /// The lines of /proc/self/maps that map `path` (read with read(2): /proc files say they are empty to stat).
    static func mappings(of path: String) throws -> Int {
        String(decoding: try Syscalls.readFile("/proc/self/maps"), as: UTF8.self).split(separator: "\n").count { $0.hasSuffix(path) }
    }

    // On a thread of its own, so that the tests blocking the cooperative pool's threads (children, crash tests) cannot
    // keep the tasks from starting: in the whole suite on two CPUs, that once lasted past a 120 s bound. One thread
    // also shows that the 200 waits hold no thread.
    @Test("200 tasks wait on 200 events through one mapping; each is woken by its own signal", .onOwnThread)
    func twoHundredTasks() async throws {
        let name = Names.unique(.posix)
        defer { Names.cleanUp(name) }
        var region = try SharedMemory.create(name, size: 4096)
        let shared = SharedAttachment(region)
        for i in 0..<200 { _ = try ProcessEvent.initialize(in: shared, at: i * 4) }
        let words = shared.withUnsafeBytes { $0 }  // an address range to count waiters in: other tests' come and go
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let event = try ProcessEvent.existing(in: shared, at: i * 4)
                    try await event.waitAsync(timeout: .seconds(300))
                    return i
                }
            }
            // Every task waits, suspended (not a thread each), and the region is mapped once. All 200 are seen waiting
            // at once; a second look might not: each wait re-arms after every quiet 100 ms slice (to look at its peer),
            // and under ThreadSanitizer one was once caught re-arming (199). The bound is for a hang, not a time.
            let waited = ContinuousClock.now
            var most = 0
            while most < 200, ContinuousClock.now - waited < .seconds(120) {
                most = max(most, FutexWaiters.shared.waitingCount(in: words))
                if most < 200 { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(most == 200)
            let path = "/dev/shm" + name.description.dropFirst("posix:".count)
            #expect(try Self.mappings(of: path) == 1, "\(path)")
            // While tasks hold the mapping, the region cannot move under them.
            expectError(.busy) { try region.resize(to: 8192) }
            for i in 0..<200 { try ProcessEvent.existing(in: shared, at: i * 4).signal() }
            var done = Set<Int>()
            for try await i in group { done.insert(i) }
            #expect(done.count == 200)
        }
    }

    @Test("what changes the region is refused; the bytes and the sides work; the region may go first")
    func aRegionToMakeThingsIn() throws {
        try Names.with(.posix) { name in
            var shared: SharedAttachment
            do {
                let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
                try MessageRing.format(region, capacity: 4096)
                shared = SharedAttachment(region)
            }  // the region's handle is gone; the mapping stays while the shared attachment holds it
            let copy = shared  // copyable, Sendable
            let sender = try RingSender(shared)
            let receiver = try RingReceiver(copy)
            try sender.send([1, 2, 3])
            #expect(try receiver.receive(timeout: .seconds(1)) == [1, 2, 3])
            #expect(try shared.get(UInt64.self, at: 0) == MessageRing.magic)
            #expect(try shared.info().size == MessageRing.size(capacity: 4096))
            expectError(.unsupported) { try shared.resize(to: 1 << 16) }
            expectError(.unsupported) { try shared.remap() }
            expectError(.unsupported) { try shared.remove() }
            expectError(.unsupported) { try shared.setPermissions([.ownerReadWrite]) }
            #expect(shared.fileDescriptor == nil)
        }
    }
}
