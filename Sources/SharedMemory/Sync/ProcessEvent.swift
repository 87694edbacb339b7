import Atomics
import CSharedMemory

/// How a waiter waits: spinning (fastest wake-up, burns a CPU), sleeping in the kernel (a futex: costs a system
/// call and a wake-up of about 10 µs), or spinning a little and then sleeping.
public enum WaitStrategy: Sendable, Hashable {
    /// Poll until the condition holds (reading the clock every 1 024 polls, for the timeout and the peer's death).
    /// Only when each side has a CPU of its own.
    case spin
    /// Sleep in the kernel at once.
    case sleep
    /// Poll `spins` times (each with a `PAUSE`), then sleep. The default, with 2000 spins (about 50 µs on an AMD
    /// EPYC, where a `PAUSE` takes about 25 ns; less on most Intel cores).
    case spinThenSleep(spins: Int)

    /// Spin 2000 times, then sleep.
    public static let `default` = WaitStrategy.spinThenSleep(spins: 2000)

    var spins: Int {
        switch self {
        case .spin: .max
        case .sleep: 0
        case .spinThenSleep(let spins): spins
        }
    }
}

/// An event in shared memory that processes can wait for: a 32-bit futex word, 0 (not signaled) or 1
/// (signaled). ``signal()`` wakes every waiter in every process; the event stays signaled until ``reset()``.
/// Waiting spins a little, then sleeps in the kernel (`FUTEX_WAIT`, shared between processes).
///
/// The event holds the region's mapping (``RegionMapping``): the memory stays mapped while the event exists, and
/// the region cannot be resized or remapped meanwhile. It is `Sendable`.
public struct ProcessEvent: @unchecked Sendable {
    /// Bytes an event takes in a region.
    public static let size = 4
    /// The alignment its offset needs.
    public static let alignment = 4

    /// Keeps the memory mapped while the event exists.
    let mapping: RegionMapping
    let word: UnsafeAtomic<UInt32>
    let address: UnsafeMutableRawPointer

    private init(_ place: (mapping: RegionMapping, address: UnsafeMutableRawPointer)) {
        mapping = place.mapping
        address = place.address
        word = UnsafeAtomic(at: address.assumingMemoryBound(to: UInt32.AtomicRepresentation.self))
    }

    /// Makes a new event at `offset`, not signaled.
    public static func initialize(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> ProcessEvent {
        let event = try existing(in: region, at: offset)
        event.word.store(0, ordering: .releasing)
        return event
    }

    /// The event another process made at `offset`.
    public static func existing(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> ProcessEvent {
        ProcessEvent(try region.sharedObjectAddress(at: offset, size: size, alignment: alignment, what: "an event"))
    }

    /// Whether it is signaled now.
    public var isSignaled: Bool { word.load(ordering: .acquiring) != 0 }

    /// Signals the event and wakes every waiter. The corresponding C call is `futex(FUTEX_WAKE)`.
    public func signal() {
        if word.exchange(1, ordering: .acquiringAndReleasing) == 0 { Syscalls.futexWake(address) }
    }

    /// Makes the event not signaled again.
    public func reset() {
        word.store(0, ordering: .releasing)
    }

    /// Waits until the event is signaled, at most `timeout` (nil: for ever); throws
    /// ``SharedMemoryError/Code/timedOut`` if the time ran out first, as every wait in the library does
    /// (``isSignaled`` looks without waiting). The corresponding C call is `futex(FUTEX_WAIT)`.
    public func wait(timeout: Duration? = nil, strategy: WaitStrategy = .default) throws(SharedMemoryError) {
        var waiting = Wait(strategy, timeout: timeout)
        while true {
            if word.load(ordering: .acquiring) != 0 { return }
            if waiting.spin() { continue }
            // No flag to raise: `signal()` wakes whenever it changes the word. Nobody to look at either.
            if try waiting.sleep(on: address, raise: { 0 }, lower: {}) == .deadlinePassed { throw timedOut(timeout!) }
        }
    }

    /// The error of a wait that ran out of time.
    func timedOut(_ timeout: Duration) -> SharedMemoryError {
        SharedMemoryError(.timedOut, "the event was not signaled within \(timeout)", region: mapping.name)
    }
}
