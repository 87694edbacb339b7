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
    public var strategy: WaitStrategy {
        get { ring.local.pointee.strategy }
        set { ring.local.pointee.strategy = newValue }
    }

    /// The largest message this ring carries.
    public var maxMessage: Int { ring.maxMessage }
    @available(*, deprecated, renamed: "maxMessage")
    public var maximumMessage: Int { ring.maxMessage }

    /// Attaches as the ring's only sender, waiting up to `timeout` for the ring at `offset` to be formatted (by
    /// default not at all: a region with no ring there is `foreign`): no ring in time is
    /// ``SharedMemoryError/Code/timedOut``, something else there `foreign`, a
    /// live sender `busy`. The region need not outlive the sender, and one region can hold several rings (at
    /// different offsets).
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, strategy: WaitStrategy = .default, timeout: Duration = .zero) throws(SharedMemoryError) {
        ring = try RingView(region, at: offset, side: .sender, strategy: strategy, timeout: timeout)
        ring.finished.store(0, ordering: .releasing)
    }

    /// Finishes the stream and gives the sender's seat back, so another process may attach as the sender.
    public consuming func close() {
        finish()
        ring.side.seat(ring.base).release()
    }

    /// Tells the receiver that no more messages come: once it has read what is in the ring, `receive` returns nil.
    public func finish() {
        ring.finished.store(1, ordering: .releasing)
        wakeReceiverNow()
    }

    /// Sends a copy of `bytes`, waiting for room at most `timeout` (nil: as long as the receiver lives).
    @inlinable @inline(__always)
    public func send(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(SharedMemoryError) {
        if ring.writeIfRoom(bytes) {
            wakeReceiverIfWaiting()
            return
        }
        try sendSlowly(bytes, timeout: timeout)
    }

    /// After a message is published: a receiver that said it sleeps is woken (the fence orders the publication
    /// before the look at its flag, as its flag comes before its last look).
    @inlinable @inline(__always)
    func wakeReceiverIfWaiting() {
        Atomics.atomicMemoryFence(ordering: .sequentiallyConsistent)
        if ring.receiverWaiting.load(ordering: .relaxed) != 0 { wakeReceiverNow() }
    }

    /// ``send(_:timeout:)`` when the quick try found no room (or a message too large, or a corrupt ring: this
    /// says which).
    @usableFromInline
    func sendSlowly(_ bytes: UnsafeRawBufferPointer, timeout: Duration?) throws(SharedMemoryError) {
        write(try reserveWaiting(count: bytes.count, timeout: timeout), bytes)
    }

    /// Copies `bytes` into the record `slot` (reserved for `bytes.count`), publishes it and wakes a sleeping receiver.
    @inline(__always)
    func write(_ slot: (start: Int, end: UInt64), _ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { ring.bytes(of: slot, count: bytes.count).copyMemory(from: bytes) }
        ring.publish(slot, length: bytes.count, reserved: bytes.count)
        wakeReceiverIfWaiting()
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
        _ = try recordSize(bytes.count)
        guard let slot = try tryReserve(bytes.count) else { return false }
        write(slot, bytes)
        return true
    }

    /// Zero-copy: reserves room for up to `count` bytes in the ring, lets `body` write the message in place
    /// through an `OutputRawSpan` (which cannot leave `body`, nor write past the room), and publishes what it
    /// wrote as one message.
    @inlinable @inline(__always)
    public func send(count: Int, timeout: Duration? = nil, _ body: (inout OutputRawSpan) -> Void) throws(SharedMemoryError) {
        // The quick reservation is inlined into the caller; the slow one waits and reports. `body` is called in one
        // place, so the compiler can inline it too (and drop the span's checks it can prove).
        let slot = if let quick = ring.reserveIfRoom(count) { quick } else { try reserveWaiting(count: count, timeout: timeout) }
        let room = ring.bytes(of: slot, count: count)
        var output = OutputRawSpan(buffer: room, initializedCount: 0)
        body(&output)
        ring.publish(slot, length: output.finalize(for: room), reserved: count)
        wakeReceiverIfWaiting()
    }

    /// Zero-copy for C interop: reserves exactly `count` bytes in the ring, lets `body` fill them in place through
    /// a pointer, and publishes them as one message. The pointer is valid only inside `body`: the compiler does
    /// not check that; ``send(count:timeout:_:)`` is the safe way.
    @inlinable @inline(__always)
    public func sendUnsafe(count: Int, timeout: Duration? = nil, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws(SharedMemoryError) {
        let slot = if let quick = ring.reserveIfRoom(count) { quick } else { try reserveWaiting(count: count, timeout: timeout) }
        body(ring.bytes(of: slot, count: count))
        ring.publish(slot, length: count, reserved: count)
        wakeReceiverIfWaiting()
    }

    /// Reserves room for a message of `count` bytes when the quick reservation declined: says why (a message too
    /// large, a corrupt ring), or waits for the room (a full ring) at most `timeout`. The record stays this side's
    /// until it publishes it.
    @usableFromInline
    func reserveWaiting(count: Int, timeout: Duration?) throws(SharedMemoryError) -> (start: Int, end: UInt64) {
        let need = try recordSize(count)
        var waiting = Wait(strategy, timeout: timeout)
        while true {
            if let slot = try tryReserve(count) { return slot }
            if waiting.spin() { continue }
            // Full: sleep until the receiver frees space; after each quiet slice, look at the receiver.
            if waiting.lookAtPeer { try checkReceiver() }
            let slept = try waiting.sleep(on: ring.base + RingHeader.spaceSignal.offset, raise: { () throws(SharedMemoryError) in try prepareToSleep(need) }, lower: { lowerWaitingFlag() })
            if slept == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "the ring was still full after \(timeout!)", region: ring.name)
            }
        }
    }

    /// One try of the slow paths (blocking and async), for a `count` already checked to fit: the record for it if
    /// there is room now, nil if the ring is full, `foreign` if the receiver's read position does not add up (why
    /// the quick reservation also declines).
    @inline(__always)
    func tryReserve(_ count: Int) throws(SharedMemoryError) -> (start: Int, end: UInt64)? {
        if let slot = ring.reserveIfRoom(count) { return slot }
        try checkTail(ring.local.pointee.head, ring.tail.load(ordering: .acquiring))
        return nil
    }

    /// The bytes a message of `count` takes in the ring (its length word and padding to 8), once `count` is
    /// checked to fit.
    @inline(__always)
    func recordSize(_ count: Int) throws(SharedMemoryError) -> UInt64 {
        guard count >= 0, count <= maxMessage else {
            throw SharedMemoryError(.invalidArgument, "a message of \(count) bytes does not fit this ring: at most \(maxMessage) (half its capacity)", region: ring.name)
        }
        return UInt64(truncatingIfNeeded: align8(4 &+ count))
    }

    /// Before sleeping on a full ring: raises the flag that makes the receiver wake this side, and looks once
    /// more whether a record of `need` bytes fits now (with the padding that skips the end of the data). The space
    /// signal's value to sleep on, or nil if the room came meanwhile. After the sleep, the caller lowers the flag
    /// (`senderWaiting`).
    func prepareToSleep(_ need: UInt64) throws(SharedMemoryError) -> UInt32? {
        let seen = ring.spaceSignal.load(ordering: .acquiring)
        ring.senderWaiting.store(1, ordering: .sequentiallyConsistent)
        ring.local.pointee.tail = ring.tail.load(ordering: .sequentiallyConsistent)
        let current = ring.local.pointee.head
        let offset = current & ring.mask
        let end = current &+ (offset &+ need > ring.capacity64 ? ring.capacity64 &- offset : 0) &+ need
        if end &- ring.local.pointee.tail > ring.capacity64 {
            do { try checkTail(current) } catch {
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
    func checkTail(_ head: UInt64, _ tail: UInt64? = nil) throws(SharedMemoryError) {
        let read = tail ?? ring.local.pointee.tail
        guard head &- read <= ring.capacity64 else {
            throw SharedMemoryError(.foreign, "the ring is corrupt: its read position \(read) is not within a ring of the write position \(head); the receiver is not a SharedMemory ring receiver, or it wrote over the ring", region: ring.name)
        }
    }
}
