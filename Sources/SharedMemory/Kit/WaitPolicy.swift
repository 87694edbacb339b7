import Atomics
import CSharedMemory

/// How a waiter waits: spinning (fastest wake-up, burns a CPU), sleeping in the kernel (a futex: a system call,
/// and a wake-up whose cost this machine decides), or spinning while it can pay and then sleeping.
public enum WaitStrategy: Sendable, Hashable {
    /// Poll until the condition holds (reading the clock every 1 024 polls, for the timeout and the peer's death).
    /// Only when each side has a CPU of its own.
    case spin
    /// Sleep in the kernel at once.
    case sleep
    /// Poll `spins` times (each with a `PAUSE`), then sleep. 2 000 spins take about 50 µs on an AMD EPYC, where a
    /// `PAUSE` takes about 25 ns, and less on most Intel cores: a count means different times on different CPUs.
    case spinThenSleep(spins: Int)
    /// The default: spin for three futex wake-ups' time on this machine (measured once per process), or longer where
    /// this process's waits found their peers answering just after the spin, always between 15 and 50 µs, and not at
    /// all on a single CPU; then yield the CPU once, look again, and sleep. Where the thread's last yield ran its peer
    /// on its CPU, yield before spinning, and now and then move the thread to another CPU it may run on. A spin
    /// shorter than the peer's own wake-up sends both sides to sleep for good; a spin on a CPU the peer needs keeps
    /// the peer from running (Docs/Synchronisation.md, "Waiting").
    case adaptive

    /// ``adaptive``.
    public static let `default` = WaitStrategy.adaptive

    /// The spins of a count-based strategy (`.max` for ``spin``); 0 for ``adaptive``, whose budget is in time.
    var spins: Int {
        switch self {
        case .spin: .max
        case .sleep, .adaptive: 0
        case .spinThenSleep(let spins): spins
        }
    }
}

/// What the ``WaitStrategy/adaptive`` strategy decides with: this process's CPUs and the cost of one futex wake-up
/// here, measured once, and what this process's waits have taught it since. The decisions are
/// ``spinBudget(cpus:wakeUp:learned:)`` and ``adjusted(_:afterWaiting:)``, pure functions the tests pin.
@_spi(Tools) public enum WaitPolicy {
    /// The longest a spin may last, whatever a wake-up costs and whatever waits teach: past it, sleeping is as good.
    /// A longer one, up to 200 µs (a wake-up of a vCPU the hypervisor halted here costs 60–160 µs), was measured and
    /// not taken: the quiet 64 B round trip's p99 was 14.6–173 µs with it, 69–94 µs without (`shm bench --quick
    /// --experiments peers ping-pong --loaded`, two runs each), for up to four times the CPU a silent peer costs.
    public static let longestSpin: Int64 = 50_000
    /// The shortest spin where spinning is allowed: two wake-ups of a sleeping peer on this machine's idle CPUs
    /// (7–8 µs each) and a margin. The measured cost cannot be trusted below it: taken while the CPUs are awake (in
    /// the middle of a ping-pong, say) it reads 1–2 µs, and a budget made of that put every round trip of
    /// `shm bench`'s 64 B and 4 KiB peers cases in the slow mode (24.6 µs, against 3.4 µs with a 15 µs spin).
    public static let shortestSpin: Int64 = 15_000
    /// How many wake-ups a spin may last. A peer that slept answers only after its own wake-up and its work; a
    /// waiter that gives up before that falls asleep too, and from then on every round trip pays two wake-ups
    /// (the bimodal slow mode of #31). Measured here (`shm bench --experiments peers`, 4 KiB ping-pong, a wake-up
    /// of 7–8 µs): a 10 µs spin stayed in the slow mode (24.6 µs a round trip), 15 µs left it (3.4 µs), 20 µs too
    /// (3.1 µs). Three wake-ups keep a margin over two and bound the waste at three times a sleep's cost.
    public static let wakeUpsPerSpin: Int64 = 3

    /// How long an adaptive wait spins, in nanoseconds: nothing on one CPU (the peer needs this one); otherwise
    /// ``wakeUpsPerSpin`` times the cost of one wake-up (`wakeUp`), or what waits taught (`learned`) if that is
    /// longer, bounded by ``shortestSpin`` and ``longestSpin``.
    ///
    /// No shorter spin when more threads are runnable than there are CPUs: measured with a busy loop on each CPU
    /// (`shm bench --loaded`), a tenth of the budget put the 64 B round trip at 9.8 µs against 0.63 µs with the whole
    /// one, and streamed 64 KiB messages slower (2.2–2.7 GB/s against 2.6–3.1). A peer queued on this CPU gets it at
    /// the end of the spin: the wait yields before it sleeps.
    public static func spinBudget(cpus: Int, wakeUp: Int64, learned: Int64 = 0) -> Int64 {
        guard cpus > 1 else { return 0 }
        let base = max(wakeUp.multipliedReportingOverflow(by: wakeUpsPerSpin).partialValue, learned, shortestSpin)
        return min(base, longestSpin)
    }

    /// What this process's waits have taught the budget (0: nothing yet): ``adjusted(_:afterWaiting:)`` after every
    /// adaptive wait that spun out and slept.
    static let learned = ManagedAtomic<Int64>(0)

    /// The budget after a wait that spun out and slept until `waited` nanoseconds after it began. An answer that came
    /// within ``longestSpin`` was a near miss: a spin that long would have caught it, and a miss is what starts the
    /// slow mode (both sides asleep, every round trip paying two wake-ups that may each cost more than the spin:
    /// #31's bimodal round trips, 34 µs against 0.7 µs with a 15 µs budget when the vCPUs had gone idle). So the
    /// budget grows to a quarter more than that wait (at most ``longestSpin``). A wait of more than twice
    /// ``longestSpin`` was a peer with nothing to say: the budget shrinks by an eighth (never below what the
    /// wake-up's cost gives, ``spinBudget(cpus:wakeUp:learned:)``). In between, it stays.
    public static func adjusted(_ budget: Int64, afterWaiting waited: Int64) -> Int64 {
        if waited <= longestSpin { return min(longestSpin, max(budget, waited &+ waited / 4)) }
        if waited > 2 * longestSpin { return budget &- budget / 8 }
        return budget
    }

    /// Teaches this process's budget what a wait that spun out and slept found (``adjusted(_:afterWaiting:)``).
    static func learn(budget: Int64, waited: Int64) {
        learned.store(adjusted(budget, afterWaiting: waited), ordering: .relaxed)
    }

    /// Whether this thread's last adaptive wait found its peer on its own CPU: its yield at the end of a spin ran
    /// the peer, which answered. Then the thread's next waits yield first instead of spinning, until a look after
    /// such a yield finds nothing. Two processes that start on one CPU (a forked child starts on its parent's) share
    /// it until the scheduler moves one, and each spin there only keeps the peer from answering: a whole spin on
    /// each side a round trip (`shm swift-bench ping-pong`: 78–95 µs, against 0.2–0.7 µs on two CPUs). Kept per
    /// thread (in C, `csm_peer_shares_cpu`): each thread waits for its own peer.
    static var sharesCPU: Bool {
        get { csm_peer_shares_cpu() != 0 }
        set { csm_set_peer_shares_cpu(newValue ? 1 : 0) }
    }

    /// Whether a yield that took `yieldTook` nanoseconds ran the peer on this CPU: it ran another thread here
    /// (`switched`, this thread's involuntary context switches moved) and came back within twice ``longestSpin``
    /// (the peer's work and its own spin before it yields back). A longer one ran something else (a busy loop, for
    /// its scheduler slice of a millisecond or more), and yielding first there would hand the CPU away on every wait;
    /// one that ran nobody says nothing. (Whether the answer came is the look's: a look after it that finds nothing
    /// takes the belief back.)
    public static func peerRan(yieldTook: Int64, switched: Bool) -> Bool {
        switched && yieldTook <= 2 * longestSpin
    }

    /// Whether a wait whose yield ran its peer on this CPU again moves this thread to another CPU
    /// (`csm_move_off_this_cpu`): once in ``movesPerShare`` such yields, drawn from the clock's nanoseconds at `now`.
    /// Both sides find the other on their CPU and decide alike; a draw (not a count, which both would reach a step
    /// apart) keeps them from both moving, onto the same CPU, most of the time. A thread that moves no longer
    /// believes it shares its CPU; should both move to one, they find each other there and draw again.
    public static func movesAway(at now: Int64) -> Bool {
        (now >> 6) % movesPerShare == 0
    }

    /// One in how many yields that ran the peer again moves the thread (``movesAway(at:)``): a shared CPU costs a
    /// round trip about 3 µs (two yields), so 16 of them cost 50 µs, one spin's worth.
    public static let movesPerShare: Int64 = 16

    /// This process's budget now.
    public static func currentBudget() -> Int64 {
        spinBudget(cpus: cpus, wakeUp: wakeUpCost, learned: learned.load(ordering: .relaxed))
    }

    /// The CPUs this process may run on (`sched_getaffinity`), read once.
    public static let cpus = Int(csm_allowed_cpus())

    /// Nanoseconds the kernel takes to run a sleeping thread again on this machine: the median of 11 sleeps of this
    /// thread on a futex with a 1 µs timeout, past the timeout (timer slack at 1 ns meanwhile), measured once, in C
    /// (`csm_wake_up_cost_ns`), on the first adaptive wait that has to wait. No second thread: a wait may run in a
    /// forked child of a multithreaded process, where starting a thread is unsafe (ThreadSanitizer kills the
    /// child; CI's `shm bench` then waited for ever on it). ``longestSpin`` if it could not be measured.
    public static var wakeUpCost: Int64 {
        let measured = csm_wake_up_cost_ns()
        return measured > 0 ? measured : longestSpin
    }
}
