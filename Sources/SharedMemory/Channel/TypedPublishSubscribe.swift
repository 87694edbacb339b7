import Glibc

// Typed publish/subscribe, as iceoryx2's `publish_subscribe::<T>()`: a service whose samples are the values of one
// `BitwiseCopyable` type, recorded in its header (Docs/WireFormat.md, "Service header": hash, size, alignment and
// the name's first 40 bytes) and checked on attach. A thin layer over `Publisher` and `Subscriber`: the same chunks,
// queues, seats and waits, and no instruction more for the same payload. Bytes stay the general form: a byte
// subscriber (or a C or Python one) reads a typed service's samples as their bytes.

extension PublishSubscribe {
    /// Bytes a service of `Sample` values takes (``size(maxPayload:subscribers:queueDepth:history:)`` with the
    /// sample's size as the payload).
    public static func size<Sample: BitwiseCopyable>(of sampleType: Sample.Type, subscribers: Int, queueDepth: Int, history: Int = 0) -> Int {
        size(maxPayload: MemoryLayout<Sample>.size, subscribers: subscribers, queueDepth: queueDepth, history: history)
    }

    /// Makes a new service at `offset` whose samples are `Sample` values, as
    /// ``format(_:at:maxPayload:subscribers:queueDepth:history:)`` does, with the type's identity in its header:
    /// ``TypedPublisher`` and ``TypedSubscriber`` of another type are then ``SharedMemoryError/Code/typeMismatch``.
    /// A type of 0 bytes, or aligned to more than 64, is `invalidArgument`.
    public static func format<Sample: BitwiseCopyable>(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, sampleType: Sample.Type, subscribers: Int,
        queueDepth: Int, history: Int = 0
    ) throws(SharedMemoryError) {
        try checkSampleType(Sample.self, region.name)
        try format(region, at: offset, maxPayload: MemoryLayout<Sample>.size, subscribers: subscribers, queueDepth: queueDepth,
                   history: history, sampleType: TypeIdentity.of(Sample.self))
    }

    /// `invalidArgument` for a type a service cannot carry: no bytes, or an alignment past a chunk's (64).
    static func checkSampleType<Sample: BitwiseCopyable>(_: Sample.Type, _ name: RegionName?) throws(SharedMemoryError) {
        guard MemoryLayout<Sample>.size > 0 else {
            throw SharedMemoryError(.invalidArgument, "a sample type of 0 bytes carries nothing (\(Sample.self)); a ProcessEvent signals without data", region: name)
        }
        guard MemoryLayout<Sample>.alignment <= 64 else {
            throw SharedMemoryError(.invalidArgument, "\(Sample.self) is aligned to \(MemoryLayout<Sample>.alignment) bytes; a sample's place is aligned to 64", region: name)
        }
    }

    /// The sample type the header at `base` records: nil for a service of bytes.
    static func sampleType(at base: UnsafeRawPointer) -> (hash: UInt64, size: Int, alignment: Int, name: String)? {
        let hash = ServiceHeader.sampleType.load(base, UInt64.self)
        guard hash != 0 else { return nil }
        let stored = UnsafeRawBufferPointer(start: base + ServiceHeader.sampleTypeName.offset, count: 40)
        let name = String(decoding: stored.prefix { $0 != 0 }, as: UTF8.self)
        return (hash, Int(ServiceHeader.sampleSize.load(base, UInt32.self)), Int(ServiceHeader.sampleAlignment.load(base, UInt32.self)), name)
    }

    /// Waits up to `timeout` for the service at `offset`, then `typeMismatch` unless it carries `Sample` values.
    @usableFromInline
    static func expectSampleType<Sample: BitwiseCopyable>(
        _: Sample.Type, _ region: borrowing some SharedRegion & ~Copyable, at offset: Int, timeout: Duration
    ) throws(SharedMemoryError) {
        let service = try ServiceView(region, at: offset, timeout: timeout)
        try expectSampleType(TypeIdentity.of(Sample.self), at: service.base, region: service.name)
        // A header whose type fields and largest payload disagree would have a publish make a value in a chunk
        // too small for it: a peer's words, checked.
        guard service.layout.maxPayload == MemoryLayout<Sample>.size else {
            throw SharedMemoryError(.foreign, "the service's header says its samples are \(Sample.self) values of \(MemoryLayout<Sample>.size) bytes, and its largest payload \(service.layout.maxPayload)", region: service.name)
        }
    }

    /// `typeMismatch`, naming both types, unless the service at `base` carries `wanted` values.
    static func expectSampleType(_ wanted: TypeIdentity, at base: UnsafeRawPointer, region: RegionName) throws(SharedMemoryError) {
        let found = sampleType(at: base)
        if let found, found.hash == wanted.hash, found.size == wanted.size, found.alignment == wanted.alignment { return }
        let what = found.map { "\($0.name) (size \($0.size), alignment \($0.alignment))" } ?? "bytes (it was formatted with no sample type)"
        throw SharedMemoryError(.typeMismatch, "the service carries samples of \(what), not \(wanted.nameText) (size \(wanted.size), alignment \(wanted.alignment))", region: region)
    }
}

/// The publisher of a typed service (``PublishSubscribe/format(_:at:sampleType:subscribers:queueDepth:history:)``):
/// a ``Publisher`` whose samples are `Sample` values. It holds the publisher's seat and gives it back as a
/// `Publisher` does; ``finish()`` ends the stream.
///
/// ```swift
/// struct Quote: BitwiseCopyable { var bid: Double; var ask: Double; var time: UInt64 }
/// var publisher = try TypedPublisher<Quote>.create(RegionName("posix:/quotes"), subscribers: 8)
/// try publisher.publish(Quote(bid: 1.0841, ask: 1.0843, time: 1))
/// ```
public struct TypedPublisher<Sample: BitwiseCopyable>: ~Copyable {
    @usableFromInline let publisher: Publisher

    /// Takes the publisher's seat of the typed service at `offset`, as ``Publisher/init(_:at:timeout:blockTimeout:)``
    /// does; a service of another type (or of bytes) is ``SharedMemoryError/Code/typeMismatch`` naming both.
    @inlinable
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration = .zero, blockTimeout: Duration = .seconds(1)) throws(SharedMemoryError) {
        try PublishSubscribe.expectSampleType(Sample.self, region, at: offset, timeout: timeout)
        publisher = try Publisher(region, at: offset, blockTimeout: blockTimeout)
    }

    /// Subscribers connected now.
    public var subscriberCount: Int { publisher.subscriberCount }
    /// The sequence number of the last sample published on the service (0 before the first).
    public var lastSequence: UInt64 { publisher.lastSequence }

    /// Publishes a copy of `sample` to every connected subscriber (written once, into a chunk every subscriber reads
    /// in place), as ``Publisher/publish(count:_:)`` does; returns its sequence number.
    /// Inlined, so that the caller's specialisation copies `Sample` without its value witnesses.
    @inlinable @discardableResult
    public func publish(_ sample: Sample) throws(SharedMemoryError) -> UInt64 {
        try withUnsafeBytes(of: sample) { (bytes) throws(SharedMemoryError) in try publisher.publish(bytes) }
    }

    /// Zero-copy: loans a chunk and lets `body` make the sample in it, through an `OutputSpan` of room for one value
    /// that cannot leave `body` (`output.append(Quote(...))`), then publishes it. A body that appends nothing
    /// publishes nothing: `invalidArgument`, and the chunk is kept for the next publish.
    @inlinable @discardableResult
    public func publish(_ body: (inout OutputSpan<Sample>) -> Void) throws(SharedMemoryError) -> UInt64 {
        let size = MemoryLayout<Sample>.size
        let sequence = try publisher.publishFilled(count: size) { chunk in
            let room = chunk.bindMemory(to: Sample.self)
            var output = OutputSpan(buffer: room, initializedCount: 0)
            body(&output)
            return output.finalize(for: room) == 1 ? size : nil
        }
        guard let sequence else {
            throw publisher.nothingAppended(Sample.self)
        }
        return sequence
    }

    /// Delivers the history to subscribers that asked for it and reclaims dead ones, without publishing
    /// (``Publisher/update()``).
    public func update() throws(SharedMemoryError) { try publisher.update() }

    /// Ends the stream (``Publisher/finish()``).
    public consuming func finish() { publisher.finish() }
}

/// A subscriber of a typed service: a ``Subscriber`` whose samples are `Sample` values, read in place. It holds its
/// slot and gives it back as a `Subscriber` does.
///
/// A sample's bytes are what its publisher wrote. For a type not every bit pattern of which is a value (a `Bool`, an
/// enum), a publisher that does not play by the rules can write one that is not: from peers you do not trust, take
/// integers and check them.
public struct TypedSubscriber<Sample: BitwiseCopyable>: ~Copyable {
    @usableFromInline let subscriber: Subscriber

    /// Connects to the typed service at `offset`, as
    /// ``Subscriber/init(_:at:queueDepth:overflow:history:strategy:timeout:)`` does; a service of another type (or
    /// of bytes) is ``SharedMemoryError/Code/typeMismatch`` naming both.
    @inlinable
    public init(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, queueDepth: Int? = nil,
        overflow: Subscriber.Overflow = .overwriteOldest, history: Int = 0, strategy: WaitStrategy = .default, timeout: Duration = .zero
    ) throws(SharedMemoryError) {
        try PublishSubscribe.expectSampleType(Sample.self, region, at: offset, timeout: timeout)
        subscriber = try Subscriber(region, at: offset, queueDepth: queueDepth, overflow: overflow, history: history, strategy: strategy)
    }

    /// Samples this subscriber lost (``Subscriber/lost``).
    public var lost: UInt64 { subscriber.lost }

    /// Waits for the next sample as ``Subscriber/receive(timeout:_:)`` does and calls `body` with it in place; the
    /// sample is released when `body` returns. `nil` once the publisher finished and every sample was read. A
    /// sample whose length is not `Sample`'s size (a byte publisher's) is ``SharedMemoryError/Code/foreign``; it
    /// is released, and the next receive takes the next one.
    @inlinable
    public func receive<R>(timeout: Duration? = nil, _ body: (Sample, SampleInfo) throws -> R) throws -> R? {
        guard let sample = try subscriber.next(timeout: timeout) else { return nil }
        defer { subscriber.release(sample.chunk) }
        guard sample.count == MemoryLayout<Sample>.size else { throw subscriber.wrongLength(sample.count, Sample.self) }
        return try body(sample.start.assumingMemoryBound(to: Sample.self).pointee, SampleInfo(sequence: sample.sequence))
    }

    /// The next sample as a copy, with its sequence number; `nil` once the publisher finished (see
    /// ``receive(timeout:_:)``).
    @inlinable
    public func receive(timeout: Duration? = nil) throws(SharedMemoryError) -> (sample: Sample, info: SampleInfo)? {
        guard let sample = try subscriber.next(timeout: timeout) else { return nil }
        defer { subscriber.release(sample.chunk) }
        guard sample.count == MemoryLayout<Sample>.size else { throw subscriber.wrongLength(sample.count, Sample.self) }
        return (sample.start.loadUnaligned(as: Sample.self), SampleInfo(sequence: sample.sequence))
    }

    /// The asynchronous twin of ``receive(timeout:_:)`` (``Subscriber/receiveAsync(timeout:isolation:_:)``).
    public func receiveAsync<R>(
        timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation, _ body: (Sample, SampleInfo) throws -> R
    ) async throws -> R? {
        let size = MemoryLayout<Sample>.size, name = subscriber.service.name
        let outcome: Result<R, any Error>? = try await subscriber.receiveAsync(timeout: timeout) { bytes, info in
            guard bytes.byteCount == size else { return .failure(Subscriber.wrongLength(bytes.byteCount, Sample.self, name)) }
            return Result { try bytes.withUnsafeBytes { try body($0.baseAddress!.assumingMemoryBound(to: Sample.self).pointee, info) } }
        }
        return try outcome?.get()
    }

    /// Leaves the service (``Subscriber/close()``).
    public consuming func close() { subscriber.close() }
}

extension TypedPublisher {
    /// Creates the region `name` sized for a typed service (see
    /// ``PublishSubscribe/size(of:subscribers:queueDepth:history:)``), formats it, and takes its publisher's seat.
    /// `alreadyExists` if the name exists.
    public static func create(
        _ name: RegionName, subscribers: Int, queueDepth: Int = 8, history: Int = 0, options: CreateOptions = .init(),
        blockTimeout: Duration = .seconds(1)
    ) throws(SharedMemoryError) -> TypedPublisher {
        try PublishSubscribe.checkSampleType(Sample.self, name)
        try refuse(PublishSubscribe.Layout.check(maxPayload: MemoryLayout<Sample>.size, subscribers: subscribers, queueDepth: queueDepth, history: history),
                   "a publish/subscribe service", name)
        let size = PublishSubscribe.size(of: Sample.self, subscribers: subscribers, queueDepth: queueDepth, history: history)
        return try creatingStructure(name, size: size, options: options) { region throws(SharedMemoryError) in
            try PublishSubscribe.format(region, sampleType: Sample.self, subscribers: subscribers, queueDepth: queueDepth, history: history)
            return try TypedPublisher(region, blockTimeout: blockTimeout)
        }
    }

    /// Takes the publisher's seat of the typed service `name`, making it first if there is none, as
    /// ``Publisher/openOrCreate(_:maxPayload:subscribers:queueDepth:history:timeout:options:blockTimeout:)`` does: a
    /// service of another type is ``SharedMemoryError/Code/typeMismatch`` naming both, another configuration names
    /// each difference.
    public static func openOrCreate(
        _ name: RegionName, subscribers: Int, queueDepth: Int = 8, history: Int = 0, timeout: Duration = .seconds(5),
        options: CreateOptions = .init(), blockTimeout: Duration = .seconds(1)
    ) throws(SharedMemoryError) -> TypedPublisher {
        try PublishSubscribe.checkSampleType(Sample.self, name)
        try refuse(PublishSubscribe.Layout.check(maxPayload: MemoryLayout<Sample>.size, subscribers: subscribers, queueDepth: queueDepth, history: history),
                   "a publish/subscribe service", name)
        let size = PublishSubscribe.size(of: Sample.self, subscribers: subscribers, queueDepth: queueDepth, history: history)
        return try openingOrCreatingStructure(name, size: size, options: options, timeout: timeout) { region throws(SharedMemoryError) in
            try PublishSubscribe.format(region, sampleType: Sample.self, subscribers: subscribers, queueDepth: queueDepth, history: history)
            return try TypedPublisher(region, blockTimeout: blockTimeout)
        } attach: { region, left throws(SharedMemoryError) in
            let service = try ServiceView(region, at: 0, timeout: left)
            try PublishSubscribe.expectSampleType(TypeIdentity.of(Sample.self), at: service.base, region: name)
            try expectConfiguration("publish/subscribe service", name, found: [
                ("subscribers", service.layout.subscribers), ("queueDepth", service.layout.queueDepth), ("history", service.layout.history),
            ], asked: [subscribers, queueDepth, history])
            return try TypedPublisher(region, blockTimeout: blockTimeout)
        }
    }
}

extension TypedSubscriber {
    /// Opens the region `name` and connects to the typed service at its start, waiting up to `timeout` for the name
    /// to appear and the service to be formatted (``Subscriber/open(_:queueDepth:overflow:history:strategy:timeout:options:)``).
    public static func open(
        _ name: RegionName, queueDepth: Int? = nil, overflow: Subscriber.Overflow = .overwriteOldest, history: Int = 0,
        strategy: WaitStrategy = .default, timeout: Duration = .zero, options: OpenOptions = .init()
    ) throws(SharedMemoryError) -> TypedSubscriber {
        try openingStructure(name, options: options, header: ServiceHeader.historyEntries.offset, timeout: timeout) { region, left throws(SharedMemoryError) in
            try TypedSubscriber(region, queueDepth: queueDepth, overflow: overflow, history: history, strategy: strategy, timeout: left)
        }
    }
}

extension Subscriber {
    /// `foreign`: a sample of `length` bytes on a service of `type` values.
    @usableFromInline
    func wrongLength(_ length: Int, _ type: Any.Type) -> SharedMemoryError { Self.wrongLength(length, type, service.name) }

    static func wrongLength(_ length: Int, _ type: Any.Type, _ name: RegionName) -> SharedMemoryError {
        SharedMemoryError(.foreign, "a sample of \(length) bytes, not a \(type): its publisher wrote bytes, not a \(type)", region: name)
    }
}
