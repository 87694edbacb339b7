import Atomics
import Foundation
import Testing
@testable import SharedMemory

/// Atomics, locks and events inside regions, shared by real processes.
@Suite("Synchronisation")
struct SyncTests {
    @Test("atomics are checked for bounds, alignment and write access, and work across attachments", arguments: Backend.attachable)
    func atomics(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let a = try region.atomic(UInt64.self, at: 8)
            a.store(41, ordering: .releasing)
            let other = try attachAgain(region)
            #expect(try other.atomic(UInt64.self, at: 8).wrappingIncrementThenLoad(ordering: .acquiringAndReleasing) == 42)
            #expect(a.load(ordering: .acquiring) == 42)
            // The rest of swift-atomics' operations, through the same word.
            #expect(a.compareExchange(expected: 42, desired: 50, ordering: .acquiringAndReleasing) == (true, 42))
            var exchanged = false
            while !exchanged { exchanged = a.weakCompareExchange(expected: 50, desired: 7, ordering: .relaxed).exchanged }
            #expect(a.exchange(9, ordering: .relaxed) == 7)
            #expect(a.loadThenBitwiseOr(with: 0b110, ordering: .relaxed) == 9 && a.load(ordering: .relaxed) == 0b1111)
            let flag = try region.atomic(Bool.self, at: 0)
            #expect(flag.loadThenLogicalOr(with: true, ordering: .relaxed) == false && flag.load(ordering: .relaxed))
            #expect(try other.get(UInt8.self, at: 0) == 1 && other.get(UInt64.self, at: 8) == 0b1111)
            expectError(.invalidArgument) { try region.atomic(UInt64.self, at: 12) }
            expectError(.outOfBounds) { try region.atomic(UInt64.self, at: 4096) }
            expectError(.outOfBounds) { try region.atomic(UInt32.self, at: -4) }
            let reader = try attachAgain(region, access: .readOnly)
            expectError(.readOnly) { try reader.atomic(UInt64.self, at: 8) }
        }
    }

    @Test("N processes × M increments under the mutex give exactly N×M")
    func mutexCounts() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let mutex = try ProcessMutex.initialize(in: region, at: 0)
            let processes = 4, increments = 20_000
            let probes = try (0..<processes).map { _ in try Probe.start(["mutex-add", name.description, "\(increments)"]) }
            // This process takes part too.
            for _ in 0..<increments {
                _ = try mutex.lock()
                try region.set(try region.get(Int.self, at: 64) + 1, at: 64)
                try mutex.unlock()
            }
            for probe in probes { #expect(probe.finish().lastLine == "ok") }
            #expect(try region.get(Int.self, at: 64) == (processes + 1) * increments)
        }
    }

    @Test("a process killed holding the mutex: the next locker is told, repairs, and goes on; unrepaired, it is notRecoverable")
    func robustMutex() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let mutex = try ProcessMutex.initialize(in: region, at: 0)

            let holder = try Probe.start(["mutex-hold", name.description])
            #expect(holder.line() == "ok locked")
            #expect(try mutex.tryLock() == nil)
            expectError(.timedOut) { try mutex.lock(timeout: .milliseconds(50)) }
            holder.kill()
            #expect(try mutex.lock() == .ownerDied)
            try region.set(Int(7), at: 64)  // repair
            try mutex.markConsistent()
            try mutex.unlock()
            #expect(try mutex.lock() == .acquired)
            try mutex.unlock()

            // withLock runs the repair for a dead owner.
            let second = try Probe.start(["mutex-hold", name.description])
            #expect(second.line() == "ok locked")
            second.kill()
            var repaired = false
            try mutex.withLock(repair: { repaired = true }) { try region.set(Int(8), at: 64) }
            #expect(repaired)
            #expect(try mutex.lock() == .acquired)
            try mutex.unlock()

            // Not repaired: never usable again, and never a hang.
            let third = try Probe.start(["mutex-hold", name.description])
            #expect(third.line() == "ok locked")
            third.kill()
            #expect(try mutex.lock() == .ownerDied)
            try mutex.unlock()
            expectError(.notRecoverable) { try mutex.lock() }
            expectError(.notRecoverable) { try mutex.tryLock() }
            expectError(.notRecoverable) { try mutex.lock(timeout: .seconds(1)) }
        }
    }

    @Test("unlocking a mutex this thread does not hold is an error, not undefined behaviour")
    func unlockWithoutHolding() throws {
        let region = try SharedMemory.create(.anonymous, size: 4096)
        let mutex = try ProcessMutex.initialize(in: region, at: 0)
        expectError(.invalidArgument) { try mutex.unlock() }
        expectError(.invalidArgument) { try ProcessMutex.initialize(in: region, at: 4) }
    }

    @Test("readers overlap and writers exclude, across processes")
    func readWriteLock() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 4096)
            _ = try ProcessRWLock.initialize(in: region, at: 0)
            let probes = try ["read", "read", "read", "write", "write"].map { mode in
                try Probe.start(["rw", name.description, mode, "200", mode == "read" ? "2000" : "500"])
            }
            for probe in probes { #expect(probe.finish().lastLine == "ok") }
            #expect(try region.get(Int.self, at: 136) >= 2, "readers never overlapped")
            #expect(try region.get(Int.self, at: 152) == 0, "a writer shared the lock")
            let lock = try ProcessRWLock.existing(in: region, at: 0)
            try lock.lockRead()
            #expect(try lock.tryLockRead())
            #expect(try !lock.tryLockWrite())
            expectError(.timedOut) { try lock.lockWrite(timeout: .milliseconds(20)) }
            try lock.unlock()
            try lock.unlock()
            try lock.withWriteLock { () throws in #expect(try !lock.tryLockRead()) }
        }
    }

    @Test("an event wakes a waiter in another process, and a wait times out")
    func event() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let event = try ProcessEvent.initialize(in: region, at: 0)
            #expect(try Probe.run(["event-wait", name.description, "50"]) == "ok timeout")
            let waiter = try Probe.start(["event-wait", name.description, "10000"])
            usleep(100_000)  // let it go to sleep in the kernel
            event.signal()
            #expect(waiter.finish().lastLine == "ok signaled")
            #expect(event.isSignaled)
            try event.wait(timeout: .zero)
            event.reset()
            #expect(expectError(.timedOut) { try event.wait(timeout: .milliseconds(10), strategy: .sleep) }?.reason == "the event was not signaled within 0.01 seconds")
        }
    }
}
