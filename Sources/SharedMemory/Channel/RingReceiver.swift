import Atomics
import CSharedMemory
import Glibc

/// The receiving side of a ``MessageRing``. It holds the region's mapping (``RegionMapping``), so the ring stays
/// mapped while it lives, whatever becomes of the region's handle, and the receiver's seat (see ``close()``).
public struct RingReceiver: ~Copyable {
    @usableFromInline let ring: RingView
    /// How this side waits for messages.
    public var strategy: WaitStrategy {
        get { ring.local.pointee.strategy }
        set { ring.local.pointee.strategy = newValue }
    }
    /// The event loop's descriptor, once asked for (``readinessDescriptor()``): while it exists, the flag that makes
    /// the sender wake this side stays up.
    var readiness: Readiness? {
        get { ring.local.pointee.readiness }
        nonmutating set { ring.local.pointee.readiness = newValue }
    }

    /// The largest message this ring carries.
    public var maxMessage: Int { ring.maxMessage }
    @available(*, deprecated, renamed: "maxMessage")
    public var maximumMessage: Int { ring.maxMessage }

    /// Attaches as the ring's only receiver, waiting up to `timeout` for the ring at `offset` to be formatted (by
    /// default not at all: a region with no ring there is `foreign`): no ring in time is
    /// ``SharedMemoryError/Code/timedOut``, something else there `foreign`, a
    /// live receiver `busy`. The region need not outlive the receiver.
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, strategy: WaitStrategy = .default, timeout: Duration = .zero) throws(SharedMemoryError) {
        ring = try RingView(region, at: offset, side: .receiver, strategy: strategy, timeout: timeout)
    }

    /// Gives the receiver's seat back, so another process may attach as the receiver. The sender is not told (an
    /// empty seat is a receiver still to come): what it sends waits in the ring for the next receiver. A handle
    /// that goes away without `close()` vacates its seat instead: another process may take it, and until then the
    /// sender still hears of this process's death.
    public consuming func close() {
        ring.side.seat(ring.base).release()
    }

    /// Receives the next message as a copy; nil once the sender has finished and the ring is empty. Waits at
    /// most `timeout` (nil: as long as the sender lives).
    ///
    /// Each message is an array of its own, allocated and later freed: a 64-byte send and `receive()` take 487
    /// instructions (`Benchmarks/Instructions/run.sh`, `ring-array`), against 101 with the message read in place
    /// (``receive(timeout:_:)``) and 128 copied into a buffer of the caller's (``receive(into:timeout:)``). Choose
    /// it where the message must outlive the call.
    @inlinable
    public func receive(timeout: Duration? = nil) throws(SharedMemoryError) -> [UInt8]? {
        guard let message = try nextMessage(timeout: timeout, wait: true) else { return nil }
        let copy = [UInt8](message.bytes)
        release(message)
        return copy
    }

    /// Zero-copy: calls `body` with the next message in place, as a `RawSpan` that cannot leave `body`, then
    /// frees its space; nil once the sender has finished and the ring is empty.
    @inlinable @inline(__always)
    public func receive<R>(timeout: Duration? = nil, _ body: (RawSpan) throws(SharedMemoryError) -> R) throws(SharedMemoryError) -> R? {
        guard let message = try nextMessage(timeout: timeout, wait: true) else { return nil }
        defer { release(message) }
        return try body(RawSpan(_unsafeStart: message.start, byteCount: message.count))
    }

    /// Zero-copy for C interop: calls `body` with the next message in place through a pointer, then frees its
    /// space; nil once the sender has finished and the ring is empty. The pointer is valid only inside `body`: the
    /// compiler does not check that; ``receive(timeout:_:)`` is the safe way.
    @inlinable @inline(__always)
    public func receiveUnsafe<R>(timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) throws(SharedMemoryError) -> R) throws(SharedMemoryError) -> R? {
        guard let message = try nextMessage(timeout: timeout, wait: true) else { return nil }
        defer { release(message) }
        return try body(message.bytes)
    }

    /// Receives the next message into the start of `buffer`, with no allocation, and returns its length; nil once
    /// the sender has finished and the ring is empty. A message longer than `buffer` is not taken: it stays first
    /// in the ring, and this throws ``SharedMemoryError/Code/invalidArgument`` saying its length (a buffer of
    /// ``maxMessage`` bytes takes any message). Waits at most `timeout` (nil: as long as the sender lives).
    ///
    /// ```swift
    /// var storage = [UInt8](repeating: 0, count: receiver.maxMessage)
    /// var span = storage.mutableSpan
    /// var bytes = span.mutableBytes
    /// while let count = try receiver.receive(into: &bytes) { parse(bytes.bytes.extracting(first: count)) }
    /// ```
    ///
    /// The corresponding C function is `smring_receive_copy` (`Interop/c/smring.h`).
    @inlinable @inline(__always)
    public func receive(into buffer: inout MutableRawSpan, timeout: Duration? = nil) throws(SharedMemoryError) -> Int? {
        try buffer.withUnsafeMutableBytes { (target) throws(SharedMemoryError) -> Int? in
            try receiveUnsafe(into: target, timeout: timeout)
        }
    }

    /// ``receive(into:timeout:)`` into memory given by a pointer, for C interop: `buffer` must be writable for
    /// all its bytes while this runs; the compiler does not check that, and ``receive(into:timeout:)`` is the
    /// safe way.
    @inlinable @inline(__always)
    public func receiveUnsafe(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil) throws(SharedMemoryError) -> Int? {
        guard let message = try nextMessage(timeout: timeout, wait: true) else { return nil }
        guard message.count <= buffer.count else { throw messageDoesNotFit(message.count, buffer.count) }
        if message.count > 0 { buffer.baseAddress.unsafelyUnwrapped.copyMemory(from: message.start, byteCount: message.count) }
        release(message)
        return message.count
    }

    @usableFromInline
    func messageDoesNotFit(_ length: Int, _ room: Int) -> SharedMemoryError {
        SharedMemoryError(.invalidArgument, "the next message has \(length) bytes and the buffer holds \(room); the message stays in the ring: receive it into a buffer of at least \(length) bytes (maxMessage, \(ring.maxMessage), takes any), or in place with receive { }", region: ring.name)
    }

    /// The next message if one is there now, else nil (also when the sender has finished).
    public func tryReceive() throws(SharedMemoryError) -> [UInt8]? {
        guard let message = try nextMessage(timeout: nil, wait: false) else { return nil }
        defer { release(message) }
        return Array(message.bytes)
    }

    /// Whether the sender has finished and every message has been read.
    public var isFinished: Bool {
        ring.finished.load(ordering: .acquiring) != 0 && ring.head.load(ordering: .acquiring) == ring.local.pointee.tail
    }

    /// Frees the space of the message `nextMessage` returned, and wakes a sender waiting for space.
    @inlinable @inline(__always)
    func release(_ message: RingMessage) {
        // A load and a store, not `&+=`: a compound assignment through the noncopyable side is a Swift "modify"
        // access, which ThreadSanitizer recorded at the shared mapping's address, so two receivers of one mapping
        // releasing at once on two threads were reported as a race (CI, AsyncTests.manyWaiters; 2 runs in 3).
        let local = ring.local
        let tail = local.pointee.tail &+ UInt64(truncatingIfNeeded: align8(4 &+ message.count))
        local.pointee.tail = tail
        ring.tail.store(tail, ordering: .releasing)
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
    @inlinable @inline(__always)
    func nextMessage(timeout: Duration?, wait: Bool) throws(SharedMemoryError) -> RingMessage? {
        if let message = ring.nextIfPlain() { return message }
        return try nextMessageSlowly(timeout: timeout, wait: wait)
    }

    /// ``nextMessage(timeout:wait:)`` when the quick look did not find a plain message: wrap markers, the end, a
    /// corrupt ring, and waiting.
    @usableFromInline
    func nextMessageSlowly(timeout: Duration?, wait: Bool) throws(SharedMemoryError) -> RingMessage? {
        var waiting = Wait(strategy, timeout: timeout)
        while true {
            switch try poll() {
            case .message(let message): return message
            case .finished: return nil
            case .empty: break
            }
            guard wait else { return nil }
            if waiting.spin() { continue }
            // Empty: sleep until the sender publishes; after each quiet slice, look at the sender.
            if waiting.lookAtPeer { try checkSender() }
            let slept = try waiting.sleep(on: ring.base + RingHeader.dataSignal.offset, raise: { () throws(SharedMemoryError) in prepareToSleep() }, lower: { lowerWaitingFlag() })
            if slept == .deadlinePassed { throw SharedMemoryError(.timedOut, "no message came within \(timeout!)", region: ring.name) }
        }
    }

    /// What a look at the ring found.
    @usableFromInline
    enum Poll {
        case message(RingMessage), finished, empty
    }

    /// Looks at the ring once, without waiting: the next message in place (its space taken until
    /// ``release(_:)``), the end of the stream, or nothing yet.
    @inline(__always) @usableFromInline
    func poll() throws(SharedMemoryError) -> Poll {
        while true {
            let current = ring.local.pointee.tail
            if ring.local.pointee.head == current { ring.local.pointee.head = ring.head.load(ordering: .acquiring) }
            if ring.local.pointee.head != current {
                // Everything read from the ring is the other process's word: check it before trusting it, so a
                // broken or hostile sender can never make this process read outside the ring.
                let published = ring.local.pointee.head &- current
                let offset = Int(truncatingIfNeeded: current & ring.mask)  // below the capacity
                let length = ring.data.load(fromByteOffset: offset, as: UInt32.self)
                if length == UInt32.max, published <= ring.capacity64 {  // wrap marker: the next message starts at 0
                    ring.local.pointee.tail = current &+ UInt64(ring.capacity &- offset)
                    continue
                }
                // A UInt32 length and an offset below the capacity: these sums cannot overflow an Int.
                guard published <= ring.capacity64, Int(length) <= ring.maxMessage,
                      UInt64(truncatingIfNeeded: align8(4 &+ Int(length))) <= published, offset &+ 4 &+ Int(length) <= ring.capacity
                else {
                    throw SharedMemoryError(.foreign, "the ring is corrupt: a message of \(length) bytes at offset \(offset), with \(published) bytes published; the sender is not a SharedMemory ring sender, or it wrote over the ring", region: ring.name)
                }
                return .message(RingMessage(start: ring.data + offset + 4, count: Int(length)))
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
        if ring.head.load(ordering: .sequentiallyConsistent) == ring.local.pointee.tail, ring.finished.load(ordering: .acquiring) == 0 {
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
