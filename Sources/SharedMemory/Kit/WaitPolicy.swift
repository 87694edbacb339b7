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
    /// The default: spin for three futex wake-ups' time on this machine (measured once per process; between 15 and
    /// 50 µs), not at all on a single CPU, a tenth of that when more threads are runnable than there are CPUs; then
    /// yield the CPU once, look again, and sleep. A spin shorter than the peer's own wake-up sends both sides to
    /// sleep for good; a spin on a CPU the peer needs keeps the peer from running (Docs/Synchronisation.md, "Waiting").
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
/// here, measured once; and how busy the machine is now, sampled at most every 10 ms. The decisions are
/// ``spinBudget(cpus:wakeUp:crowded:)``, a pure function the tests pin.
@_spi(Tools) public enum WaitPolicy {
    /// The longest a spin may last, whatever a wake-up costs: past it, sleeping is as good.
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

    /// How long an adaptive wait spins, in nanoseconds: nothing on one CPU (the peer needs this one);
    /// ``wakeUpsPerSpin`` times the cost of one wake-up (`wakeUp`) otherwise, bounded by ``shortestSpin`` and
    /// ``longestSpin``; and a tenth of that when at least two more threads want to run than there are CPUs
    /// (`crowded`), where a spinning waiter keeps a runnable peer off its CPU.
    public static func spinBudget(cpus: Int, wakeUp: Int64, crowded: Bool) -> Int64 {
        guard cpus > 1 else { return 0 }
        let budget = min(max(wakeUp.multipliedReportingOverflow(by: wakeUpsPerSpin).partialValue, shortestSpin), longestSpin)
        return crowded ? budget / 10 : budget
    }

    /// This process's budget now.
    public static func currentBudget() -> Int64 {
        spinBudget(cpus: cpus, wakeUp: wakeUpCost, crowded: isCrowded())
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

    /// Whether at least two more threads are runnable than this process has CPUs (the fourth field of /proc/loadavg,
    /// "running/total", counts this thread too; one more is a passing kernel thread as often as not), looked at most
    /// every 10 ms.
    public static func isCrowded() -> Bool {
        let now = MonotonicClock.now()
        if now &- crowdLookedAt.load(ordering: .relaxed) < 10_000_000 { return crowded.load(ordering: .relaxed) }
        crowdLookedAt.store(now, ordering: .relaxed)
        var running = 0
        if let text = try? Syscalls.readFile("/proc/loadavg"), let slash = text.firstIndex(of: UInt8(ascii: "/")) {
            var start = slash
            while start > text.startIndex, text[start - 1] != UInt8(ascii: " ") { start -= 1 }
            running = Int(String(decoding: text[start..<slash], as: UTF8.self)) ?? 0
        }
        let verdict = running > cpus + 1
        crowded.store(verdict, ordering: .relaxed)
        return verdict
    }

    private static let crowdLookedAt = ManagedAtomic<Int64>(0)
    private static let crowded = ManagedAtomic<Bool>(false)
}
