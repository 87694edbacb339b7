import Atomics
import CSharedMemory
import Glibc

extension ProcessEvent {
    /// Waits until the event is signaled, suspending the task (not blocking a thread), at most `timeout` (nil: for
    /// ever); throws ``SharedMemoryError/Code/timedOut`` if the time ran out first. The asynchronous twin of
    /// ``wait(timeout:strategy:)``; cancelling the task ends the wait with `CancellationError`.
    public func waitAsync(timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation) async throws {
        var waiting = Wait(.sleep, timeout: timeout, async: true)
        while true {
            if word.load(ordering: .acquiring) != 0 { return }
            if try await waiting.sleepAsync(on: address, raise: { 0 }, lower: {}) == .deadlinePassed {
                if word.load(ordering: .acquiring) != 0 { return }
                throw timedOut(timeout!)
            }
        }
    }
}

extension ProcessMutex {
    /// Runs `body` holding the lock, suspending the task (not blocking a thread) while another thread or process
    /// holds it, at most `timeout` (then ``SharedMemoryError/Code/timedOut``). The asynchronous twin of
    /// ``withLock(repair:_:)``, with the same owner-died handling: if the last owner died holding the lock,
    /// `repair` runs first and the mutex is marked consistent. Cancelling the task while it waits ends the wait
    /// with `CancellationError`, without the lock.
    ///
    /// `body` is synchronous: the lock is taken, `body` runs, and the lock is released on one thread with no
    /// suspension between them. A POSIX mutex belongs to the thread that locked it (glibc refuses an unlock from
    /// another, and a robust mutex is listed on its thread for the kernel), and a task may resume on another
    /// thread after each `await`, so there is no asynchronous `lock()` to pair with a later `unlock()`.
    ///
    /// The wait watches the mutex's futex word, the first 4 bytes of glibc's `pthread_mutex_t` (the robust futex
    /// ABI: the owner's thread id, `FUTEX_WAITERS`, `FUTEX_OWNER_DIED`), and sets `FUTEX_WAITERS` so that the
    /// owner's `pthread_mutex_unlock` wakes it, as glibc's own waiters do.
    public func withLockAsync<R>(
        timeout: Duration? = nil, repair: (() throws -> Void)? = nil, isolation: isolated (any Actor)? = #isolation,
        _ body: () throws -> R
    ) async throws -> R {
        let word = UnsafeAtomic<UInt32>(at: mutex.address.assumingMemoryBound(to: UInt32.AtomicRepresentation.self))
        let waiters = RobustMutex.waitersBit, ownerMask = RobustMutex.tidMask
        let deadline = Deadline(after: timeout).nanoseconds
        var slept = false
        while true {
            if let acquisition = try mutex.tryLock() {
                // Woken by an unlock that woke only this waiter: others may sleep on the word too, so this
                // owner's unlock must wake the next, as glibc's own waiters assume after a wake-up.
                if slept { _ = word.loadThenBitwiseOr(with: waiters, ordering: .relaxed) }
                if acquisition == .ownerDied, let repair {
                    do {
                        try repair()
                        try mutex.markConsistent()
                    } catch {
                        try? mutex.unlock()
                        throw error
                    }
                }
                defer { try? mutex.unlock() }
                return try body()
            }
            let seen = word.load(ordering: .acquiring)
            if seen & ownerMask == 0 { continue }  // released meanwhile
            if seen & waiters == 0, !word.compareExchange(expected: seen, desired: seen | waiters, ordering: .relaxed).exchanged {
                continue
            }
            slept = true
            switch await FutexWaiters.sleep(on: mutex.address, seen: seen | waiters, until: deadline, anyWake: true) {
            case .cancelled: throw CancellationError()
            case .deadlinePassed:
                throw SharedMemoryError(.timedOut, "the mutex was still held after \(timeout!)", region: mutex.region)
            case .woken, .sliceElapsed: continue
            }
        }
    }
}

extension ProcessRWLock {
    /// Runs `body` holding the lock to read, suspending the task (not blocking a thread) while a writer holds it, at
    /// most `timeout` (then ``SharedMemoryError/Code/timedOut``); cancelling the task ends the wait with
    /// `CancellationError`. `body` is synchronous, for the reason ``ProcessMutex/withLockAsync(timeout:repair:isolation:_:)``
    /// gives.
    ///
    /// glibc's `pthread_rwlock_t` has no word another process could be woken on that glibc documents, so this
    /// wait polls: it tries the lock, then sleeps (`Task.sleep`) 50 µs, doubling to at most 1 ms, and tries
    /// again. A lock freed while it sleeps is taken up to 1 ms late.
    public func withReadLockAsync<R>(
        timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation, _ body: () throws -> R
    ) async throws -> R {
        try await poll(timeout: timeout, what: "read") { () throws(SharedMemoryError) in try tryLockRead() }
        defer { try? unlock() }
        return try body()
    }

    /// Runs `body` holding the lock to write, waiting as ``withReadLockAsync(timeout:isolation:_:)`` does.
    public func withWriteLockAsync<R>(
        timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation, _ body: () throws -> R
    ) async throws -> R {
        try await poll(timeout: timeout, what: "write") { () throws(SharedMemoryError) in try tryLockWrite() }
        defer { try? unlock() }
        return try body()
    }

    /// Tries `take` until it succeeds, sleeping between tries.
    private func poll(
        timeout: Duration?, what: String, isolation: isolated (any Actor)? = #isolation, _ take: () throws(SharedMemoryError) -> Bool
    ) async throws {
        let deadline = Deadline(after: timeout).nanoseconds
        var pause: Int64 = 50_000
        while try !take() {
            if let deadline, MonotonicClock.now() >= deadline {
                throw SharedMemoryError(.timedOut, "the read-write lock was still held after \(timeout!) (if its holder died, it never will be released: POSIX read-write locks are not robust)", region: region)
            }
            try await Task.sleep(for: .nanoseconds(pause))
            pause = min(pause * 2, 1_000_000)
        }
    }
}
