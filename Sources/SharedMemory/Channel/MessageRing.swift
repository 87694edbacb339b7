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
    static let headerSize = 256

    // The header's fields are declared in RingHeader (Kit/Formats.swift).

    /// The bytes a ring of `capacity` takes in a region (`Int.max` for a capacity no region can hold).
    public static func size(capacity: Int) -> Int { capacity > Int.max - headerSize ? .max : headerSize + capacity }

    /// The largest message a ring of `capacity` carries.
    public static func maximumMessage(capacity: Int) -> Int { capacity / 2 - 4 }

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
    /// ``SharedMemoryError/Code/foreign`` at once; no ring in time is ``SharedMemoryError/Code/timedOut``.
    ///
    /// The corresponding C call is `futex(FUTEX_WAIT)` on the low half of the ring's magic number.
    public static func waitUntilFormatted(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration) throws(SharedMemoryError) {
        let base = try region.sharedObjectAddress(at: offset, size: headerSize, alignment: 64, what: "a message ring").address
        guard Handshake.magic(at: base + RingHeader.magic.offset, until: MessageRing.deadline(after: timeout)!) != nil else {
            throw SharedMemoryError(.timedOut, "no message ring was formatted at offset \(offset) within \(timeout); is the process that formats it running?", region: region.name)
        }
        try validate(region, at: offset)  // something else there, or another version: foreign
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

    /// The header's two seats: the process that sends and the one that receives.
    enum Seat {
        case sender, receiver
        var pidOffset: Int { self == .sender ? RingHeader.senderPID.offset : RingHeader.receiverPID.offset }
        var startOffset: Int { self == .sender ? RingHeader.senderStart.offset : RingHeader.receiverStart.offset }
        var tokenOffset: Int { self == .sender ? RingHeader.senderToken.offset : RingHeader.receiverToken.offset }
    }

    /// The tokens of the seats this process holds through a live handle. A handle that goes away without
    /// `finish()` or `close()` changes nothing in the ring (a handle's lifetime is no protocol event: the
    /// optimiser may end it early); it only drops its token here, so that this process may claim the seat again.
    static let liveTokens = Locked<Set<UInt64>>([])

    /// The process in `seat`, or nil if it is empty.
    static func occupant(of seat: Seat, _ base: UnsafeMutableRawPointer) -> Creator? {
        let pid = atomic(base, seat.pidOffset, Int32.self).load(ordering: .acquiring)
        guard pid != 0 else { return nil }
        let start = base.load(fromByteOffset: seat.startOffset, as: UInt64.self)
        return Creator.seat(pid: pid, start: start)
    }

    /// Claims `seat` for this process and returns the seat's new token; `busy` if a live process holds it through
    /// a live handle (this process's own handles included). A seat a dead process left, or one this process holds
    /// through no live handle any more, is taken over.
    static func claim(_ seat: Seat, _ base: UnsafeMutableRawPointer, _ region: RegionName) throws(SharedMemoryError) -> UInt64 {
        let me = Creator.current
        let token = atomic(base, seat.tokenOffset, UInt64.self)
        while true {
            let holder = occupant(of: seat, base)
            if let holder, holder.isAlive,
               holder != me || liveTokens.withLock({ $0.contains(token.load(ordering: .acquiring)) }) {
                throw SharedMemoryError(.busy, "process \(holder.pid) is already this ring's \(seat); a ring has one of each", region: region)
            }
            base.storeBytes(of: me.startTime ?? 0, toByteOffset: seat.startOffset, as: UInt64.self)
            let pid = atomic(base, seat.pidOffset, Int32.self)
            if pid.compareExchange(expected: holder?.pid ?? 0, desired: me.pid, ordering: .acquiringAndReleasing).exchanged {
                var generator = SystemRandomNumberGenerator()
                let mine = generator.next() as UInt64 | 1
                token.store(mine, ordering: .releasing)
                liveTokens.withLock { _ = $0.insert(mine) }
                return mine
            }
        }
    }

    /// Gives `seat` back (an explicit `close()`, or a refused attach).
    static func leave(_ seat: Seat, _ base: UnsafeMutableRawPointer) {
        atomic(base, seat.pidOffset, Int32.self).store(0, ordering: .releasing)
    }

    /// Whether the process in `seat` still runs (an empty seat counts as alive: the peer has not come yet).
    static func isAlive(_ seat: Seat, _ base: UnsafeMutableRawPointer) -> Bool {
        occupant(of: seat, base)?.isAlive ?? true
    }

    enum Sleep { case woken, sliceElapsed, deadlinePassed }

    /// Sleeps on a futex word until it changes, `deadline` passes, or 100 ms go by (after which the caller looks
    /// at the peer: only then, so a wake-up never pays for reading /proc).
    static func sleep(on word: UnsafeMutableRawPointer, seen: UInt32, until deadline: Int64?) -> Sleep {
        var slice: Int64 = 100_000_000
        if let deadline {
            let left = deadline &- monotonicNanoseconds()
            if left <= 0 { return .deadlinePassed }
            slice = min(slice, left)
        }
        return Syscalls.futexWait(word, seen, timeout: slice) ? .sliceElapsed : .woken
    }

    /// When a wait that started now for `timeout` ends, in `CLOCK_MONOTONIC` nanoseconds; nil for no timeout. A
    /// plain integer and computed only once a side has to wait: an optional `ContinuousClock.Instant`, made on every
    /// call, cost the ring's fast path about 75 instructions a message (its type is resilient).
    static func deadline(after timeout: Duration?) -> Int64? {
        guard let timeout else { return nil }
        let (sum, overflow) = monotonicNanoseconds().addingReportingOverflow(timeout.nanoseconds)
        return overflow ? .max : sum
    }

    static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}

/// `n` rounded up to a multiple of 8; `n` is a message length plus 4, far from overflowing.
@inlinable @inline(__always) func align8(_ n: Int) -> Int { (n &+ 7) & ~7 }

/// One side's view of a ring: the addresses of its data and of the shared words in its header, and this side's
/// own copies of the two positions (so the fast path touches the other side's cache line only when it must).
@usableFromInline
struct RingView {
    /// Keeps the memory mapped while the side exists.
    let mapping: RegionMapping
    let name: RegionName
    let base: UnsafeMutableRawPointer
    @usableFromInline let data: UnsafeMutableRawPointer
    let capacity: Int
    @usableFromInline let capacity64: UInt64
    @usableFromInline let mask: UInt64
    /// The largest message (capacity / 2 - 4), kept: a signed division on every send and receive otherwise.
    @usableFromInline let maximumMessage: Int
    @usableFromInline let head: UnsafeAtomic<UInt64>
    @usableFromInline let tail: UnsafeAtomic<UInt64>
    let finished: UnsafeAtomic<UInt32>
    @usableFromInline let receiverWaiting: UnsafeAtomic<UInt32>
    @usableFromInline let dataSignal: UnsafeAtomic<UInt32>
    @usableFromInline let senderWaiting: UnsafeAtomic<UInt32>
    let spaceSignal: UnsafeAtomic<UInt32>
    @usableFromInline let position: UnsafeMutablePointer<(head: UInt64, tail: UInt64)>
    /// This handle's token for its seat (see ``MessageRing/liveTokens``).
    let token: UInt64

    /// Validates the header at `offset` and takes `seat` for this process.
    init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int, seat: MessageRing.Seat) throws(SharedMemoryError) {
        let (mapping, base, capacity) = try MessageRing.validate(region, at: offset)
        token = try MessageRing.claim(seat, base, region.name)
        head = RingHeader.head.atomic(base, UInt64.self)
        tail = RingHeader.tail.atomic(base, UInt64.self)
        // Positions only ever advance by whole 8-byte slots, and the sender is never more than a ring ahead.
        // Checked with the seat held, so this side's own position stands still and a live peer's only closes in.
        let written = head.load(ordering: .acquiring), read = tail.load(ordering: .acquiring)
        guard written & 7 == 0, read & 7 == 0, written &- read <= UInt64(capacity) else {
            MessageRing.leave(seat, base)
            let claimed = token
            MessageRing.liveTokens.withLock { _ = $0.remove(claimed) }
            throw SharedMemoryError(.foreign, "the ring is corrupt: its write position \(written) and read position \(read) are not 8-byte slots at most \(capacity) bytes apart", region: region.name)
        }
        self.mapping = mapping
        name = region.name
        self.base = base
        data = base + MessageRing.headerSize
        self.capacity = capacity
        capacity64 = UInt64(capacity)
        mask = UInt64(capacity - 1)
        maximumMessage = MessageRing.maximumMessage(capacity: capacity)
        finished = RingHeader.finished.atomic(base, UInt32.self)
        receiverWaiting = RingHeader.receiverWaiting.atomic(base, UInt32.self)
        dataSignal = RingHeader.dataSignal.atomic(base, UInt32.self)
        senderWaiting = RingHeader.senderWaiting.atomic(base, UInt32.self)
        spaceSignal = RingHeader.spaceSignal.atomic(base, UInt32.self)
        position = .allocate(capacity: 1)
        position.initialize(to: (written, read))
    }

    /// The sender's quick try, inlined into the caller: if `bytes` fit a message and there is room for it now,
    /// writes it (a wrap marker first if the record would cross the end) and publishes it (`head`, releasing);
    /// the caller then wakes a sleeping receiver. False, with nothing written, otherwise: ``RingSender/send(_:timeout:)``
    /// then looks properly (and reports a message too large, or a receiver's position that does not add up).
    @inlinable @inline(__always)
    func writeIfRoom(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard count <= maximumMessage else { return false }
        let need = UInt64(truncatingIfNeeded: align8(4 &+ count))
        let current = position.pointee.head
        let offset = current & mask
        let pad = offset &+ need > capacity64 ? capacity64 &- offset : 0  // offset below the capacity, need at most half
        let end = current &+ pad &+ need  // positions run free and wrap around at 2^64
        if end &- position.pointee.tail > capacity64 {
            position.pointee.tail = tail.load(ordering: .acquiring)
            guard current &- position.pointee.tail <= capacity64, end &- position.pointee.tail <= capacity64 else { return false }
        }
        if pad > 0 { data.storeBytes(of: UInt32.max, toByteOffset: Int(truncatingIfNeeded: offset), as: UInt32.self) }
        let start = Int(truncatingIfNeeded: (current &+ pad) & mask)
        if count > 0 { (data + (start &+ 4)).copyMemory(from: bytes.baseAddress!, byteCount: count) }
        data.storeBytes(of: UInt32(truncatingIfNeeded: count), toByteOffset: start, as: UInt32.self)
        position.pointee.head = end
        head.store(end, ordering: .releasing)
        return true
    }

    /// The receiver's quick look, inlined into the caller: the next message in place if one is published and its
    /// record is plainly valid (not a wrap marker, its length within what was published and within the data), else
    /// nil, and ``RingReceiver/poll()`` looks properly (it reports a corrupt ring; this only declines it).
    @inlinable @inline(__always)
    func nextIfPlain() -> UnsafeRawBufferPointer? {
        let current = position.pointee.tail
        if position.pointee.head == current { position.pointee.head = head.load(ordering: .acquiring) }
        let published = position.pointee.head &- current
        guard published != 0, published <= capacity64 else { return nil }
        let offset = Int(truncatingIfNeeded: current & mask)  // below the capacity
        let length = Int(data.load(fromByteOffset: offset, as: UInt32.self))
        // A UInt32 length and an offset below the capacity: these sums cannot overflow an Int.
        guard length <= maximumMessage, UInt64(truncatingIfNeeded: align8(4 &+ length)) <= published,
              UInt64(truncatingIfNeeded: offset &+ 4 &+ length) <= capacity64 else { return nil }
        return UnsafeRawBufferPointer(start: data + (offset &+ 4), count: length)
    }

    /// This handle is going: forget its token and free this side's copies. Nothing in the ring changes.
    func drop() {
        MessageRing.liveTokens.withLock { _ = $0.remove(token) }
        position.deallocate()
    }
}

/// The sending side of a ``MessageRing``. It holds the region's mapping (``RegionMapping``), so the ring stays
/// mapped while it lives, whatever becomes of the region's handle. Only ``finish()`` (or
/// ``close()``) tells the receiver that no more messages will come, or this process's death (`peerDied`): a
/// handle that goes away without them ends nothing, since a handle's lifetime is no protocol event (the
/// optimiser may end it after its last use). The seat stays this process's until it exits or attaches again.
public struct RingSender: ~Copyable {
    @usableFromInline let ring: RingView
    /// How this side waits for space.
    public var strategy: WaitStrategy

    /// The largest message this ring carries.
    public var maximumMessage: Int { ring.maximumMessage }

    /// Attaches as the ring's only sender; the ring must have been formatted. The region need not outlive the
    /// sender, and one region can hold several rings (at different offsets).
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, strategy: WaitStrategy = .default) throws(SharedMemoryError) {
        ring = try RingView(region, at: offset, seat: .sender)
        self.strategy = strategy
        ring.finished.store(0, ordering: .releasing)
    }

    deinit {
        ring.drop()
    }

    /// Finishes the stream and gives the sender's seat back, so another process may attach as the sender.
    public consuming func close() {
        finish()
        MessageRing.leave(.sender, ring.base)
    }

    /// Tells the receiver that no more messages come: once it has read what is in the ring, `receive` returns nil.
    public func finish() {
        ring.finished.store(1, ordering: .releasing)
        wakeReceiver(always: true)
    }

    /// Sends a copy of `bytes`, waiting for room at most `timeout` (nil: as long as the receiver lives).
    @inlinable
    public func send(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(SharedMemoryError) {
        if ring.writeIfRoom(bytes) {
            Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
            if ring.receiverWaiting.load(ordering: .relaxed) != 0 { wakeReceiverNow() }
            return
        }
        try sendSlowly(bytes, timeout: timeout)
    }

    /// ``send(_:timeout:)`` when the quick try found no room (or a message too large, or a corrupt ring: this
    /// says which).
    @usableFromInline
    func sendSlowly(_ bytes: UnsafeRawBufferPointer, timeout: Duration?) throws(SharedMemoryError) {
        _ = try withSlot(count: bytes.count, timeout: timeout, wait: true) { slot in
            if bytes.count > 0 { slot.copyMemory(from: bytes) }
            return bytes.count
        }
    }

    /// A receiver sleeps on an empty ring: signal the message.
    @usableFromInline
    func wakeReceiverNow() {
        ring.dataSignal.wrappingIncrement(ordering: .releasing)
        Syscalls.futexWake(ring.base + RingHeader.dataSignal.offset)
    }

    /// Sends a copy of `bytes`, waiting for room at most `timeout`.
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) throws(SharedMemoryError) {
        try sendUnsafe(count: bytes.count, timeout: timeout) { slot in slot.copyBytes(from: bytes) }
    }

    /// Sends `bytes` if there is room now; whether it did.
    public func trySend(_ bytes: UnsafeRawBufferPointer) throws(SharedMemoryError) -> Bool {
        try withSlot(count: bytes.count, timeout: nil, wait: false) { slot in
            if bytes.count > 0 { slot.copyMemory(from: bytes) }
            return bytes.count
        }
    }

    /// Zero-copy: reserves room for up to `count` bytes in the ring, lets `body` write the message in place
    /// through an `OutputRawSpan` (which cannot leave `body`, nor write past the room), and publishes what it
    /// wrote as one message.
    public func send(count: Int, timeout: Duration? = nil, _ body: (inout OutputRawSpan) -> Void) throws(SharedMemoryError) {
        _ = try withSlot(count: count, timeout: timeout, wait: true) { slot in
            var output = OutputRawSpan(buffer: slot, initializedCount: 0)
            body(&output)
            return output.finalize(for: slot)
        }
    }

    /// Zero-copy for C interop: reserves exactly `count` bytes in the ring, lets `body` fill them in place through
    /// a pointer, and publishes them as one message. The pointer is valid only inside `body`: the compiler does
    /// not check that; ``send(count:timeout:_:)`` is the safe way.
    public func sendUnsafe(count: Int, timeout: Duration? = nil, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws(SharedMemoryError) {
        _ = try withSlot(count: count, timeout: timeout, wait: true) { slot in
            body(slot)
            return count
        }
    }

    /// Reserves room for `count` bytes, calls `body` with it, and publishes as one message the number of bytes
    /// `body` returns (at most `count`).
    @inline(__always)
    private func withSlot(count: Int, timeout: Duration?, wait: Bool, _ body: (UnsafeMutableRawBufferPointer) -> Int) throws(SharedMemoryError) -> Bool {
        let need = try recordSize(count)
        var deadline: Int64? = nil  // set when this side first has to wait
        var spins = Int.min  // read from the strategy (a switch) once this side first has to wait
        var lookAtPeer = false
        while true {
            let place = try place(need)
            if place.free {
                write(count, at: place, body)
                return true
            }
            guard wait else { return false }
            if spins == .min { spins = strategy.spins }
            if deadline == nil, timeout != nil { deadline = MessageRing.deadline(after: timeout) }
            if spins > 0 {
                spins -= 1
                csm_cpu_relax()
                continue
            }
            // Full: sleep until the receiver frees space; after each quiet 100 ms, look at the receiver.
            if lookAtPeer { try checkReceiver() }
            guard let seen = try prepareToSleep(place) else { continue }
            let slept = MessageRing.sleep(on: ring.base + RingHeader.spaceSignal.offset, seen: seen, until: deadline)
            ring.senderWaiting.store(0, ordering: .relaxed)
            if slept == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "the ring was still full after \(timeout!)", region: ring.name)
            }
            lookAtPeer = slept == .sliceElapsed
        }
    }

    /// The bytes a message of `count` takes in the ring (its length word and padding to 8), once `count` is
    /// checked to fit.
    @inline(__always)
    func recordSize(_ count: Int) throws(SharedMemoryError) -> UInt64 {
        guard count >= 0, count <= maximumMessage else {
            throw SharedMemoryError(.invalidArgument, "a message of \(count) bytes does not fit this ring: at most \(maximumMessage) (half its capacity)", region: ring.name)
        }
        return UInt64(truncatingIfNeeded: align8(4 &+ count))
    }

    /// Where a record of `need` bytes goes next: the write position, the padding that skips the end of the data,
    /// the position after the record, and whether the receiver has freed that far.
    @inline(__always)
    func place(_ need: UInt64) throws(SharedMemoryError) -> (current: UInt64, pad: UInt64, end: UInt64, free: Bool) {
        let current = ring.position.pointee.head
        let offset = current & ring.mask
        let pad = offset &+ need > ring.capacity64 ? ring.capacity64 &- offset : 0  // offset below the capacity, need at most half
        let end = current &+ pad &+ need  // positions run free and wrap around at 2^64
        if end &- ring.position.pointee.tail > ring.capacity64 {
            ring.position.pointee.tail = ring.tail.load(ordering: .acquiring)
            try checkTail(current)
        }
        return (current, pad, end, end &- ring.position.pointee.tail <= ring.capacity64)
    }

    /// Writes a message of up to `count` bytes at a free `place` through `body`, publishes it, and wakes a
    /// waiting receiver.
    @inline(__always)
    func write(_ count: Int, at place: (current: UInt64, pad: UInt64, end: UInt64, free: Bool), _ body: (UnsafeMutableRawBufferPointer) -> Int) {
        let (current, pad) = (place.current, place.pad)
        // Offsets are masked below the capacity: the conversions and sums cannot overflow.
        if pad > 0 { ring.data.storeBytes(of: UInt32.max, toByteOffset: Int(truncatingIfNeeded: current & ring.mask), as: UInt32.self) }
        let start = Int(truncatingIfNeeded: (current &+ pad) & ring.mask)
        let written = body(UnsafeMutableRawBufferPointer(start: ring.data + (start &+ 4), count: count))
        // All the room, nearly always: then the record ends where it was reserved to.
        let length = written < count ? max(0, written) : count
        ring.data.storeBytes(of: UInt32(truncatingIfNeeded: length), toByteOffset: start, as: UInt32.self)
        ring.position.pointee.head = length == count ? place.end : current &+ pad &+ UInt64(truncatingIfNeeded: align8(4 &+ length))
        ring.head.store(ring.position.pointee.head, ordering: .releasing)
        wakeReceiver(always: false)
    }

    /// Before sleeping on a full ring: raises the flag that makes the receiver wake this side, and looks once
    /// more. The space signal's value to sleep on, or nil if the room came meanwhile. After the sleep, the caller
    /// lowers the flag (`senderWaiting`).
    func prepareToSleep(_ place: (current: UInt64, pad: UInt64, end: UInt64, free: Bool)) throws(SharedMemoryError) -> UInt32? {
        let seen = ring.spaceSignal.load(ordering: .acquiring)
        ring.senderWaiting.store(1, ordering: .sequentiallyConsistent)
        ring.position.pointee.tail = ring.tail.load(ordering: .sequentiallyConsistent)
        if place.end &- ring.position.pointee.tail > ring.capacity64 {
            do { try checkTail(place.current) } catch {
                ring.senderWaiting.store(0, ordering: .relaxed)
                throw error
            }
            return seen
        }
        ring.senderWaiting.store(0, ordering: .relaxed)
        return nil
    }

    /// After a quiet sleep slice: `peerDied` if the receiver's process is gone.
    func checkReceiver() throws(SharedMemoryError) {
        if !MessageRing.isAlive(.receiver, ring.base) {
            throw SharedMemoryError(.peerDied, "the receiving process died; nothing will drain the ring", region: ring.name)
        }
    }

    /// The read position is the receiver's word: one that is ahead of what was sent, or a ring behind, is not a
    /// SharedMemory receiver's (and would make the sender write over unread messages).
    func checkTail(_ head: UInt64) throws(SharedMemoryError) {
        let unread = head &- ring.position.pointee.tail
        guard unread <= ring.capacity64 else {
            throw SharedMemoryError(.foreign, "the ring is corrupt: its read position \(ring.position.pointee.tail) is not within a ring of the write position \(head); the receiver is not a SharedMemory ring receiver, or it wrote over the ring", region: ring.name)
        }
    }

    private func wakeReceiver(always: Bool) {
        Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
        if always || ring.receiverWaiting.load(ordering: .relaxed) != 0 { wakeReceiverNow() }
    }
}

/// The receiving side of a ``MessageRing``. It holds the region's mapping (``RegionMapping``), so the ring stays
/// mapped while it lives, whatever becomes of the region's handle.
public struct RingReceiver: ~Copyable {
    @usableFromInline let ring: RingView
    /// How this side waits for messages.
    public var strategy: WaitStrategy
    /// The event loop's descriptor, once asked for (``readinessDescriptor()``): while it exists, the flag that makes
    /// the sender wake this side stays up.
    var readiness: Readiness? = nil

    /// The largest message this ring carries.
    public var maximumMessage: Int { ring.maximumMessage }

    /// Attaches as the ring's only receiver; the ring must have been formatted. The region need not outlive the
    /// receiver.
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, strategy: WaitStrategy = .default) throws(SharedMemoryError) {
        ring = try RingView(region, at: offset, seat: .receiver)
        self.strategy = strategy
    }

    deinit {
        ring.drop()
    }

    /// Gives the receiver's seat back, so another process may attach as the receiver. Dropping the handle does
    /// not: the sender keeps counting this process as its receiver until it exits.
    public consuming func close() {
        MessageRing.leave(.receiver, ring.base)
    }

    /// Receives the next message as a copy; nil once the sender has finished and the ring is empty. Waits at
    /// most `timeout` (nil: as long as the sender lives).
    public func receive(timeout: Duration? = nil) throws(SharedMemoryError) -> [UInt8]? {
        try receiveUnsafe(timeout: timeout) { Array($0) }
    }

    /// Zero-copy: calls `body` with the next message in place, as a `RawSpan` that cannot leave `body`, then
    /// frees its space; nil once the sender has finished and the ring is empty.
    @inlinable
    public func receive<R>(timeout: Duration? = nil, _ body: (RawSpan) throws(SharedMemoryError) -> R) throws(SharedMemoryError) -> R? {
        try receiveUnsafe(timeout: timeout) { (message: UnsafeRawBufferPointer) throws(SharedMemoryError) -> R in
            try body(RawSpan(_unsafeBytes: message))
        }
    }

    /// Zero-copy for C interop: calls `body` with the next message in place through a pointer, then frees its
    /// space; nil once the sender has finished and the ring is empty. The pointer is valid only inside `body`: the
    /// compiler does not check that; ``receive(timeout:_:)`` is the safe way.
    @inlinable
    public func receiveUnsafe<R>(timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) throws(SharedMemoryError) -> R) throws(SharedMemoryError) -> R? {
        guard let message = try nextMessage(timeout: timeout, wait: true) else { return nil }
        defer { release(message) }
        return try body(message)
    }

    /// Receives the next message into the start of `buffer`, with no allocation, and returns its length; nil once
    /// the sender has finished and the ring is empty. A message longer than `buffer` is not taken: it stays first
    /// in the ring, and this throws ``SharedMemoryError/Code/invalidArgument`` saying its length (a buffer of
    /// ``maximumMessage`` bytes takes any message). Waits at most `timeout` (nil: as long as the sender lives).
    ///
    /// ```swift
    /// var storage = [UInt8](repeating: 0, count: receiver.maximumMessage)
    /// var span = storage.mutableSpan
    /// var bytes = span.mutableBytes
    /// while let count = try receiver.receive(into: &bytes) { parse(bytes.bytes.extracting(first: count)) }
    /// ```
    ///
    /// The corresponding C function is `smring_receive_copy` (`Interop/c/smring.h`).
    @inlinable
    public func receive(into buffer: inout MutableRawSpan, timeout: Duration? = nil) throws(SharedMemoryError) -> Int? {
        try buffer.withUnsafeMutableBytes { (target) throws(SharedMemoryError) -> Int? in
            try receiveUnsafe(into: target, timeout: timeout)
        }
    }

    /// ``receive(into:timeout:)`` into memory given by a pointer, for C interop: `buffer` must be writable for
    /// all its bytes while this runs; the compiler does not check that, and ``receive(into:timeout:)`` is the
    /// safe way.
    @inlinable
    public func receiveUnsafe(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(SharedMemoryError) -> Int? {
        guard let message = try nextMessage(timeout: timeout, wait: true) else { return nil }
        guard message.count <= buffer.count else { throw messageDoesNotFit(message.count, buffer.count) }
        if message.count > 0 { buffer.baseAddress.unsafelyUnwrapped.copyMemory(from: message.baseAddress.unsafelyUnwrapped, byteCount: message.count) }
        release(message)
        return message.count
    }

    @usableFromInline
    func messageDoesNotFit(_ length: Int, _ room: Int) -> SharedMemoryError {
        SharedMemoryError(.invalidArgument, "the next message has \(length) bytes and the buffer holds \(room); the message stays in the ring: receive it into a buffer of at least \(length) bytes (maximumMessage, \(ring.maximumMessage), takes any), or in place with receive { }", region: ring.name)
    }

    /// The next message if one is there now, else nil (also when the sender has finished).
    public func tryReceive() throws(SharedMemoryError) -> [UInt8]? {
        guard let message = try nextMessage(timeout: nil, wait: false) else { return nil }
        defer { release(message) }
        return Array(message)
    }

    /// Whether the sender has finished and every message has been read.
    public var isFinished: Bool {
        ring.finished.load(ordering: .acquiring) != 0 && ring.head.load(ordering: .acquiring) == ring.position.pointee.tail
    }

    /// Frees the space of the message `nextMessage` returned, and wakes a sender waiting for space.
    @inlinable
    func release(_ message: UnsafeRawBufferPointer) {
        ring.position.pointee.tail &+= UInt64(truncatingIfNeeded: align8(4 &+ message.count))
        ring.tail.store(ring.position.pointee.tail, ordering: .releasing)
        Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
        if ring.senderWaiting.load(ordering: .relaxed) != 0 { wakeSender() }
    }

    /// A sender sleeps on a full ring: signal the space freed.
    @usableFromInline
    func wakeSender() {
        ring.spaceSignal.wrappingIncrement(ordering: .releasing)
        Syscalls.futexWake(ring.base + RingHeader.spaceSignal.offset)
    }

    /// The next message in place, waiting for it as `strategy` says; nil once finished (or, without `wait`,
    /// when the ring is empty). Its space stays taken until ``release(_:)``.
    @inlinable
    func nextMessage(timeout: Duration?, wait: Bool) throws(SharedMemoryError) -> UnsafeRawBufferPointer? {
        if let message = ring.nextIfPlain() { return message }
        return try nextMessageSlowly(timeout: timeout, wait: wait)
    }

    /// ``nextMessage(timeout:wait:)`` when the quick look did not find a plain message: wrap markers, the end, a
    /// corrupt ring, and waiting.
    @usableFromInline
    func nextMessageSlowly(timeout: Duration?, wait: Bool) throws(SharedMemoryError) -> UnsafeRawBufferPointer? {
        var deadline: Int64? = nil  // set when this side first has to wait
        var spins = Int.min  // read from the strategy (a switch) once this side first has to wait
        var lookAtPeer = false
        while true {
            switch try poll() {
            case .message(let message): return message
            case .finished: return nil
            case .empty: break
            }
            guard wait else { return nil }
            if spins == .min { spins = strategy.spins }
            if deadline == nil, timeout != nil { deadline = MessageRing.deadline(after: timeout) }
            if spins > 0 {
                spins -= 1
                csm_cpu_relax()
                continue
            }
            // Empty: sleep until the sender publishes; after each quiet 100 ms, look at the sender.
            if lookAtPeer { try checkSender() }
            guard let seen = prepareToSleep() else { continue }
            let slept = MessageRing.sleep(on: ring.base + RingHeader.dataSignal.offset, seen: seen, until: deadline)
            lowerWaitingFlag()
            if slept == .deadlinePassed { throw SharedMemoryError(.timedOut, "no message came within \(timeout!)", region: ring.name) }
            lookAtPeer = slept == .sliceElapsed
        }
    }

    /// What a look at the ring found.
    @usableFromInline
    enum Poll {
        case message(UnsafeRawBufferPointer), finished, empty
    }

    /// Looks at the ring once, without waiting: the next message in place (its space taken until
    /// ``release(_:)``), the end of the stream, or nothing yet.
    @inline(__always) @usableFromInline
    func poll() throws(SharedMemoryError) -> Poll {
        while true {
            let current = ring.position.pointee.tail
            if ring.position.pointee.head == current { ring.position.pointee.head = ring.head.load(ordering: .acquiring) }
            if ring.position.pointee.head != current {
                // Everything read from the ring is the other process's word: check it before trusting it, so a
                // broken or hostile sender can never make this process read outside the ring.
                let published = ring.position.pointee.head &- current
                let offset = Int(truncatingIfNeeded: current & ring.mask)  // below the capacity
                let length = ring.data.load(fromByteOffset: offset, as: UInt32.self)
                if length == UInt32.max, published <= ring.capacity64 {  // wrap marker: the next message starts at 0
                    ring.position.pointee.tail = current &+ UInt64(ring.capacity &- offset)
                    continue
                }
                // A UInt32 length and an offset below the capacity: these sums cannot overflow an Int.
                guard published <= ring.capacity64, Int(length) <= ring.maximumMessage,
                      UInt64(truncatingIfNeeded: align8(4 &+ Int(length))) <= published, offset &+ 4 &+ Int(length) <= ring.capacity
                else {
                    throw SharedMemoryError(.foreign, "the ring is corrupt: a message of \(length) bytes at offset \(offset), with \(published) bytes published; the sender is not a SharedMemory ring sender, or it wrote over the ring", region: ring.name)
                }
                return .message(UnsafeRawBufferPointer(start: ring.data + offset + 4, count: Int(length)))
            }
            if ring.finished.load(ordering: .acquiring) != 0 {
                if ring.head.load(ordering: .acquiring) == current { return .finished }
                continue
            }
            return .empty
        }
    }

    /// Before sleeping on an empty ring: raises the flag that makes the sender wake this side, and looks once
    /// more. The data signal's value to sleep on, or nil if a message or the end came meanwhile. After the
    /// sleep, the caller lowers the flag (`receiverWaiting`).
    func prepareToSleep() -> UInt32? {
        let seen = ring.dataSignal.load(ordering: .acquiring)
        ring.receiverWaiting.store(1, ordering: .sequentiallyConsistent)
        if ring.head.load(ordering: .sequentiallyConsistent) == ring.position.pointee.tail, ring.finished.load(ordering: .acquiring) == 0 {
            return seen
        }
        lowerWaitingFlag()
        return nil
    }

    /// After a sleep: the sender need not wake this side any more, unless an event loop watches the ring.
    func lowerWaitingFlag() {
        if readiness == nil { ring.receiverWaiting.store(0, ordering: .relaxed) }
    }

    /// After a quiet sleep slice: `peerDied` if the sender's process is gone.
    func checkSender() throws(SharedMemoryError) {
        if !MessageRing.isAlive(.sender, ring.base) {
            throw SharedMemoryError(.peerDied, "the sending process died without finishing; every message it sent has been read", region: ring.name)
        }
    }
}
