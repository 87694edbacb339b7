import Atomics
import CSharedMemory
import Glibc

/// The process's waiter threads: what lets a task wait for a shared word without holding a thread of Swift's
/// cooperative pool.
///
/// A task that has to wait registers the word, the value it saw, and when to give up, then suspends. A waiter
/// thread sleeps in one `futex_waitv` call (Linux 5.16+) on up to 127 registered words and its own control word,
/// and resumes each task whose word was woken or no longer holds its value, or whose time is up. A process has
/// as many waiter threads as it needs (one per 127 waiting tasks), made on first use and kept, each asleep in
/// the kernel while nothing happens. Registering or cancelling bumps the thread's control word, so that it
/// rebuilds its list at once.
///
/// On a kernel without `futex_waitv` (`ENOSYS`), the threads poll instead: they look at every registered word
/// each millisecond (a wake-up is seen up to 1 ms late; no task is lost). `SHM_ASYNC_POLL=1` in the environment
/// forces that mode, which is how the tests cover it.
final class FutexWaiters: @unchecked Sendable {
    static let shared = FutexWaiters()

    /// Words one `futex_waitv` call can take, less the thread's control word.
    static let wordsPerThread = 127

    /// Why a wait ended.
    enum Outcome: Sendable {
        /// The word was woken or changed.
        case woken
        /// A slice (100 ms, or what the caller asked) went by: time to look at the peer.
        case sliceElapsed
        /// The caller's deadline passed.
        case deadlinePassed
        /// The task was cancelled.
        case cancelled
    }

    /// One waiting task. Its fields after `init` change only under `state`'s lock.
    final class Waiter: @unchecked Sendable {
        let word: UnsafeMutableRawPointer
        var expected: UInt32
        /// When to give up, in `CLOCK_MONOTONIC` nanoseconds.
        let wakeAt: Int64
        /// Whether `wakeAt` is the caller's deadline (not the end of a slice).
        let atDeadline: Bool
        /// Resume on any wake-up of the word, even if its value is back to `expected` (a lock's word may go
        /// from held to free to held by another process between two looks).
        let anyWake: Bool
        var continuation: UnsafeContinuation<Outcome, Never>?
        var cancelled = false
        /// For a watch (``watch(_:expected:signalling:)``): the eventfd to signal each time the word moves; -1 for a
        /// waiting task.
        let eventDescriptor: Int32

        init(word: UnsafeMutableRawPointer, expected: UInt32, wakeAt: Int64, atDeadline: Bool, anyWake: Bool, eventDescriptor: Int32 = -1) {
            self.word = word
            self.expected = expected
            self.wakeAt = wakeAt
            self.atDeadline = atDeadline
            self.anyWake = anyWake
            self.eventDescriptor = eventDescriptor
        }

        var current: UInt32 {
            UnsafeAtomic<UInt32>(at: word.assumingMemoryBound(to: UInt32.AtomicRepresentation.self)).load(ordering: .acquiring)
        }

        var holdsExpected: Bool { current == expected }
    }

    struct WaiterThread {
        /// Bumped whenever the thread's list changes (and woken if the thread sleeps).
        let control: UnsafeMutablePointer<UInt32>
        var waiters: [Waiter] = []
        /// Whether the thread is in (or about to enter) `futex_waitv`: only then does a change need a wake-up.
        var asleep = false

        var controlWord: UnsafeAtomic<UInt32> { UnsafeAtomic(at: UnsafeMutableRawPointer(control).assumingMemoryBound(to: UInt32.AtomicRepresentation.self)) }

        /// Notes a change to the list; the control word to wake, if the thread sleeps.
        func changed() -> UnsafeMutablePointer<UInt32>? {
            controlWord.wrappingIncrement(ordering: .releasing)
            return asleep ? control : nil
        }
    }

    struct State {
        var threads: [WaiterThread] = []
        /// Where a waiter is registered: its thread's index.
        var registered: [ObjectIdentifier: Int] = [:]
    }

    let state = Locked(State())
    /// Whether the threads poll (no `futex_waitv`).
    let polling = ManagedAtomic<Bool>(getenv("SHM_ASYNC_POLL").map { String(cString: $0) == "1" } ?? false)

    /// The number of waiter threads this process has started (for tests and `shm bench`).
    var threadCount: Int { state.withLock { $0.threads.count } }

    /// The number of tasks waiting now on words inside `bytes`: what a test counts, since other tests' waits in
    /// the same process come and go meanwhile.
    func waitingCount(in bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        let range = UInt(bitPattern: base)..<UInt(bitPattern: base) + UInt(bytes.count)
        return state.withLock { state in
            state.threads.reduce(0) { sum, thread in
                sum + thread.waiters.count { $0.eventDescriptor < 0 && range.contains(UInt(bitPattern: $0.word)) }
            }
        }
    }

    /// Suspends the calling task until `word` is woken or no longer holds `seen`, `deadline` passes, or `slice`
    /// nanoseconds go by; the asynchronous twin of ``MessageRing/sleep(on:seen:until:)``. No thread of the
    /// cooperative pool waits meanwhile. A cancelled task ends its wait at once with ``Outcome/cancelled``.
    ///
    /// The word must stay mapped until this returns (the caller holds the mapping across the call).
    static func sleep(on word: UnsafeMutableRawPointer, seen: UInt32, until deadline: Int64?, slice: Int64 = 100_000_000,
                      anyWake: Bool = false, isolation: isolated (any Actor)? = #isolation) async -> Outcome {
        let now = MonotonicClock.now()
        let (end, overflow) = now.addingReportingOverflow(slice)
        var wakeAt = overflow ? .max : end, atDeadline = false
        if let deadline {
            if deadline <= now { return .deadlinePassed }
            if deadline <= wakeAt { (wakeAt, atDeadline) = (deadline, true) }
        }
        let waiter = Waiter(word: word, expected: seen, wakeAt: wakeAt, atDeadline: atDeadline, anyWake: anyWake)
        return await withTaskCancellationHandler(operation: {
            await withUnsafeContinuation(isolation: isolation) { continuation in shared.register(waiter, continuation) }
        }, onCancel: {
            shared.cancel(waiter)
        }, isolation: isolation)
    }

    /// Hands `waiter` to a thread with room (starting one if none has), unless it was cancelled already.
    private func register(_ waiter: Waiter, _ continuation: UnsafeContinuation<Outcome, Never>) {
        let registered: (cancelled: Bool, wake: UnsafeMutablePointer<UInt32>?) = state.withLock { state in
            if waiter.cancelled { return (true, nil) }
            waiter.continuation = continuation
            let index = place(waiter, in: &state)
            return (false, state.threads[index].changed())
        }
        if registered.cancelled { return continuation.resume(returning: .cancelled) }
        if let control = registered.wake { Syscalls.futexWake(UnsafeMutableRawPointer(control)) }
    }

    /// Ends `waiter`'s wait with ``Outcome/cancelled`` now (not through its thread: no hop, no delay).
    private func cancel(_ waiter: Waiter) {
        let taken: (UnsafeContinuation<Outcome, Never>, UnsafeMutablePointer<UInt32>?)? = state.withLock { state in
            waiter.cancelled = true
            guard let index = state.registered.removeValue(forKey: ObjectIdentifier(waiter)),
                  let continuation = waiter.continuation else { return nil }
            waiter.continuation = nil
            state.threads[index].waiters.removeAll { $0 === waiter }
            return (continuation, state.threads[index].changed())
        }
        guard let (continuation, control) = taken else { return }
        continuation.resume(returning: .cancelled)
        if let control { Syscalls.futexWake(UnsafeMutableRawPointer(control)) }
    }

    /// Watches `word` for as long as the returned registration stays (until ``unwatch(_:)``): each time it is woken
    /// or moves from the value last seen (first `expected`), a waiter thread adds 1 to the eventfd `descriptor`.
    func watch(_ word: UnsafeMutableRawPointer, expected: UInt32, signalling descriptor: Int32) -> Waiter {
        let waiter = Waiter(word: word, expected: expected, wakeAt: .max, atDeadline: false, anyWake: false, eventDescriptor: descriptor)
        let control: UnsafeMutablePointer<UInt32>? = state.withLock { state in
            state.threads[place(waiter, in: &state)].changed()
        }
        if let control { Syscalls.futexWake(UnsafeMutableRawPointer(control)) }
        return waiter
    }

    /// Ends a watch: once this returns, its eventfd is signalled no more.
    func unwatch(_ waiter: Waiter) {
        let control: UnsafeMutablePointer<UInt32>? = state.withLock { state in
            guard let index = state.registered.removeValue(forKey: ObjectIdentifier(waiter)) else { return nil }
            state.threads[index].waiters.removeAll { $0 === waiter }
            return state.threads[index].changed()
        }
        if let control { Syscalls.futexWake(UnsafeMutableRawPointer(control)) }
    }

    /// Puts `waiter` in the list of a thread with room, starting a thread if none has; its index.
    private func place(_ waiter: Waiter, in state: inout State) -> Int {
        var index = state.threads.firstIndex { $0.waiters.count < Self.wordsPerThread }
        if index == nil {
            state.threads.append(WaiterThread(control: .allocate(capacity: 1)))
            state.threads[state.threads.count - 1].control.initialize(to: 0)
            index = state.threads.count - 1
            startThread(index!)
        }
        state.threads[index!].waiters.append(waiter)
        state.registered[ObjectIdentifier(waiter)] = index!
        return index!
    }

    private func startThread(_ index: Int) {
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            FutexWaiters.shared.run(Int(bitPattern: argument) - 1)
        }, UnsafeMutableRawPointer(bitPattern: index + 1))
        precondition(result == 0, "pthread_create failed (\(result)): cannot start a SharedMemory waiter thread")
        pthread_detach(thread)
    }

    /// A waiter thread's life: sleep on every word of its list at once, then resume whoever is done.
    private func run(_ index: Int) -> Never {
        var words = [csm_waited_word](repeating: csm_waited_word(), count: Self.wordsPerThread + 1)
        var snapshot: [Waiter] = []
        while true {
            var earliest = Int64.max
            let count: Int = state.withLock { state in
                state.threads[index].asleep = true
                let thread = state.threads[index]
                words[0] = csm_waited_word(address: thread.control, expected: thread.controlWord.load(ordering: .relaxed))
                snapshot = thread.waiters
                for (i, waiter) in thread.waiters.enumerated() {
                    words[i + 1] = csm_waited_word(address: waiter.word.assumingMemoryBound(to: UInt32.self), expected: waiter.expected)
                    earliest = min(earliest, waiter.wakeAt)
                }
                return thread.waiters.count + 1
            }
            var woken: Waiter? = nil
            if polling.load(ordering: .relaxed) {
                let left = earliest == .max ? 1_000_000 : min(1_000_000, max(0, earliest &- MonotonicClock.now()))
                _ = Syscalls.futexWait(UnsafeMutableRawPointer(words[0].address), words[0].expected, timeout: left)
            } else {
                let result = csm_futex_waitv(words, UInt32(count), earliest == .max ? -1 : earliest)
                if result >= 1, result < count { woken = snapshot[Int(result) - 1] }
                if result < 0, errno == ENOSYS { polling.store(true, ordering: .relaxed) }
                // EFAULT: a word went away with its cancelled waiter; the list is rebuilt below. EINTR, EAGAIN,
                // ETIMEDOUT: everyone is looked at below.
            }
            snapshot.removeAll(keepingCapacity: true)
            let now = MonotonicClock.now()
            let done: [(UnsafeContinuation<Outcome, Never>, Outcome)] = state.withLock { state in
                state.threads[index].asleep = false
                var done: [(UnsafeContinuation<Outcome, Never>, Outcome)] = []
                state.threads[index].waiters.removeAll { waiter in
                    if waiter.eventDescriptor >= 0 {  // a watch: signal its eventfd, and watch on
                        if waiter === woken || !waiter.holdsExpected {
                            waiter.expected = waiter.current
                            var one: UInt64 = 1
                            _ = Glibc.write(waiter.eventDescriptor, &one, 8)
                        }
                        return false
                    }
                    let outcome: Outcome
                    if waiter === woken || (woken != nil && waiter.anyWake) || !waiter.holdsExpected {
                        outcome = .woken
                    } else if now >= waiter.wakeAt {
                        outcome = waiter.atDeadline ? .deadlinePassed : .sliceElapsed
                    } else {
                        return false
                    }
                    state.registered.removeValue(forKey: ObjectIdentifier(waiter))
                    if let continuation = waiter.continuation { done.append((continuation, outcome)) }
                    waiter.continuation = nil
                    return true
                }
                return done
            }
            for (continuation, outcome) in done { continuation.resume(returning: outcome) }
            if !done.isEmpty { linger(index) }
        }
    }

    /// After resuming tasks, stays awake a little (at most 50 µs, or until the list changes): a resumed task often
    /// waits again at once (the next message of a stream), and registering with an awake thread costs no wake-up.
    private func linger(_ index: Int) {
        let control = state.withLock { $0.threads[index].controlWord }
        let seen = control.load(ordering: .acquiring)
        let until = MonotonicClock.now() &+ 50_000
        while control.load(ordering: .acquiring) == seen {
            sched_yield()  // stays awake, but lets the resumed task and its peer run (on 2 cores they need both)
            if MonotonicClock.now() >= until { return }
        }
    }
}
