import Atomics
import CSharedMemory

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
