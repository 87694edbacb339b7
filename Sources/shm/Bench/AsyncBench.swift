import Foundation
import Glibc
import SharedMemory

/// The async experiment (`shm bench --experiments async`): 64-byte round trips through two rings to a forked child
/// that echoes with the blocking API, the parent receiving either blocking or with `receiveAsync` (its task
/// suspended, a waiter thread in `futex_waitv` resuming it), so that the difference is what the hop costs.
enum AsyncBench {
    /// A noncopyable value in a class, so that a task can take it.
    final class Boxed<Value: ~Copyable>: @unchecked Sendable {
        let value: Value
        init(_ value: consuming Value) { self.value = value }
    }

    /// `rounds` round trips, nanoseconds each; `async` receives with `receiveAsync` from a task.
    static func roundTrips(async: Bool, strategy: WaitStrategy, rounds: Int) throws -> [Double] {
        let size = MessageRing.size(capacity: 4096)
        let there = try SharedMemory.create(.anonymous, size: size)
        let back = try SharedMemory.create(.anonymous, size: size)
        try MessageRing.format(there)
        try MessageRing.format(back)
        let child = fork()
        if child == 0 {
            do {
                let receiver = try RingReceiver(there, strategy: strategy)
                let sender = try RingSender(back, strategy: strategy)
                let message = [UInt8](repeating: 1, count: 64)
                for _ in 0..<rounds {
                    guard try receiver.receiveUnsafe({ _ in }) != nil else { _exit(2) }
                    try sender.send(message)
                }
            } catch {
                _exit(1)
            }
            _exit(0)
        }
        let sender = Boxed(try RingSender(there, strategy: strategy))
        let receiver = Boxed(try RingReceiver(back, strategy: strategy))
        let samples: [Double]
        if async {
            samples = try runBlocking {
                var samples = [Double](repeating: 0, count: rounds)
                let message = [UInt8](repeating: 1, count: 64)
                for i in 0..<rounds {
                    let start = nanoseconds()
                    try sender.value.send(message)
                    guard try await receiver.value.receiveAsync({ _ in }) != nil else { throw BenchError("the echo child finished early") }
                    samples[i] = Double(nanoseconds() - start)
                }
                return samples
            }
        } else {
            var measured = [Double](repeating: 0, count: rounds)
            let message = [UInt8](repeating: 1, count: 64)
            for i in 0..<rounds {
                let start = nanoseconds()
                try sender.value.send(message)
                guard try receiver.value.receiveUnsafe({ _ in }) != nil else { throw BenchError("the echo child finished early") }
                measured[i] = Double(nanoseconds() - start)
            }
            samples = measured
        }
        try SwiftBench.waitForChild(child)
        return samples
    }

    /// The floor under any such hop, with no shared memory at all: a task suspends, another thread (woken by a
    /// semaphore, as the waiter thread is by a futex) resumes its continuation, and the pool runs it again.
    /// Nanoseconds each.
    static func bareResume(rounds: Int) throws -> [Double] {
        final class Handoff: @unchecked Sendable {
            let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
            let lock = NSLock()
            var continuation: UnsafeContinuation<Void, Never>?
            var stop = false
        }
        let handoff = Handoff()
        sem_init(handoff.semaphore, 0, 0)
        let resumer = Thread {
            while true {
                while sem_wait(handoff.semaphore) != 0 {}
                handoff.lock.lock()
                let continuation = handoff.continuation, stop = handoff.stop
                handoff.continuation = nil
                handoff.lock.unlock()
                if stop { return }
                continuation?.resume()
            }
        }
        resumer.start()
        defer {
            handoff.lock.lock()
            handoff.stop = true
            handoff.lock.unlock()
            sem_post(handoff.semaphore)
        }
        return try runBlocking {
            var samples = [Double](repeating: 0, count: rounds)
            for i in 0..<rounds {
                let start = nanoseconds()
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                    handoff.lock.lock()
                    handoff.continuation = continuation
                    handoff.lock.unlock()
                    sem_post(handoff.semaphore)
                }
                samples[i] = Double(nanoseconds() - start)
            }
            return samples
        }
    }

    /// Runs `body` in a task and waits for it on this thread (the command is synchronous).
    static func runBlocking<R: Sendable>(_ body: @escaping @Sendable () async throws -> R) throws -> R {
        let done = DispatchSemaphore(value: 0)
        let result = Boxed(Locked<Result<R, any Error>?>(nil))
        Task {
            let outcome: Result<R, any Error>
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
            result.value.set(outcome)
            done.signal()
        }
        done.wait()
        return try result.value.get()!.get()
    }

    /// A value behind a lock.
    final class Locked<Value>: @unchecked Sendable {
        private var value: Value
        private let lock = NSLock()
        init(_ value: Value) { self.value = value }
        func set(_ new: Value) { lock.lock(); value = new; lock.unlock() }
        func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    }
}
