import Atomics
import Glibc

/// A value one process writes and any number read, without a lock: readers never block the writer and never see a
/// torn value (a sequence lock, as the Linux kernel keeps its clock for `gettimeofday`).
///
/// The writer makes the sequence odd, writes the value, and makes it even again; a reader copies the value between
/// two reads of the sequence and keeps the copy only if both were the same even number. Readers cost the writer
/// nothing; a reader that keeps meeting a write in progress retries (``read(timeout:)`` bounds that).
///
/// ```swift
/// let cell = try SeqlockCell<Quote>.format(in: region, at: 0)      // once
/// let writer = try SeqlockCell<Quote>.Writer(in: region, at: 0)    // one process: the writer
/// writer.write(Quote(bid: 101, ask: 102))
/// let quote = try SeqlockCell<Quote>(in: region, at: 0).read()     // any process, any number of them
/// ```
///
/// Layout at `offset` (8-byte aligned): the sequence (u64), the writer's pid (i32) and start time (u64), then the
/// value, 8-byte aligned. ``size`` says how many bytes that takes. One writer at a time: ``Writer`` claims the
/// writer's seat (`busy` while a live process holds it; a dead writer's seat, and a write it left half done, are
/// taken over). Like the other objects made in a region, a cell holds the region's mapping.
public struct SeqlockCell<Value: BitwiseCopyable>: @unchecked Sendable {
    let mapping: RegionMapping
    let address: UnsafeMutableRawPointer

    // The cell's fields are declared in SeqlockLayout (Kit/Formats.swift).

    /// Bytes a cell of `Value` takes in a region.
    public static var size: Int { SeqlockLayout.value.offset + (MemoryLayout<Value>.size + 7) & ~7 }

    /// Makes an empty cell (sequence 0, value bytes zero) at `offset`: once, before any process uses it.
    public static func format(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> SeqlockCell {
        let cell = try SeqlockCell(in: region, at: offset)
        cell.address.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        return cell
    }

    /// The cell another process formatted at `offset`, for reading.
    public init(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) {
        let place = try region.sharedObjectAddress(at: offset, size: Self.size, alignment: 8, what: "a seqlock cell")
        mapping = place.mapping
        address = place.address
    }

    private var sequence: UnsafeAtomic<UInt64> { SeqlockLayout.sequence.atomic(address, UInt64.self) }

    /// The sequence: twice the number of writes completed, odd while one is in progress.
    public var version: UInt64 { sequence.load(ordering: .acquiring) }

    /// The value, never torn: a copy taken while no write was in progress. Waits out a write in progress (spinning,
    /// then yielding) at most `timeout`, then throws ``SharedMemoryError/Code/timedOut``; with no timeout, waits as
    /// long as writes keep overlapping it.
    public func read(timeout: Duration? = nil) throws(SharedMemoryError) -> Value {
        var deadline: Int64? = nil
        var tries = 0
        while true {
            if let value = tryRead() { return value }
            tries += 1
            if tries > 100 {
                if deadline == nil, let timeout { deadline = Deadline(after: timeout).nanoseconds }
                if let deadline, MonotonicClock.now() >= deadline {
                    throw SharedMemoryError(.timedOut, "every read of the cell met a write in progress for \(timeout!) (is its writer stuck half way?)", region: mapping.name)
                }
                sched_yield()
            }
        }
    }

    /// The value if no write overlapped the copy, else `nil` (at once, no waiting).
    public func tryRead() -> Value? {
        let before = sequence.load(ordering: .acquiring)
        guard before & 1 == 0 else { return nil }
        let value = Self.copy(from: address + SeqlockLayout.value.offset)
        atomicMemoryFence(ordering: .acquiring)
        return sequence.load(ordering: .relaxed) == before ? value : nil
    }

    /// The value's bytes, copied 8 at a time with relaxed atomic loads (a plain copy racing with the writer's stores
    /// is a data race the compiler may miscompile; these are not).
    static func copy(from source: UnsafeMutableRawPointer) -> Value {
        withUnsafeTemporaryAllocation(byteCount: (MemoryLayout<Value>.size + 7) & ~7, alignment: 8) { buffer in
            for word in 0..<buffer.count / 8 {
                let atomic = UnsafeAtomic<UInt64>(at: (source + word * 8).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
                buffer.storeBytes(of: atomic.load(ordering: .relaxed), toByteOffset: word * 8, as: UInt64.self)
            }
            return buffer.loadUnaligned(as: Value.self)
        }
    }

    /// The one process that writes the cell: holds the writer's seat while it exists, and gives it back when it goes
    /// (or at ``close()``).
    public struct Writer: ~Copyable, @unchecked Sendable {
        let cell: SeqlockCell

        /// Claims the writer's seat of the cell at `offset`: ``SharedMemoryError/Code/busy`` if a live process holds
        /// it (this one included, through another writer). A dead writer's seat is taken over, and a write it left
        /// half done (an odd sequence) is finished as the next write.
        public init(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) {
            let cell = try SeqlockCell(in: region, at: offset)
            try Self.seat(cell).claim(region: cell.mapping.name) { "process \($0) is already this cell's writer; a seqlock cell has one" }
            self.cell = cell
        }

        static func seat(_ cell: SeqlockCell) -> Seat { .writer(cell.address) }

        /// A writer that goes away without ``close()`` vacates its seat: another process may then write.
        deinit {
            Self.seat(cell).vacate()
        }

        /// Writes `value`: readers see the old value or this one, never a mix.
        public func write(_ value: Value) {
            let sequence = cell.sequence
            // Odd while writing (a dead writer's half-done write left it odd: this write finishes it).
            let current = sequence.load(ordering: .relaxed)
            let odd = current | 1
            sequence.store(odd, ordering: .relaxed)
            atomicMemoryFence(ordering: .releasing)
            withUnsafeBytes(of: value) { bytes in
                let target = cell.address + SeqlockLayout.value.offset
                var word = 0
                while word * 8 < bytes.count {
                    var chunk: UInt64 = 0
                    withUnsafeMutableBytes(of: &chunk) { chunkBytes in
                        let count = min(8, bytes.count - word * 8)
                        chunkBytes.baseAddress!.copyMemory(from: bytes.baseAddress! + word * 8, byteCount: count)
                    }
                    UnsafeAtomic<UInt64>(at: (target + word * 8).assumingMemoryBound(to: UInt64.AtomicRepresentation.self)).store(chunk, ordering: .relaxed)
                    word += 1
                }
            }
            sequence.store(odd &+ 1, ordering: .releasing)
        }

        /// Gives the writer's seat back, so another process may write.
        public consuming func close() {
            Self.seat(cell).release()
        }
    }
}
