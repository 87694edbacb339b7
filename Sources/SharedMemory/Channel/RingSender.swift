import Atomics
import CSharedMemory
import Glibc

/// The sending side of a ``MessageRing``. It holds the region's mapping (``RegionMapping``), so the ring stays
/// mapped while it lives, whatever becomes of the region's handle. Only ``finish()`` (or
/// ``close()``) tells the receiver that no more messages will come, or this process's death (`peerDied`): a
/// handle that goes away without them ends nothing, since a handle's lifetime is no protocol event (the
/// optimiser may end it after its last use). It vacates the sender's seat: another process may attach as the sender
/// and go on with the stream, and until one does, the receiver still hears of this process's death.
public struct RingSender: ~Copyable {
    @usableFromInline let ring: RingView
    /// How this side waits for space.
    public var strategy: WaitStrategy

    /// The largest message this ring carries.
    public var maximumMessage: Int { ring.maximumMessage }

    /// Attaches as the ring's only sender; the ring must have been formatted. The region need not outlive the
    /// sender, and one region can hold several rings (at different offsets).
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, strategy: WaitStrategy = .default) throws(SharedMemoryError) {
        ring = try RingView(region, at: offset, side: .sender)
        self.strategy = strategy
        ring.finished.store(0, ordering: .releasing)
    }

    deinit {
        ring.drop()
    }

    /// Finishes the stream and gives the sender's seat back, so another process may attach as the sender.
    public consuming func close() {
        finish()
        ring.side.seat(ring.base).release()
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
        var waiting = Wait(strategy, timeout: timeout)
        while true {
            let place = try place(need)
            if place.free {
                write(count, at: place, body)
                return true
            }
            guard wait else { return false }
            if waiting.spin() { continue }
            // Full: sleep until the receiver frees space; after each quiet slice, look at the receiver.
            if waiting.lookAtPeer { try checkReceiver() }
            let slept = try waiting.sleep(on: ring.base + RingHeader.spaceSignal.offset, raise: { () throws(SharedMemoryError) in try prepareToSleep(place) }, lower: { lowerWaitingFlag() })
            if slept == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "the ring was still full after \(timeout!)", region: ring.name)
            }
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

    /// After a sleep: the receiver need not wake this side any more.
    func lowerWaitingFlag() {
        ring.senderWaiting.store(0, ordering: .relaxed)
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
