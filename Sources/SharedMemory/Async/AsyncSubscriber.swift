import Atomics

extension Subscriber {
    /// Waits for the next sample, suspending the task (not blocking a thread) while the queue is empty, and calls
    /// `body` with its bytes in place, as a `RawSpan` that cannot leave `body` (which is synchronous: the sample is
    /// released when it returns). The asynchronous twin of ``receive(timeout:_:)``: `nil` once the publisher has
    /// finished and every sample was read, ``SharedMemoryError/Code/peerDied`` if it died,
    /// ``SharedMemoryError/Code/timedOut`` after `timeout`; cancelling the task ends the wait with
    /// `CancellationError` (a sample already queued is still received).
    public func receiveAsync<R>(
        timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation, _ body: (RawSpan, SampleInfo) throws -> R
    ) async throws -> R? {
        guard let (c, length, sequence) = try await takeAsync(timeout: timeout) else { return nil }
        defer { release(c) }
        let payload = UnsafeRawBufferPointer(start: service.base + service.chunk(c) + Chunk.payload.offset, count: length)
        return try body(RawSpan(_unsafeBytes: payload), SampleInfo(sequence: sequence))
    }

    /// Every sample as a copy, as an `AsyncSequence` that ends when the publisher finishes and throws
    /// ``SharedMemoryError/Code/peerDied`` if it dies. It takes the subscriber over (and with it its slot, until the
    /// sequence goes away):
    ///
    /// ```swift
    /// for try await sample in subscriber.samples {
    ///     print(sample.info.sequence, sample.bytes.count)
    /// }
    /// ```
    ///
    /// Take it from a subscriber with a name, as above: on a temporary (`try Subscriber(region).samples`) Swift 6.3
    /// stops with "copy of noncopyable typed value. This is a compiler bug".
    public var samples: SubscriberSamples {
        consuming get { SubscriberSamples(self) }
    }
}

/// A copy of one sample, as ``Subscriber/samples`` delivers it.
public struct ReceivedSample: Sendable, Hashable {
    /// The sample's bytes.
    public var bytes: [UInt8]
    /// Its sequence number.
    public var info: SampleInfo
}

/// A subscriber's samples as an `AsyncSequence` (``Subscriber/samples``): each element a copy of one sample; the
/// sequence ends when the publisher finishes, and throws ``SharedMemoryError/Code/peerDied`` if it dies. It holds the
/// subscriber; only one iteration may wait at a time (a second gets ``SharedMemoryError/Code/busy``).
public struct SubscriberSamples: AsyncSequence, Sendable {
    public typealias Element = ReceivedSample

    final class Box: @unchecked Sendable {
        var subscriber: Subscriber
        let iterating = ManagedAtomic<Bool>(false)
        init(_ subscriber: consuming Subscriber) { self.subscriber = subscriber }
    }

    let box: Box

    init(_ subscriber: consuming Subscriber) { box = Box(subscriber) }

    public func makeAsyncIterator() -> Iterator { Iterator(box: box) }

    public struct Iterator: AsyncIteratorProtocol {
        let box: Box
        var finished = false

        public mutating func next() async throws -> ReceivedSample? {
            try await next(isolation: nil)
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> ReceivedSample? {
            guard !finished else { return nil }
            guard box.iterating.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
                throw SharedMemoryError(.busy, "another task is already waiting on this subscriber's samples", region: box.subscriber.service.name)
            }
            defer { box.iterating.store(false, ordering: .releasing) }
            let sample = try await box.subscriber.receiveAsync { bytes, info in
                ReceivedSample(bytes: bytes.withUnsafeBytes { [UInt8]($0) }, info: info)
            }
            if sample == nil { finished = true }
            return sample
        }
    }
}
