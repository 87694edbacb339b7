import Atomics
import CSharedMemory
import Glibc

/// A single-producer, single-consumer ring of variable-size messages laid out in a region, for streaming between
/// two processes without system calls on the fast path.
///
/// Layout (all in the region, from `offset`): a 256-byte header, then `capacity` bytes of data (a power of two).
/// The header holds a magic number, a version, the capacity, the sender's and the receiver's pid and start
/// time, and, each on a cache line of its own, the write position (head), the read position (tail), and the
/// futex words the two sides sleep on. Each message is a 4-byte length and its bytes, padded to 8; a message
/// that would cross the end of the data leaves a wrap marker and starts again at the beginning, so every
/// message is contiguous (readable in place, with no copy). The positions count bytes since the ring was
/// formatted and wrap around at 2^64.
///
/// Neither side trusts the other's words: a side that attaches checks the header and both positions, the
/// receiver checks every length and position the sender publishes, and the sender the position the receiver
/// frees; what does not add up is ``SharedMemoryError/Code/foreign``, never a read or a write outside the ring.
///
/// ```swift
/// // One process formats and sends:
/// try MessageRing.format(region, capacity: 1 << 22)
/// let sender = try RingSender(region)
/// try sender.send(Array("hello".utf8))
/// // The other receives:
/// let receiver = try RingReceiver(peerRegion)
/// let message = try receiver.receive()        // nil once the sender has finished and the ring is empty
/// ```
///
/// A side that waits (for data, or for space) checks every 100 ms whether the other side's process still runs,
/// and throws ``SharedMemoryError/Code/peerDied`` if not, once nothing is left to read.
public enum MessageRing {
    // The layout is specified in Docs/WireFormat.md, which the C header and the Python package in Interop/ also
    // implement: a change here is a change there.

    /// "SHMRING" and a zero byte.
    static let magic: UInt64 = 0x53_48_4D_52_49_4E_47_00
    /// The layout's major version: a reader refuses any other. Any minor version of it is read (a minor version
    /// only gives meaning to bytes that are reserved, zero, in the versions before it).
    static let majorVersion: UInt16 = 1
    static let minorVersion: UInt16 = 0
    @inlinable static var headerSize: Int { 256 }

    // The header's fields are declared in RingHeader (Kit/Formats.swift).

    /// The bytes a ring of `capacity` takes in a region (`Int.max` for a capacity no region can hold).
    public static func size(capacity: Int) -> Int { capacity > Int.max - headerSize ? .max : headerSize + capacity }

    /// The largest message a ring of `capacity` carries.
    public static func maxMessage(capacity: Int) -> Int { capacity / 2 - 4 }
    @available(*, deprecated, renamed: "maxMessage(capacity:)")
    public static func maximumMessage(capacity: Int) -> Int { maxMessage(capacity: capacity) }

    /// Writes a new, empty ring at `offset` with `capacity` bytes of data (a power of two, at least 4096; by
    /// default the largest that fits). Do this once, before either side attaches; a side that may start first
    /// waits for it with ``waitUntilFormatted(_:at:timeout:)``.
    ///
    /// The ring takes ``size(capacity:)`` bytes from `offset`: the capacity and a 256-byte header. A region of
    /// exactly `1 << 22` bytes holds a ring of capacity `1 << 21` at most; create it with
    /// `MessageRing.size(capacity: 1 << 22)` bytes for a ring of capacity `1 << 22`.
    @discardableResult
    public static func format(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, capacity: Int? = nil) throws(SharedMemoryError) -> Int {
        let room = offset >= 0 && offset <= region.size ? region.size - offset - headerSize : -1  // any offset: no overflow
        let capacity = capacity ?? (room >= 4096 ? 1 << (Int.bitWidth - 1 - room.leadingZeroBitCount) : 4096)
        guard capacity >= 4096, capacity & (capacity - 1) == 0 else {
            throw SharedMemoryError(.invalidArgument, "a ring's capacity is a power of two of at least 4096 bytes, not \(capacity)", region: region.name)
        }
        guard offset >= 0, capacity <= room else {
            let fits = room >= 4096 ? "; the largest that fits is \(1 << (Int.bitWidth - 1 - room.leadingZeroBitCount))" : ""
            guard offset >= 0 else {
                throw SharedMemoryError(.invalidArgument, "a ring's offset cannot be negative (\(offset))", region: region.name)
            }
            let (needed, overflow) = offset.addingReportingOverflow(size(capacity: capacity))
            throw SharedMemoryError(.invalidArgument, "a ring of capacity \(capacity) needs MessageRing.size(capacity: \(capacity)) = \(size(capacity: capacity)) bytes (the capacity and a \(headerSize)-byte header) from offset \(offset), and the region holds \(region.size) bytes: create it with at least \(overflow ? "more than \(Int.max)" : "\(needed)") bytes, or ask for a smaller capacity\(fits)", region: region.name)
        }
        let base = try region.sharedObjectAddress(at: offset, size: size(capacity: capacity), alignment: 64, what: "a message ring").address
        base.initializeMemory(as: UInt8.self, repeating: 0, count: headerSize)
        RingHeader.major.store(majorVersion, base)
        RingHeader.minor.store(minorVersion, base)
        RingHeader.headerSize.store(UInt32(headerSize), base)
        RingHeader.capacity.store(UInt64(capacity), base)
        Handshake.publish(magic, at: base + RingHeader.magic.offset)  // last: the ring is ready; wakes waitUntilFormatted
        return capacity
    }

    /// Waits until a ring has been formatted at `offset` (by ``format(_:at:capacity:)`` in any process), at
    /// most `timeout`: the readiness handshake for a side that may start before the one that formats. It sleeps
    /// on a futex that `format` wakes, so it returns as soon as the ring is ready. A region with something
    /// else at `offset` (its first 8 bytes not zero and not a ring of this version) is
    /// ``SharedMemoryError/Code/foreign`` at once; no ring in time is ``SharedMemoryError/Code/timedOut``, as for
    /// every format.
    ///
    /// The corresponding C call is `futex(FUTEX_WAIT)` on the low half of the ring's magic number.
    public static func waitUntilFormatted(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration) throws(SharedMemoryError) {
        let base = try region.sharedObjectAddress(at: offset, size: headerSize, alignment: 64, what: "a message ring").address
        try Handshake.expect(magic, at: base + RingHeader.magic.offset, until: Deadline(after: timeout).end, what: "message ring", offset: offset, region: region.name)
        try validate(region, at: offset)  // another version, or a header that does not add up: foreign
    }

    /// Checks the header a peer wrote and returns the mapping, the base address and the capacity; anything
    /// unexpected is `foreign` (another program's data, another version of this library, or a ring that does not
    /// fit).
    @discardableResult
    static func validate(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> (RegionMapping, UnsafeMutableRawPointer, Int) {
        let (mapping, base) = try region.sharedObjectAddress(at: offset, size: headerSize, alignment: 64, what: "a message ring")
        let capacity = try readCapacity(base, room: region.size - offset, offset: offset, region: region.name)
        return (mapping, base, capacity)
    }

    /// The capacity the header at `base` states, checked as every side checks it: this format's magic and major
    /// version, its header size, and a power of two of data that fits in the `room` bytes from `offset`; else
    /// `foreign`. Reads only.
    static func readCapacity(_ base: UnsafeRawPointer, room: Int, offset: Int, region: RegionName?) throws(SharedMemoryError) -> Int {
        let foundMagic = UnsafeAtomic<UInt64>(at: UnsafeMutableRawPointer(mutating: base).assumingMemoryBound(to: UInt64.AtomicRepresentation.self)).load(ordering: .acquiring)
        guard foundMagic == magic else {
            throw SharedMemoryError(.foreign, "there is no message ring at offset \(offset) (magic 0x\(String(foundMagic, radix: 16))); format one with MessageRing.format", region: region)
        }
        let foundMajor = RingHeader.major.load(base, UInt16.self)
        let foundMinor = RingHeader.minor.load(base, UInt16.self)
        let foundHeader = RingHeader.headerSize.load(base, UInt32.self)
        guard foundMajor == majorVersion, foundHeader == headerSize else {
            throw SharedMemoryError(.foreign, "the ring was written by version \(foundMajor).\(foundMinor) of its layout (header \(foundHeader) bytes); this library reads version \(majorVersion).x only", region: region)
        }
        let capacity = Int(truncatingIfNeeded: RingHeader.capacity.load(base, UInt64.self))
        guard capacity >= 4096, capacity & (capacity - 1) == 0, capacity <= room - headerSize else {
            throw SharedMemoryError(.foreign, "the ring's header claims \(capacity) bytes of data, which is not a power of two that fits in the region", region: region)
        }
        return capacity
    }

    @inlinable
    static func atomic<T: AtomicValue>(_ base: UnsafeMutableRawPointer, _ offset: Int, _ type: T.Type) -> UnsafeAtomic<T> {
        UnsafeAtomic(at: (base + offset).assumingMemoryBound(to: T.AtomicRepresentation.self))
    }

    /// The ring's two sides, each with a seat in the header (see ``Seat``): the process that sends and the one that
    /// receives.
    enum Side {
        case sender, receiver

        func seat(_ base: UnsafeRawPointer) -> Seat {
            self == .sender ? .sender(base) : .receiver(base)
        }

        var tokenOffset: Int { self == .sender ? RingHeader.senderToken.offset : RingHeader.receiverToken.offset }
    }

    /// Claims `side`'s seat for this process, `busy` if a live process holds it through a live handle (this one
    /// included; a handle vacates its seat when it goes), and writes the fresh random token each attach writes (Docs/WireFormat.md).
    static func claim(_ side: Side, _ base: UnsafeMutableRawPointer, _ region: RegionName) throws(SharedMemoryError) {
        try side.seat(base).claim(region: region) { "process \($0) is already this ring's \(side); a ring has one of each" }
        var generator = SystemRandomNumberGenerator()
        atomic(base, side.tokenOffset, UInt64.self).store(generator.next() as UInt64 | 1, ordering: .releasing)
    }

    /// Whether the process on `side` still runs (an empty seat counts as alive: the peer has not come yet, or gave
    /// its seat back, which ends nothing).
    static func isAlive(_ side: Side, _ base: UnsafeMutableRawPointer) -> Bool {
        side.seat(base).occupant?.isAlive ?? true
    }
}

/// A message in place in the ring: where its bytes start and how many. A start and a count, not an
/// `UnsafeRawBufferPointer` (a start and an end): a receive reads the count (its body's span, the record's length
/// to release) and often never the start, and a buffer pointer's count is a subtraction, its end an addition, on
/// every message.
@usableFromInline
struct RingMessage {
    @usableFromInline let start: UnsafeRawPointer
    @usableFromInline let count: Int
    @inlinable init(start: UnsafeRawPointer, count: Int) {
        self.start = start
        self.count = count
    }
    @inlinable var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: start, count: count) }
}

/// `n` rounded up to a multiple of 8; `n` is a message length plus 4, far from overflowing.
@inlinable @inline(__always) func align8(_ n: Int) -> Int { (n &+ 7) & ~7 }

/// What one side of a ring keeps in memory of its own: its copies of the two positions (first, so the fast path
/// reaches them at a fixed offset), the ring's geometry as checked when the side attached, and what only slow paths
/// read.
@usableFromInline
struct RingSideLocal {
    @usableFromInline var head: UInt64
    @usableFromInline var tail: UInt64
    @usableFromInline let capacity64: UInt64
    /// The largest message (capacity / 2 - 4), kept: a signed division on every send and receive otherwise.
    @usableFromInline let maxMessage: Int
    /// Keeps the memory mapped while the side exists.
    let mapping: RegionMapping
    /// The side this handle holds the seat of.
    let side: MessageRing.Side
    /// How this side waits (``RingSender/strategy``, ``RingReceiver/strategy``).
    var strategy: WaitStrategy
    /// A receiver's event-loop descriptor, once asked for (``RingReceiver/readinessDescriptor()``).
    var readiness: Readiness?
}

/// One side's view of a ring: the addresses of its data and of the shared words in its header, and this side's
/// own copies of the two positions (so the fast path touches the other side's cache line only when it must).
/// Noncopyable, because it owns those copies: it frees them, and vacates its seat, when it goes away.
///
/// Two words: Swift passes a value of up to four words in registers and a larger one by address, so a side kept in
/// a class (an actor's, a server's state) was copied to the stack before every call that took it, on every message
/// (a 64-byte send and receive: 128 instructions against 105 in locals, `Benchmarks/Instructions/run.sh`,
/// `ring-class`). The capacity and the largest message are read from ``RingSideLocal`` where used (an operand of
/// the comparison): kept in the side as a third and fourth word they were held in registers across the loop and
/// spilled around the copy's `memmove`, a few instructions more a message (Docs/Design.md, "A handle is one or two
/// words").
@usableFromInline
struct RingView: ~Copyable {
    @usableFromInline let local: UnsafeMutablePointer<RingSideLocal>
    @usableFromInline let base: UnsafeMutableRawPointer
    @inlinable var capacity64: UInt64 { local.pointee.capacity64 }
    @inlinable var maxMessage: Int { local.pointee.maxMessage }

    // Everything else is a fixed offset from `base` (an addressing mode, no instruction) or in `local`.
    var mapping: RegionMapping { local.pointee.mapping }
    var side: MessageRing.Side { local.pointee.side }
    var name: RegionName { mapping.name }
    var capacity: Int { Int(truncatingIfNeeded: capacity64) }
    @inlinable var data: UnsafeMutableRawPointer { base + MessageRing.headerSize }
    @inlinable var mask: UInt64 { capacity64 &- 1 }
    @inlinable var head: UnsafeAtomic<UInt64> { RingHeader.head.atomic(base, UInt64.self) }
    @inlinable var tail: UnsafeAtomic<UInt64> { RingHeader.tail.atomic(base, UInt64.self) }
    var finished: UnsafeAtomic<UInt32> { RingHeader.finished.atomic(base, UInt32.self) }
    @inlinable var receiverWaiting: UnsafeAtomic<UInt32> { RingHeader.receiverWaiting.atomic(base, UInt32.self) }
    @inlinable var dataSignal: UnsafeAtomic<UInt32> { RingHeader.dataSignal.atomic(base, UInt32.self) }
    @inlinable var senderWaiting: UnsafeAtomic<UInt32> { RingHeader.senderWaiting.atomic(base, UInt32.self) }
    var spaceSignal: UnsafeAtomic<UInt32> { RingHeader.spaceSignal.atomic(base, UInt32.self) }

    /// Waits up to `timeout` for the ring at `offset` to be formatted, validates its header and takes `side`'s seat
    /// for this process.
    init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int, side: MessageRing.Side, strategy: WaitStrategy, timeout: Duration) throws(SharedMemoryError) {
        if timeout > .zero { try MessageRing.waitUntilFormatted(region, at: offset, timeout: timeout) }
        let (mapping, base, capacity) = try MessageRing.validate(region, at: offset)
        try MessageRing.claim(side, base, region.name)
        let head = RingHeader.head.atomic(base, UInt64.self), tail = RingHeader.tail.atomic(base, UInt64.self)
        // Positions only ever advance by whole 8-byte slots, and the sender is never more than a ring ahead.
        // Checked with the seat held, so this side's own position stands still and a live peer's only closes in.
        let written = head.load(ordering: .acquiring), read = tail.load(ordering: .acquiring)
        guard written & 7 == 0, read & 7 == 0, written &- read <= UInt64(capacity) else {
            side.seat(base).release()
            throw SharedMemoryError(.foreign, "the ring is corrupt: its write position \(written) and read position \(read) are not 8-byte slots at most \(capacity) bytes apart", region: region.name)
        }
        self.base = base
        local = .allocate(capacity: 1)
        local.initialize(to: RingSideLocal(head: written, tail: read, capacity64: UInt64(capacity), maxMessage: MessageRing.maxMessage(capacity: capacity),
                                           mapping: mapping, side: side, strategy: strategy, readiness: nil))
    }

    /// The sender's quick reservation, inlined into the caller: if a message of `count` bytes fits and there is room
    /// for it now, where its record starts in the data (its length word; the bytes follow it) and where the record
    /// ends as a position, a wrap marker already written if the record would cross the end; nothing is published
    /// yet (``publish(_:length:reserved:)`` does). Nil, with nothing written, otherwise: the sender's slow path then
    /// looks properly (and reports a message too large, or a receiver's position that does not add up).
    @inlinable @inline(__always)
    func reserveIfRoom(_ count: Int) -> (start: Int, end: UInt64)? {
        guard count >= 0, count <= maxMessage else { return nil }
        let need = UInt64(truncatingIfNeeded: align8(4 &+ count))
        let current = local.pointee.head
        let offset = current & mask
        let pad = offset &+ need > capacity64 ? capacity64 &- offset : 0  // offset below the capacity, need at most half
        let end = current &+ pad &+ need  // positions run free and wrap around at 2^64
        if end &- local.pointee.tail > capacity64 {
            // A read position that does not add up is not kept: a second try would otherwise trust it.
            let read = tail.load(ordering: .acquiring)
            guard current &- read <= capacity64 else { return nil }
            local.pointee.tail = read
            guard end &- read <= capacity64 else { return nil }
        }
        if pad > 0 { data.storeBytes(of: UInt32.max, toByteOffset: Int(truncatingIfNeeded: offset), as: UInt32.self) }
        return (Int(truncatingIfNeeded: (current &+ pad) & mask), end)
    }

    /// The bytes of a reserved record: `count` of them, after its length word.
    @inlinable @inline(__always)
    func bytes(of slot: (start: Int, end: UInt64), count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: data + (slot.start &+ 4), count: count)
    }

    /// Publishes the record ``reserveIfRoom(_:)`` gave for `reserved` bytes as a message of `length` of them (at
    /// most `reserved`; a shorter message ends its record earlier): its length word, then the write position
    /// (`head`, releasing). The caller then wakes a sleeping receiver.
    @inlinable @inline(__always)
    func publish(_ slot: (start: Int, end: UInt64), length: Int, reserved: Int) {
        let length = length < reserved ? max(0, length) : reserved
        data.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: slot.start, as: UInt32.self)
        let end = length == reserved
            ? slot.end : slot.end &- UInt64(truncatingIfNeeded: align8(4 &+ reserved)) &+ UInt64(truncatingIfNeeded: align8(4 &+ length))
        local.pointee.head = end
        head.store(end, ordering: .releasing)
    }

    /// The sender's quick try with a copy: ``reserveIfRoom(_:)``, the copy, ``publish(_:length:reserved:)``.
    @inlinable @inline(__always)
    func writeIfRoom(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard let slot = reserveIfRoom(count) else { return false }
        if count > 0 { (data + (slot.start &+ 4)).copyMemory(from: bytes.baseAddress!, byteCount: count) }
        publish(slot, length: count, reserved: count)
        return true
    }

    /// The receiver's quick look, inlined into the caller: the next message in place if one is published and its
    /// record is plainly valid (not a wrap marker, its length within what was published and within the data), else
    /// nil, and ``RingReceiver/poll()`` looks properly (it reports a corrupt ring; this only declines it).
    @inlinable @inline(__always)
    func nextIfPlain() -> RingMessage? {
        let current = local.pointee.tail
        if local.pointee.head == current { local.pointee.head = head.load(ordering: .acquiring) }
        let published = local.pointee.head &- current
        // published in 1...capacity, as one unsigned comparison (0 wraps to the largest value): two conditions here
        // were merged by the optimiser into flags combined with `and`, three instructions more on every receive.
        guard published &- 1 < capacity64 else { return nil }
        let offset = Int(truncatingIfNeeded: current & mask)  // below the capacity
        let length = Int(data.load(fromByteOffset: offset, as: UInt32.self))
        // A UInt32 length and an offset below the capacity: these sums cannot overflow an Int.
        guard length <= maxMessage, UInt64(truncatingIfNeeded: align8(4 &+ length)) <= published,
              UInt64(truncatingIfNeeded: offset &+ 4 &+ length) <= capacity64 else { return nil }
        return RingMessage(start: data + (offset &+ 4), count: length)
    }

    /// This side is going: its seat is vacated (another process may take it; this one's death still counts, and
    /// nothing ends: the stream ends only by `finish()`) and its copies of the positions freed.
    deinit {
        side.seat(base).vacate()
        local.deinitialize(count: 1)
        local.deallocate()
    }
}
