import Atomics

/// The format handshake of every in-region structure (ring, publish/subscribe and request/response services, heap):
/// the formatter writes the header, then its last word (the magic number, or the heap's format state) with a release
/// store, then wakes every process waiting on that word's low half (`FUTEX_WAKE`, shared). A process that may attach
/// first sleeps on the word (`FUTEX_WAIT`) until it changes, never polling; each sleep is bounded (a slice of at
/// most 100 ms, then the caller looks again: a formatter that died, a deadline, a peer that writes without waking).
enum Handshake {
    /// Makes a formatted header visible: `magic` into the 8 bytes at `base`, last and releasing, then a wake-up of
    /// every waiter.
    static func publish(_ magic: UInt64, at base: UnsafeMutableRawPointer) {
        UnsafeAtomic<UInt64>(at: base.assumingMemoryBound(to: UInt64.AtomicRepresentation.self)).store(magic, ordering: .releasing)
        Syscalls.futexWake(base)
    }

    /// Wakes every process sleeping on the word at `word` (after a release store to it).
    static func wake(_ word: UnsafeMutableRawPointer) {
        Syscalls.futexWake(word)
    }

    /// The 8 bytes at `base` once they are not zero (acquire), sleeping on their low half until then; nil if they
    /// are still zero at `deadline` (`CLOCK_MONOTONIC` nanoseconds). Every magic number the library writes has a
    /// low half that is not zero, so the low half changes when the magic is written.
    static func magic(at base: UnsafeMutableRawPointer, until deadline: Int64) -> UInt64? {
        let word = UnsafeAtomic<UInt64>(at: base.assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
        while true {
            let value = word.load(ordering: .acquiring)
            if value != 0 { return value }
            guard sleep(on: base, seen: 0, until: deadline) else { return word.load(ordering: .acquiring).nonZero }
        }
    }

    /// Waits (as ``magic(at:until:)``) for the structure at `base` and checks that it is `expected`: `timedOut` if
    /// nothing was formatted there by `deadline` (every wait that runs out is), `foreign` at once if something else
    /// is there. `what` names the
    /// structure ("publish/subscribe service").
    static func expect(_ expected: UInt64, at base: UnsafeMutableRawPointer, until deadline: Int64, what: String, offset: Int, region: RegionName) throws(SharedMemoryError) {
        guard let found = magic(at: base, until: deadline) else {
            throw SharedMemoryError(.timedOut, "no \(what) has been formatted at offset \(offset) yet", region: region)
        }
        guard found == expected else {
            throw SharedMemoryError(.foreign, "the region at offset \(offset) holds no \(what) (its magic number is \(String(found, radix: 16)))", region: region)
        }
    }

    /// One sleep on the 32-bit word at `word` while it holds `seen`, at most a slice and never past `deadline`.
    /// False if the deadline had passed (nothing slept).
    @discardableResult
    static func sleep(on word: UnsafeMutableRawPointer, seen: UInt32, until deadline: Int64) -> Bool {
        let left = deadline &- MonotonicClock.now()
        guard left > 0 else { return false }
        Syscalls.futexWait(word, seen, timeout: min(left, Wait.slice))
        return true
    }
}

extension UInt64 {
    fileprivate var nonZero: UInt64? { self == 0 ? nil : self }
}
