import Atomics
import CSharedMemory
import Glibc

/// A subscriber of a service (see ``PublishSubscribe``): holds a slot with its own queue, and reads samples in
/// place. Holds the region's mapping.
public struct Subscriber: ~Copyable {
    /// What happens when this subscriber's queue is full and the publisher publishes.
    public enum Overflow: Sendable, Hashable {
        /// The oldest unread sample is dropped (and counted in ``Subscriber/lost``): the publisher never waits.
        case overwriteOldest
        /// The publisher waits for room (at most its ``Publisher/blockTimeout``).
        case blockPublisher
    }

    /// Everything the subscriber holds, in memory of its own (see ``SubscriberLocal``): a handle of one word is passed
    /// in a register, so one kept in a class's `let` is not copied onto the stack before each receive (Docs/Design.md,
    /// "A handle is one or two words").
    @usableFromInline let local: UnsafeMutablePointer<SubscriberLocal>

    /// The service's view: its mapping, lock and geometry.
    var service: ServiceView { _read { yield local.pointee.service } }
    /// The service's place and layout, for the inlined fast path.
    @inlinable var geometry: ServiceGeometry { local.pointee.geometry }
    /// This subscriber's slot.
    @inlinable var index: Int { local.pointee.index }
    /// How ``receive(timeout:_:)`` waits for a sample.
    public var strategy: WaitStrategy { local.pointee.strategy }
    /// The event loop's descriptor, once asked for (``readinessDescriptor()``): while it exists, the flag that makes
    /// the publisher wake this subscriber stays up.
    var readiness: Readiness? {
        get { local.pointee.readiness }
        nonmutating set { local.pointee.readiness = newValue }
    }

    typealias P = PublishSubscribe

    /// Connects to the service at `offset` (waiting up to `timeout` for it to be formatted) with a queue of
    /// `queueDepth` samples (at most the service's; its own by default), `overflow`'s policy, and the last
    /// `history` samples delivered first; `strategy` says how a receive waits (spinning first, by default a few
    /// microseconds, then sleeping in the kernel). A free slot is taken; with none, dead subscribers' slots are
    /// reclaimed first; with still none, ``SharedMemoryError/Code/limitExceeded``.
    public init(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, queueDepth: Int? = nil,
        overflow: Overflow = .overwriteOldest, history: Int = 0, strategy: WaitStrategy = .default, timeout: Duration = .zero
    ) throws(SharedMemoryError) {
        let service = try ServiceView(region, at: offset, timeout: timeout)
        let depth = queueDepth ?? service.layout.queueDepth
        guard depth >= 1, depth <= service.layout.queueDepth else {
            throw SharedMemoryError(.invalidArgument, "a subscriber's queue holds 1 to \(service.layout.queueDepth) samples on this service; \(depth) is not", region: service.name)
        }
        guard history >= 0, history <= service.layout.history else {
            throw SharedMemoryError(.invalidArgument, "this service keeps a history of \(service.layout.history) samples; \(history) cannot be asked for", region: service.name)
        }
        let index = try service.withLock { () throws(SharedMemoryError) -> Int in
            var free = (0..<service.layout.subscribers).first { service.atomic(service.slot($0) + SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.free }
            if free == nil {
                free = (0..<service.layout.subscribers).first { service.reclaimIfDead($0) }
            }
            guard let s = free else {
                throw SharedMemoryError(.limitExceeded, "all \(service.layout.subscribers) subscriber slots of the service are taken by live processes", region: service.name)
            }
            let slotAt = service.slot(s)
            service.atomic(slotAt + SubscriberSlot.state.offset, UInt32.self).store(P.claiming, ordering: .releasing)
            service.subscriberSeat(s).occupy()
            service.base.storeBytes(of: overflow == .overwriteOldest ? 0 : 1, toByteOffset: slotAt + SubscriberSlot.policy.offset, as: UInt32.self)
            service.base.storeBytes(of: UInt32(depth), toByteOffset: slotAt + SubscriberSlot.depth.offset, as: UInt32.self)
            service.atomic(slotAt + SubscriberSlot.lost.offset, UInt64.self).store(0, ordering: .relaxed)
            service.base.storeBytes(of: UInt32(history), toByteOffset: slotAt + SubscriberSlot.historyWanted.offset, as: UInt32.self)
            service.atomic(slotAt + SubscriberSlot.historyDelivered.offset, UInt32.self).store(history == 0 ? 1 : 0, ordering: .relaxed)
            service.atomic(slotAt + SubscriberSlot.held.offset, UInt32.self).store(0, ordering: .relaxed)
            service.atomic(slotAt + SubscriberSlot.write.offset, UInt64.self).store(0, ordering: .relaxed)
            service.atomic(slotAt + SubscriberSlot.read.offset, UInt64.self).store(0, ordering: .relaxed)
            service.atomic(slotAt + SubscriberSlot.generation.offset, UInt32.self).wrappingIncrement(ordering: .relaxed)
            service.atomic(slotAt + SubscriberSlot.state.offset, UInt32.self).store(P.connected, ordering: .releasing)
            service.connectionsChanged()
            return s
        }
        local = .allocate(capacity: 1)
        local.initialize(to: SubscriberLocal(geometry: service.geometry, index: index, service: service, strategy: strategy))
    }

    /// The largest payload a sample can have.
    public var maxPayload: Int { service.layout.maxPayload }

    /// Samples dropped from this subscriber's full queue (``Overflow/overwriteOldest``), or that a blocking one
    /// missed when the publisher's wait timed out.
    public var lost: UInt64 { service.atomic(service.slot(index) + SubscriberSlot.lost.offset, UInt64.self).load(ordering: .relaxed) }

    /// Waits for the next sample (up to `timeout`, then ``SharedMemoryError/Code/timedOut``; `nil` waits as long as
    /// it takes) and calls `body` with its bytes in place, as a `RawSpan` that cannot leave `body`; the sample is
    /// released when `body` returns. `nil` once the publisher has finished and every sample was read;
    /// ``SharedMemoryError/Code/peerDied`` if the publisher died, once every sample that reached this subscriber's
    /// queue was read. A sample is counted in ``Publisher/lastSequence`` before it is put in the queues of blocking
    /// subscribers whose queues are full; a publisher killed while it waits for room has counted it, and those
    /// subscribers never receive it (nor count it in ``lost``).
    @inlinable
    public func receive<R>(timeout: Duration? = nil, _ body: (RawSpan, SampleInfo) throws -> R) throws -> R? {
        guard let sample = try next(timeout: timeout) else { return nil }
        defer { release(sample.chunk) }
        return try body(RawSpan(_unsafeStart: sample.start, byteCount: sample.count), SampleInfo(sequence: sample.sequence))
    }

    /// A sample taken from the queue: its chunk (held until ``release(_:)``), where its bytes start in place and how
    /// many, its sequence. A start and a count, as a ring's message (`RingMessage`: a buffer pointer's count is a
    /// subtraction on every use).
    @usableFromInline
    struct TakenSample {
        @usableFromInline let chunk: Int
        @usableFromInline let start: UnsafeRawPointer
        @usableFromInline let count: Int
        @usableFromInline let sequence: UInt64

        @inlinable init(chunk: Int, start: UnsafeRawPointer, count: Int, sequence: UInt64) {
            self.chunk = chunk
            self.start = start
            self.count = count
            self.sequence = sequence
        }
    }

    /// The next sample, waiting as ``receive(timeout:_:)`` says (not generic, so that `receive` can be inlined into
    /// the caller, with its body, while this stays here).
    @inlinable
    func next(timeout: Duration?) throws(SharedMemoryError) -> TakenSample? {
        switch geometry.takeIfPlain(index) {
        case .sample(let sample): return sample
        case .tooLong(let c, let length): throw sampleTooLong(c, length)
        case .none: return try nextSlowly(timeout: timeout)
        }
    }

    /// A taken sample whose length is more than the service's largest: given back, and the error to report.
    @usableFromInline
    func sampleTooLong(_ c: Int, _ length: UInt64) -> SharedMemoryError {
        release(c)
        return SharedMemoryError(.foreign, "a sample says it has \(length) bytes; the service's largest is \(service.layout.maxPayload)", region: service.name)
    }

    /// ``next(timeout:)`` when the quick take found nothing plain: an empty queue (waiting, the stream's end, the
    /// publisher's death), a position or entry that does not add up (`foreign`), or a race with the publisher.
    @usableFromInline
    func nextSlowly(timeout: Duration?) throws(SharedMemoryError) -> TakenSample? {
        guard let (c, length, sequence) = try take(timeout: timeout) else { return nil }
        return TakenSample(chunk: c, start: service.base + service.chunk(c) + Chunk.payload.offset, count: length, sequence: sequence)
    }

    /// Leaves the service: the slot and everything queued in it are given back at once.
    public consuming func close() {
        Self.leave(service, index)
        local.pointee.closed = true
    }

    /// A subscriber that goes away without ``close()`` (an error thrown past it, a cancelled task's loop, a handle
    /// simply dropped) gives its slot and everything queued in it back at once, as `close()` does: leaving ends
    /// nothing for the publisher or the other subscribers, so a handle's lifetime may decide it. Before, the slot
    /// stayed taken for the life of the process (a one-slot service refused every later subscriber, and a dropped
    /// blocking one made every publish wait out its block timeout).
    deinit {
        if !local.pointee.closed { Self.leave(service, index) }
        local.deinitialize(count: 1)
        local.deallocate()
    }

    /// Gives slot `index` back, if this process holds it: marked as leaving, then reclaimed (its marks cleared, its
    /// queue emptied). A copy inherited across `fork` names the parent's slot: the child leaving (or its copy going
    /// away) must not take the parent's subscription, so a slot another process holds is left alone.
    private static func leave(_ service: ServiceView, _ index: Int) {
        try? service.withLock { () throws(SharedMemoryError) in
            let slot = service.slot(index)
            guard service.subscriberSeat(index).isMine else { return }
            service.atomic(slot + SubscriberSlot.state.offset, UInt32.self).store(P.reclaiming, ordering: .releasing)
            service.reclaimIfDead(index)
        }
    }

    /// The next chunk, taken from the queue (its mark for this subscriber stays until ``release(_:)``).
    @inline(__always)
    private func take(timeout: Duration?) throws(SharedMemoryError) -> (Int, Int, UInt64)? {
        let slotAt = service.slot(index)
        var waiting = Wait(strategy, timeout: timeout)
        while true {
            let (taken, w) = try takeNow()
            if let taken { return taken }
            // Empty: spin a while, then sleep. Whether the publisher still runs is read from /proc only after a
            // quiet slice, so that a sample arriving never pays for it.
            if waiting.spin() { continue }
            if try publisherFinished(lookingAtIt: waiting.lookAtPeer) { return nil }
            let slept = try waiting.sleep(on: service.base + slotAt + SubscriberSlot.write.offset,
                                          raise: { () throws(SharedMemoryError) in raiseSleepingFlag(seen: w) }, lower: { lowerSleepingFlag() })
            if slept == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "no sample arrived within \(timeout!)", region: service.name)
            }
        }
    }

    /// The next chunk, taken from the queue as ``take(timeout:)`` does, suspending the task (not blocking a thread)
    /// while the queue is empty.
    func takeAsync(timeout: Duration?, isolation: isolated (any Actor)? = #isolation) async throws -> (Int, Int, UInt64)? {
        let slotAt = service.slot(index)
        var waiting = Wait(strategy, timeout: timeout, async: true)
        while true {
            let (taken, w) = try takeNow()
            if let taken { return taken }
            if waiting.spin() { continue }
            if try publisherFinished(lookingAtIt: waiting.lookAtPeer) { return nil }
            let slept = try await waiting.sleepAsync(on: service.base + slotAt + SubscriberSlot.write.offset,
                                                     raise: { () throws(SharedMemoryError) in raiseSleepingFlag(seen: w) }, lower: { lowerSleepingFlag() })
            if slept == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "no sample arrived within \(timeout!)", region: service.name)
            }
        }
    }

    /// Before sleeping on an empty queue whose write position was `w`: raises the flag that makes the publisher wake
    /// this subscriber, and looks once more. The futex value to sleep on, or nil if a sample came meanwhile.
    private func raiseSleepingFlag(seen w: UInt64) -> UInt32? {
        let slotAt = service.slot(index)
        service.atomic(slotAt + SubscriberSlot.subscriberSleeps.offset, UInt32.self).store(1, ordering: .sequentiallyConsistent)
        if service.atomic(slotAt + SubscriberSlot.write.offset, UInt64.self).load(ordering: .sequentiallyConsistent) == w {
            return UInt32(truncatingIfNeeded: w)
        }
        lowerSleepingFlag()
        return nil
    }

    /// After a sleep: the publisher need not wake this subscriber any more, unless an event loop watches it.
    private func lowerSleepingFlag() {
        if readiness == nil {
            service.atomic(service.slot(index) + SubscriberSlot.subscriberSleeps.offset, UInt32.self).store(0, ordering: .relaxed)
        }
    }

    /// One look at the queue: the next chunk, taken (its length and sequence checked), or nil if the queue is
    /// empty; and the write position seen.
    @inline(__always)
    private func takeNow() throws(SharedMemoryError) -> (taken: (Int, Int, UInt64)?, write: UInt64) {
        let slotAt = service.slot(index)
        let read = service.atomic(slotAt + SubscriberSlot.read.offset, UInt64.self)
        let write = service.atomic(slotAt + SubscriberSlot.write.offset, UInt64.self)
        let held = service.atomic(slotAt + SubscriberSlot.held.offset, UInt32.self)
        let capacity = UInt64(service.layout.queueCapacity)
        while true {
            let r = read.load(ordering: .acquiring)
            let w = write.load(ordering: .acquiring)
            guard w >= r, w - r <= capacity else {
                // An overwriting queue: the publisher may have dropped the oldest and queued more between the two
                // loads, so `r` is stale, not the positions wrong. Only a read position that held still says so.
                if read.load(ordering: .acquiring) != r { continue }
                throw SharedMemoryError(.foreign, "this subscriber's queue positions (read \(r), write \(w)) do not add up", region: service.name)
            }
            guard w > r else { return (nil, w) }
            let c = try service.checkedChunk(service.base.load(fromByteOffset: slotAt &+ SubscriberSlot.entries.offset &+ Int(truncatingIfNeeded: r & (capacity &- 1)) &* 4, as: UInt32.self))
            held.store(UInt32(c + 1), ordering: .releasing)
            guard read.compareExchange(expected: r, desired: r &+ 1, ordering: .acquiringAndReleasing).exchanged else {
                held.store(0, ordering: .releasing)
                continue  // the publisher dropped it (overwriting): the next one
            }
            if service.atomic(slotAt + SubscriberSlot.publisherSleeps.offset, UInt32.self).load(ordering: .sequentiallyConsistent) != 0 {
                Syscalls.futexWake(service.base + slotAt + SubscriberSlot.read.offset)
            }
            let chunkAt = service.chunk(c)
            let length = service.base.load(fromByteOffset: chunkAt + Chunk.length.offset, as: UInt64.self)
            guard length <= UInt64(service.layout.maxPayload) else {
                release(c)
                throw SharedMemoryError(.foreign, "a sample says it has \(length) bytes; the service's largest is \(service.layout.maxPayload)", region: service.name)
            }
            return ((c, Int(length), service.base.load(fromByteOffset: chunkAt + Chunk.sequence.offset, as: UInt64.self)), w)
        }
    }

    /// With the queue empty: whether the publisher has finished (the stream's end); with `lookingAtIt`, first
    /// whether its process still runs (a /proc read), and ``SharedMemoryError/Code/peerDied`` if not.
    private func publisherFinished(lookingAtIt: Bool) throws(SharedMemoryError) -> Bool {
        let state = service.atomic(ServiceHeader.publisherState.offset, UInt32.self).load(ordering: .acquiring)
        if state == 2 { return true }
        if lookingAtIt, state == 1, let publisher = service.publisher, !publisher.isAlive {
            let last = service.atomic(ServiceHeader.published.offset, UInt64.self).load(ordering: .acquiring)
            throw SharedMemoryError(.peerDied, "the publisher (process \(publisher.pid)) died after sample \(last); this subscriber has read every sample that reached its queue (one the publisher was still delivering when it died may have reached only some subscribers)", region: service.name)
        }
        return false
    }

    /// Gives chunk `c` back: this subscriber's mark off it, then its note of what it is reading.
    @inlinable
    func release(_ c: Int) {
        _ = geometry.holders(c).loadThenBitwiseAnd(with: ~ServiceGeometry.mark(index), ordering: .acquiringAndReleasing)
        geometry.atomic(geometry.slot(index) &+ SubscriberSlot.held.offset, UInt32.self).store(0, ordering: .releasing)
    }
}

/// What a ``Subscriber`` holds: the service's geometry and its slot (first: the inlined fast path reads them), the
/// service's view, how it waits, its event-loop descriptor once asked for, and whether ``Subscriber/close()`` gave
/// the slot back already (the deinit then has nothing to do).
@usableFromInline
struct SubscriberLocal {
    @usableFromInline let geometry: ServiceGeometry
    @usableFromInline let index: Int
    let service: ServiceView
    let strategy: WaitStrategy
    var readiness: Readiness? = nil
    var closed = false
}
