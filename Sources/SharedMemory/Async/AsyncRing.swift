import Atomics
import CSharedMemory

extension WaitStrategy {
    /// The most an asynchronous wait spins before it suspends the task: a spin holds a thread of the cooperative
    /// pool, so ``spin`` counts as this much there.
    static let asyncSpinLimit = 2000

    var asyncSpins: Int { min(spins, Self.asyncSpinLimit) }
}

extension RingReceiver {
    /// Receives the next message as a copy, suspending the task (not blocking a thread) while the ring is empty;
    /// nil once the sender has finished and the ring is empty. The asynchronous twin of
    /// ``receive(timeout:)``: the same timeout (``SharedMemoryError/Code/timedOut``) and
    /// ``SharedMemoryError/Code/peerDied``; cancelling the task ends the wait with `CancellationError` (a message
    /// already there is still received) and leaves the ring as it was.
    ///
    /// It spins first as ``strategy`` says (at most 2000 times: a spin holds a thread of the pool), then waits in
    /// the process's waiter thread (`futex_waitv`).
    public func receiveAsync(timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation) async throws -> [UInt8]? {
        guard let message = try await nextMessageAsync(timeout: timeout) else { return nil }
        defer { release(message) }
        return [UInt8](message.bytes)
    }

    /// Zero-copy from async code: waits as ``receiveAsync(timeout:isolation:)`` does, then calls `body` with the
    /// message in place, as a `RawSpan` that cannot leave `body` (which is synchronous: the message's space is
    /// freed when it returns); nil once the sender has finished and the ring is empty.
    public func receiveAsync<R>(
        timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation, _ body: (RawSpan) throws -> R
    ) async throws -> R? {
        guard let message = try await nextMessageAsync(timeout: timeout) else { return nil }
        defer { release(message) }
        return try body(RawSpan(_unsafeStart: message.start, byteCount: message.count))
    }

    /// Every message as a copy, as an `AsyncSequence` that ends when the sender finishes and throws
    /// ``SharedMemoryError/Code/peerDied`` if it dies. It takes the receiver over (the sequence holds it, and
    /// with it the receiver's seat, until the sequence goes away):
    ///
    /// ```swift
    /// for try await message in receiver.messages {
    ///     handle(message)
    /// }
    /// ```
    ///
    /// Take it from a receiver with a name, as above: on a temporary (`try RingReceiver(region).messages`) Swift
    /// 6.3 stops with "copy of noncopyable typed value. This is a compiler bug".
    public var messages: RingMessages {
        consuming get { RingMessages(self) }
    }

    /// The next message in place, suspending the task while the ring is empty; nil once finished.
    func nextMessageAsync(timeout: Duration?, isolation: isolated (any Actor)? = #isolation) async throws -> RingMessage? {
        var waiting = Wait(strategy, timeout: timeout, async: true)
        while true {
            switch try poll() {
            case .message(let message): return message
            case .finished: return nil
            case .empty: break
            }
            if waiting.spin() { continue }
            if waiting.lookAtPeer { try checkSender() }
            let slept = try await waiting.sleepAsync(on: ring.base + RingHeader.dataSignal.offset, raise: { () throws(SharedMemoryError) in prepareToSleep() }, lower: { lowerWaitingFlag() })
            if slept == .deadlinePassed { throw SharedMemoryError(.timedOut, "no message came within \(timeout!)", region: ring.name) }
        }
    }
}

extension RingSender {
    /// Sends a copy of `bytes`, suspending the task (not blocking a thread) while the ring is full, at most
    /// `timeout` (nil: as long as the receiver lives). The asynchronous twin of ``send(_:timeout:)-([UInt8],_)``;
    /// cancelling the task ends the wait with `CancellationError`, and nothing is sent.
    public func sendAsync(_ bytes: [UInt8], timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation) async throws {
        let slot = try await reserveAsync(count: bytes.count, timeout: timeout)
        bytes.withUnsafeBytes { write(slot, $0) }
    }

    /// Zero-copy from async code: waits for room for up to `count` bytes as ``sendAsync(_:timeout:isolation:)``
    /// does, then lets `body` write the message in place through an `OutputRawSpan` and publishes what it wrote.
    public func sendAsync(
        count: Int, timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation, _ body: (inout OutputRawSpan) -> Void
    ) async throws {
        let slot = try await reserveAsync(count: count, timeout: timeout)
        let room = ring.bytes(of: slot, count: count)
        var output = OutputRawSpan(buffer: room, initializedCount: 0)
        body(&output)
        ring.publish(slot, length: output.finalize(for: room), reserved: count)
        wakeReceiverIfWaiting()
    }

    /// ``reserveWaiting(count:timeout:)`` suspending the task (not blocking a thread) while the ring is full.
    private func reserveAsync(
        count: Int, timeout: Duration?, isolation: isolated (any Actor)? = #isolation
    ) async throws -> (start: Int, end: UInt64) {
        let need = try recordSize(count)
        var waiting = Wait(strategy, timeout: timeout, async: true)
        while true {
            if let slot = try tryReserve(count) { return slot }
            if waiting.spin() { continue }
            if waiting.lookAtPeer { try checkReceiver() }
            let slept = try await waiting.sleepAsync(on: ring.base + RingHeader.spaceSignal.offset, raise: { () throws(SharedMemoryError) in try prepareToSleep(need) }, lower: { lowerWaitingFlag() })
            if slept == .deadlinePassed { throw SharedMemoryError(.timedOut, "the ring was still full after \(timeout!)", region: ring.name) }
        }
    }
}

/// A ring receiver's messages as an `AsyncSequence` (``RingReceiver/messages``): each element is a copy of one
/// message; the sequence ends when the sender finishes, and throws ``SharedMemoryError/Code/peerDied`` if it dies.
/// It holds the receiver. A ring has one receiver, so only one iteration may wait at a time: a second iterator
/// that calls `next()` while another waits gets ``SharedMemoryError/Code/busy``.
public struct RingMessages: AsyncSequence, Sendable {
    public typealias Element = [UInt8]

    final class Box: @unchecked Sendable {
        let receiver: RingReceiver
        let iterating = ManagedAtomic<Bool>(false)
        init(_ receiver: consuming RingReceiver) { self.receiver = receiver }
    }

    let box: Box

    init(_ receiver: consuming RingReceiver) { box = Box(receiver) }

    public func makeAsyncIterator() -> Iterator { Iterator(box: box) }

    public struct Iterator: AsyncIteratorProtocol {
        let box: Box
        var finished = false

        public mutating func next() async throws -> [UInt8]? {
            try await next(isolation: nil)
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> [UInt8]? {
            guard !finished else { return nil }
            guard box.iterating.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
                throw SharedMemoryError(.busy, "another task is already waiting on this ring's messages; a ring has one receiver", region: box.receiver.ring.name)
            }
            defer { box.iterating.store(false, ordering: .releasing) }
            let message = try await box.receiver.receiveAsync()
            if message == nil { finished = true }
            return message
        }
    }
}
