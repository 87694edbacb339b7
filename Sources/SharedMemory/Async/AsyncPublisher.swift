extension Publisher {
    /// Publishes as ``publish(count:_:)`` does (`body` writes the sample in place, synchronously), but where the
    /// publish would wait for room in a ``Subscriber/Overflow/blockPublisher`` subscriber's full queue, it suspends
    /// the task instead of blocking its thread, at most ``blockTimeout``. Returns the sample's sequence number; a
    /// subscriber still full after ``blockTimeout`` misses the sample (counted in its ``Subscriber/lost``) and this
    /// throws ``SharedMemoryError/Code/timedOut`` naming it, after every other subscriber got it. Cancelling the task
    /// ends the waits the same way, and this throws `CancellationError`. (Taking the service's lock, which other
    /// parties hold only for a few instructions, still blocks.)
    ///
    /// ```swift
    /// var publisher = try Publisher(region)
    /// try await publisher.publishAsync(count: 5) { for byte in "hello".utf8 { $0.append(byte) } }
    /// ```
    @discardableResult
    public func publishAsync(
        count: Int, isolation: isolated (any Actor)? = #isolation, _ body: (inout OutputRawSpan) -> Void
    ) async throws -> UInt64 {
        let (c, length) = try loanAndFill(count: count, body)
        return try await deliverAsync(c, length: length)
    }
}
