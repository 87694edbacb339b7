import CSharedMemory
import Glibc

/// `CLOCK_MONOTONIC`, in nanoseconds: the one clock every wait and deadline reads.
enum MonotonicClock {
    static func now() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}

/// When a wait ends: a `CLOCK_MONOTONIC` nanosecond, or never. A plain integer, made only once a side has to wait:
/// an optional `ContinuousClock.Instant` made on every call cost the ring's fast path about 75 instructions a
/// message (its type is resilient).
struct Deadline {
    /// The nanosecond it passes; `.max` for never.
    let end: Int64

    static let never = Deadline(end: .max)

    init(end: Int64) { self.end = end }

    /// `timeout` from now; nil waits for ever. A timeout too long to add is for ever too.
    init(after timeout: Duration?) {
        guard let timeout else { self = .never; return }
        let (sum, overflow) = MonotonicClock.now().addingReportingOverflow(timeout.nanoseconds)
        end = overflow ? .max : sum
    }

    var isNever: Bool { end == .max }

    /// Nanoseconds left (0 once passed).
    var remaining: Int64 { isNever ? .max : max(0, end &- MonotonicClock.now()) }

    var hasPassed: Bool { !isNever && MonotonicClock.now() >= end }

    /// What is left of `timeout`, this deadline's: for a wait that goes on after part of it was spent.
    func left(of timeout: Duration) -> Duration { isNever ? timeout : .nanoseconds(remaining) }

    /// The `CLOCK_MONOTONIC` nanosecond, or nil for never: the form the futex waiters take.
    var nanoseconds: Int64? { isNever ? nil : end }
}

/// The one wait machine every wait for a peer runs (the ring's sides, a subscriber, events; blocking and async): look
/// at the condition, spin while the strategy allows, then sleep on a futex word in slices of at most
/// ``slice``, looking at the peer's process (a /proc read) only after a quiet slice, so that a wake-up never pays for
/// it; until the condition holds, the deadline passes or (async) the task is cancelled. The caller owns what it looks
/// at and how it says it sleeps (a flag in the region); the machine owns the order, the clock and the policy, so
/// that one change here changes every wait.
///
/// ```swift
/// var waiting = Wait(strategy, timeout: timeout)
/// while true {
///     if let found = look() { return found }
///     if waiting.spin() { continue }
///     if waiting.lookAtPeer { try checkPeer() }
///     let slept = try waiting.sleep(on: word, raise: raiseSleepingFlag, lower: lowerSleepingFlag)
///     if slept == .deadlinePassed { throw timedOut }
/// }
/// ```
struct Wait {
    /// The longest sleep between two looks at the peer.
    static let slice: Int64 = 100_000_000

    enum Slept { case woken, sliceElapsed, deadlinePassed }

    let timeout: Duration?
    let strategy: WaitStrategy
    let async: Bool
    /// Set once the wait first has to spin or sleep: a look that finds what it waits for at once costs nothing more
    /// than storing the arguments (no clock, no switch over the strategy).
    private(set) var deadline: Deadline? = nil
    /// Spins left before sleeping.
    private var spins = 0
    /// Whether the strategy never sleeps (``WaitStrategy/spin``).
    private var spinsForever = false
    /// An adaptive wait (``WaitStrategy/adaptive``): when its spin ends (0: it does not spin, or no longer), and
    /// whether it has yielded the CPU once before sleeping.
    private var adaptive = false
    private var spinUntil: Int64 = 0
    private var yielded = false
    /// An adaptive wait's spin, in nanoseconds (0 where it may not spin).
    private var spinLength: Int64 = 0
    /// Whether the wait yields before it spins: this thread's last yield ran its peer (``WaitPolicy/sharesCPU``).
    private var yieldFirst = false
    /// Whether the last ``spin()`` yielded and said the peer shares this CPU: a look after it that finds nothing
    /// takes that back.
    private var claimedShared = false
    /// An adaptive wait's spin budget, and when the wait began: what a sleep teaches the policy
    /// (``WaitPolicy/adjusted(_:afterWaiting:)``).
    private var budget: Int64 = 0
    private var began: Int64 = 0
    /// Spins since a spinning wait last read the clock, and when that was.
    private var spinsSinceLook = 0
    private var lastLook: Int64 = 0
    /// Whether the caller should look at its peer's process before it sleeps: a slice went by with no word from it.
    private(set) var lookAtPeer = false

    /// A wait as `strategy` says, for at most `timeout` (nil: as long as the peer lives). An async wait spins at
    /// most ``WaitStrategy/asyncSpinLimit`` times: a spin holds a thread of the cooperative pool.
    @inline(__always)
    init(_ strategy: WaitStrategy, timeout: Duration?, async: Bool = false) {
        self.timeout = timeout
        self.strategy = strategy
        self.async = async
    }

    /// The first time the wait has to wait: its deadline, and its spins from the strategy.
    private mutating func start() -> Deadline {
        let deadline = Deadline(after: timeout)
        self.deadline = deadline
        spins = async ? min(strategy.spins, WaitStrategy.asyncSpinLimit) : strategy.spins
        spinsForever = spins == .max
        if case .adaptive = strategy {
            adaptive = true
            budget = WaitPolicy.currentBudget()
            began = MonotonicClock.now()
            // An async wait spins on a thread of the cooperative pool: at most 20 µs of it.
            spinLength = async ? min(budget, 20_000) : budget
            spinUntil = spinLength > 0 ? began &+ spinLength : 0
            yieldFirst = spinLength > 0 && WaitPolicy.sharesCPU
        }
        if spinsForever { lastLook = MonotonicClock.now() }
        return deadline
    }

    /// Called when a look found nothing: true to look again at once (one PAUSE spent), false to go on (look at the
    /// peer if ``lookAtPeer``, then sleep). A wait that only spins goes on every 1 024 spins, to a sleep that does
    /// not sleep: so that it still times out, still sees the end of a stream its look does not see, and (once a
    /// slice went by) still hears of its peer's death.
    @inline(__always)
    mutating func spin() -> Bool {
        if deadline == nil { _ = start() }
        if adaptive { return spinAdaptively() }
        guard spins > 0 else { return false }
        csm_cpu_relax()
        guard spinsForever else {
            spins -= 1
            return true
        }
        spinsSinceLook &+= 1
        guard spinsSinceLook & 0x3ff == 0 else { return true }
        let now = MonotonicClock.now()
        if now &- lastLook >= Self.slice {
            lastLook = now
            lookAtPeer = true
        }
        return false
    }

    /// ``spin()`` for ``WaitStrategy/adaptive``: spins until its budget in time runs out (reading the clock every
    /// 16 spins), then yields the CPU once (a runnable peer on this CPU runs first) and looks again, then sleeps.
    /// Where the thread's last yield ran the peer (``WaitPolicy/sharesCPU``), it yields first: the peer cannot answer
    /// while this side spins on the CPU it waits for. A yield that ran nobody, or a look after it that finds
    /// nothing, says the peer is not (or no longer) here: the wait forgets it and spins. Now and then a yield that ran
    /// the peer again moves this thread to another CPU (``WaitPolicy/movesAway(at:)``), which the scheduler, seeing
    /// two busy threads, may take a long time to do.
    private mutating func spinAdaptively() -> Bool {
        if claimedShared {
            claimedShared = false
            WaitPolicy.sharesCPU = false
        }
        if yieldFirst {
            yieldFirst = false
            if yieldRanPeer() {
                if WaitPolicy.movesAway(at: MonotonicClock.now()) {
                    _ = csm_move_off_this_cpu()
                    WaitPolicy.sharesCPU = false
                } else {
                    claimedShared = true
                }
            } else {
                WaitPolicy.sharesCPU = false
            }
            spinUntil = MonotonicClock.now() &+ spinLength
            return true
        }
        if spinUntil != 0 {
            csm_cpu_relax()
            spinsSinceLook &+= 1
            if spinsSinceLook & 15 != 0 || MonotonicClock.now() < spinUntil { return true }
            spinUntil = 0
        }
        guard !yielded else { return false }
        yielded = true
        if spinLength > 0 {
            if yieldRanPeer() {
                WaitPolicy.sharesCPU = true
                claimedShared = true
            }
        } else {
            sched_yield()
        }
        return true
    }

    /// Yields the CPU (`sched_yield`): true if that ran another thread here and came back soon enough for it to have
    /// been the peer (``WaitPolicy/peerRan(yieldTook:switched:)``).
    private func yieldRanPeer() -> Bool {
        let before = MonotonicClock.now()
        let switched = csm_yield_switched() != 0
        return WaitPolicy.peerRan(yieldTook: MonotonicClock.now() &- before, switched: switched)
    }

    /// Blocking: `raise` raises the caller's sleeping flag (which makes its peer wake it) and looks once more,
    /// returning the value of the 32-bit futex `word` to sleep on, or nil if what it waits for came meanwhile; then
    /// this sleeps while `word` holds that value, at most a slice and never past the deadline; then `lower` lowers
    /// the flag. `.woken` after a look that found it, or a sleep that ended early. A wait that only spins does not
    /// sleep (it came to look at the deadline and the peer).
    @inline(__always)
    mutating func sleep(
        on word: UnsafeMutableRawPointer, raise: () throws(SharedMemoryError) -> UInt32?, lower: () -> Void
    ) throws(SharedMemoryError) -> Slept {
        let deadline = self.deadline ?? start()
        let left = deadline.remaining
        guard left > 0 else { return .deadlinePassed }
        if spinsForever {
            lookAtPeer = false
            return .woken
        }
        guard let seen = try raise() else { return .woken }
        let slept: Slept = Syscalls.futexWait(word, seen, timeout: min(left, Self.slice)) ? .sliceElapsed : .woken
        lower()
        lookAtPeer = slept == .sliceElapsed
        learn()
        return slept
    }

    /// After a sleep of an adaptive wait that spun: how long the answer took, for the next waits' budget.
    private func learn() {
        guard adaptive, budget > 0 else { return }
        WaitPolicy.learn(budget: budget, waited: MonotonicClock.now() &- began)
    }

    /// Async: as ``sleep(on:raise:lower:)``, suspending the task (no thread of the pool waits); throws
    /// `CancellationError` when the task is cancelled (the flag lowered first).
    mutating func sleepAsync(
        on word: UnsafeMutableRawPointer, raise: () throws(SharedMemoryError) -> UInt32?, lower: () -> Void,
        isolation: isolated (any Actor)? = #isolation
    ) async throws -> Slept {
        let deadline = self.deadline ?? start()
        guard let seen = try raise() else { return .woken }
        let outcome = await FutexWaiters.sleep(on: word, seen: seen, until: deadline.nanoseconds, slice: Self.slice)
        lower()
        if outcome == .woken || outcome == .sliceElapsed { learn() }
        switch outcome {
        case .cancelled: throw CancellationError()
        case .deadlinePassed: return .deadlinePassed
        case .sliceElapsed: lookAtPeer = true; return .sliceElapsed
        case .woken: lookAtPeer = false; return .woken
        }
    }
}
