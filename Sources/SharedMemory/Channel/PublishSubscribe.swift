import Atomics
import CSharedMemory
import Glibc

/// One publisher feeding many subscribers through a region, without a copy per subscriber: the publisher fills a
/// chunk of the region in place and publishes it; every subscriber reads that same chunk in place.
///
/// ```swift
/// try PublishSubscribe.format(region, maxPayload: 4096, subscribers: 8, queueDepth: 16, history: 4)   // once
/// var publisher = try Publisher(region)                          // one process
/// try publisher.publish(count: 5) { output in for byte in "hello".utf8 { output.append(byte) } }
/// var subscriber = try Subscriber(region, overflow: .overwriteOldest, history: 4)   // up to 8 processes
/// try subscriber.receive { (bytes: RawSpan, info: SampleInfo) in handle(bytes) }
/// ```
///
/// - A service has one publisher and up to `subscribers` subscribers, each with its own queue of up to `queueDepth`
///   samples and its own overflow policy: ``Subscriber/Overflow/overwriteOldest`` (the oldest unread sample is
///   dropped and counted in ``Subscriber/lost``) or ``Subscriber/Overflow/blockPublisher`` (the publisher waits
///   for room, at most its `blockTimeout`).
/// - A subscriber can ask for up to `history` of the last samples when it connects; the publisher delivers them
///   ahead of newer ones, on its next publish or ``Publisher/update()``.
/// - Participants come and go at any time. A subscriber killed at any moment is found dead by the next process that
///   needs its slot or its chunks (the publisher, or a subscriber connecting), and everything it held is reclaimed;
///   a dead publisher is reported to subscribers as ``SharedMemoryError/Code/peerDied`` once they have read what
///   reached their queues (a sample it was delivering when it died may have reached only some); a new publisher can
///   take a dead one's place.
/// - Everything read from the region (positions, chunk indices, lengths, counts) is checked before it is used: what
///   does not add up is ``SharedMemoryError/Code/foreign``, and no peer can make a process read or write outside
///   the service.
///
/// Docs/PublishSubscribe.md has the layout and the crash model.
public enum PublishSubscribe {
    // The header's, a slot's and a chunk's fields are declared in Kit/Formats.swift.
    static let free: UInt32 = 0, claiming: UInt32 = 1, connected: UInt32 = 2, reclaiming: UInt32 = 3

    static let loanBit: UInt64 = 1 << 62
    static let historyBit: UInt64 = 1 << 63

    static let magic: UInt64 = 0x4255_5342_5550_4D53  // "SMPUBSUB"
    static let major: UInt16 = 1
    static let minor: UInt16 = 0
    /// The most subscribers a service can have (one bit each in a chunk's holders).
    public static let maximumSubscribers = 62

    /// The configuration a formatted service's header states (its magic already seen), checked as every reader
    /// checks it: a version this library reads, a configuration SharedMemory writes, the chunk count it implies, and
    /// a size within the `room` bytes from `offset`; else `foreign`. Reads only.
    static func readLayout(_ base: UnsafeRawPointer, room: Int, offset: Int, region: RegionName?) throws(SharedMemoryError) -> Layout {
        let found = ServiceHeader.major.load(base, UInt16.self)
        guard found == major else {
            throw SharedMemoryError(.foreign, "the service has format version \(found); this library reads version \(major)", region: region)
        }
        let subscribers = Int(ServiceHeader.subscribers.load(base, UInt32.self))
        let maxPayload = Int(truncatingIfNeeded: ServiceHeader.maxPayload.load(base, UInt64.self))
        let depth = Int(ServiceHeader.queueDepth.load(base, UInt32.self))
        let history = Int(ServiceHeader.history.load(base, UInt32.self))
        if let wanted = Layout.check(maxPayload: maxPayload, subscribers: subscribers, queueDepth: depth, history: history) {
            throw SharedMemoryError(.foreign, "the service's header is not one SharedMemory writes (it must have \(wanted))", region: region)
        }
        let layout = Layout(maxPayload: maxPayload, subscribers: subscribers, queueDepth: depth, history: history)
        guard Int(ServiceHeader.chunkCount.load(base, UInt32.self)) == layout.chunkCount else {
            throw SharedMemoryError(.foreign, "the service's chunk count does not match its configuration", region: region)
        }
        guard layout.size <= room else {
            throw SharedMemoryError(.foreign, "the service's header says it takes \(layout.size) bytes, and the region has \(room) from offset \(offset)", region: region)
        }
        return layout
    }

    /// Where everything is, computed once from the configuration (the same in every process): every access to a
    /// slot or a chunk uses these, so they are stored, not recomputed (that cost a publish and receive about 600
    /// instructions).
    @usableFromInline
    struct Layout: Equatable, BitwiseCopyable {
        @usableFromInline let maxPayload: Int
        let subscribers: Int
        let queueDepth: Int
        let history: Int
        @usableFromInline let queueCapacity: Int
        @usableFromInline let chunkCount: Int
        @usableFromInline let chunkStride: Int
        @usableFromInline let slotStride: Int
        @usableFromInline let slotsAt: Int
        @usableFromInline let chunksAt: Int
        let size: Int

        init(maxPayload: Int, subscribers: Int, queueDepth: Int, history: Int) {
            self.maxPayload = maxPayload
            self.subscribers = subscribers
            self.queueDepth = queueDepth
            self.history = history
            queueCapacity = 1 << (Int.bitWidth - (queueDepth - 1).leadingZeroBitCount)
            chunkCount = subscribers * (queueDepth + 1) + history + 2
            chunkStride = Chunk.payload.offset + (maxPayload + 63) & ~63
            slotStride = (SubscriberSlot.entries.offset + queueCapacity * 4 + 63) & ~63
            slotsAt = (ServiceHeader.historyEntries.offset + history * 4 + 63) & ~63
            chunksAt = slotsAt + subscribers * slotStride
            size = chunksAt + chunkCount * chunkStride
        }

        static func check(maxPayload: Int, subscribers: Int, queueDepth: Int, history: Int) -> String? {
            if maxPayload < 0 || maxPayload > 1 << 36 { return "a payload of 0 bytes to 64 GiB" }
            if subscribers < 1 || subscribers > PublishSubscribe.maximumSubscribers { return "1 to \(PublishSubscribe.maximumSubscribers) subscribers" }
            if queueDepth < 1 || queueDepth > 1 << 16 { return "a queue depth of 1 to 65536" }
            if history < 0 || history > 1 << 16 { return "a history of 0 to 65536 samples" }
            return nil
        }
    }

    /// Bytes a service with this configuration takes in a region: its header, a slot per subscriber, and
    /// `subscribers × (queueDepth + 1) + history + 2` chunks of `maxPayload` bytes (enough that the publisher always
    /// finds a free one). A configuration too large for ``format(_:at:maxPayload:subscribers:queueDepth:history:)``
    /// takes `Int.max` bytes (no region has that many, so creating one says so).
    public static func size(maxPayload: Int, subscribers: Int, queueDepth: Int, history: Int = 0) -> Int {
        let (maxPayload, subscribers, queueDepth, history) = (max(maxPayload, 0), max(subscribers, 1), max(queueDepth, 1), max(history, 0))
        guard Layout.check(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history) == nil else { return .max }
        return Layout(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history).size
    }

    /// Makes a new service at `offset` of a region that holds nothing there yet (its first 8 bytes zero; see
    /// ``size(maxPayload:subscribers:queueDepth:history:)`` for how many bytes it takes). Its magic number is written
    /// last: a process attaching meanwhile waits for it, never reading a half-written header.
    ///
    /// The corresponding C call is `pthread_mutex_init` (for the connections' lock).
    public static func format(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, maxPayload: Int, subscribers: Int,
        queueDepth: Int, history: Int = 0
    ) throws(SharedMemoryError) {
        if let wanted = Layout.check(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history) {
            throw SharedMemoryError(.invalidArgument, "a publish/subscribe service takes \(wanted)", region: region.name)
        }
        let layout = Layout(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history)
        let place = try region.sharedObjectAddress(at: offset, size: layout.size, alignment: 64, what: "a publish/subscribe service")
        let base = place.address
        guard base.load(as: UInt64.self) == 0 else {
            throw SharedMemoryError(.alreadyExists, "the region already holds something at offset \(offset) (a service, or other data): formatting would overwrite it", region: region.name)
        }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: layout.size)
        ServiceHeader.major.store(major, base)
        ServiceHeader.minor.store(minor, base)
        ServiceHeader.subscribers.store(UInt32(subscribers), base)
        ServiceHeader.maxPayload.store(UInt64(maxPayload), base)
        ServiceHeader.queueDepth.store(UInt32(queueDepth), base)
        ServiceHeader.history.store(UInt32(history), base)
        ServiceHeader.chunkCount.store(UInt32(layout.chunkCount), base)
        try RobustMutex(address: base + ServiceHeader.lock.offset, region: region.name).initialize()
        Handshake.publish(magic, at: base + ServiceHeader.magic.offset)  // last; wakes a process attaching meanwhile
    }
}

/// What a subscriber knows about a sample besides its bytes.
public struct SampleInfo: Sendable, Hashable {
    /// Its sequence number: 1 for the service's first sample, one more for each after (gaps are samples this
    /// subscriber lost, or that were published before it connected).
    public var sequence: UInt64

    @usableFromInline init(sequence: UInt64) { self.sequence = sequence }
}

/// Where a service is and its layout: the part of ``ServiceView`` the hot paths read, trivially copyable so that the
/// compiler reads its fields in place (a method on the whole view, whose mapping and lock make it non-trivial, had it
/// copy all 129 bytes onto the stack on every receive).
@usableFromInline
struct ServiceGeometry: BitwiseCopyable {
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let layout: PublishSubscribe.Layout

    init(base: UnsafeMutableRawPointer, layout: PublishSubscribe.Layout) {
        self.base = base
        self.layout = layout
    }

    @inlinable func atomic<T: AtomicValue>(_ at: Int, _ type: T.Type) -> UnsafeAtomic<T> where T.AtomicRepresentation.Value == T {
        MessageRing.atomic(base, at, type)
    }
    // Slot and chunk indices are below the counts the layout was checked with, so their offsets cannot overflow.
    @inlinable func slot(_ s: Int) -> Int { layout.slotsAt &+ s &* layout.slotStride }
    @inlinable func chunk(_ c: Int) -> Int { layout.chunksAt &+ c &* layout.chunkStride }
    @inlinable func holders(_ c: Int) -> UnsafeAtomic<UInt64> { atomic(chunk(c) &+ Chunk.holders.offset, UInt64.self) }
    /// Subscriber `s`'s bit in a chunk's holders (and in a publish's set of blocked subscribers): `s` is a slot
    /// index, below 62, so the shift needs no check for a count of 64 or more.
    @inlinable static func mark(_ s: Int) -> UInt64 { 1 &<< UInt64(truncatingIfNeeded: s) }
    /// The publisher's loan of chunk `c` ends (its bit 62 cleared): published, or given back.
    func endLoan(_ c: Int) { _ = holders(c).loadThenBitwiseAnd(with: ~PublishSubscribe.loanBit, ordering: .acquiringAndReleasing) }

    /// What a quick take found.
    @usableFromInline
    enum Quick {
        case sample(Subscriber.TakenSample)
        /// Nothing plain: an empty queue, a position or entry that does not add up, or a race with the publisher.
        case none
        /// Chunk `c` was taken and says it has `length` bytes, more than the service's largest.
        case tooLong(Int, UInt64)
    }

    /// Subscriber `s`'s quick take, inlined into the caller: the next sample in its queue, taken (its chunk noted
    /// as held, the read position moved past it, a blocked publisher woken), if the positions and the entry are
    /// plainly valid; `.none` if the queue is empty or anything needs the full path (which reports what does not
    /// add up, or retries a race with a publisher dropping the oldest).
    @inlinable @inline(__always)
    func takeIfPlain(_ s: Int) -> Quick {
        let slotAt = slot(s)
        let read = atomic(slotAt &+ SubscriberSlot.read.offset, UInt64.self)
        let r = read.load(ordering: .acquiring)
        let w = atomic(slotAt &+ SubscriberSlot.write.offset, UInt64.self).load(ordering: .acquiring)
        let capacity = UInt64(truncatingIfNeeded: layout.queueCapacity)
        guard w > r, w &- r <= capacity else { return .none }
        let entryAt = slotAt &+ SubscriberSlot.entries.offset &+ Int(truncatingIfNeeded: r & (capacity &- 1)) &* 4
        let c = Int(base.load(fromByteOffset: entryAt, as: UInt32.self))
        guard c < layout.chunkCount else { return .none }
        let held = atomic(slotAt &+ SubscriberSlot.held.offset, UInt32.self)
        held.store(UInt32(truncatingIfNeeded: c &+ 1), ordering: .releasing)
        guard read.compareExchange(expected: r, desired: r &+ 1, ordering: .acquiringAndReleasing).exchanged else {
            held.store(0, ordering: .releasing)
            return .none
        }
        if atomic(slotAt &+ SubscriberSlot.publisherSleeps.offset, UInt32.self).load(ordering: .sequentiallyConsistent) != 0 {
            wakePublisher(slotAt)
        }
        let chunkAt = chunk(c)
        let length = base.load(fromByteOffset: chunkAt &+ Chunk.length.offset, as: UInt64.self)
        guard length <= UInt64(truncatingIfNeeded: layout.maxPayload) else { return .tooLong(c, length) }
        return .sample(Subscriber.TakenSample(chunk: c, bytes: UnsafeRawBufferPointer(start: base + (chunkAt &+ Chunk.payload.offset), count: Int(truncatingIfNeeded: length)),
                                              sequence: base.load(fromByteOffset: chunkAt &+ Chunk.sequence.offset, as: UInt64.self)))
    }

    /// A publisher waits for room in the queue at `slotAt`: a read moved.
    @usableFromInline
    func wakePublisher(_ slotAt: Int) {
        Syscalls.futexWake(base + slotAt + SubscriberSlot.read.offset)
    }
}

/// One process's view of a service: its layout, checked against the region, and the region's mapping, held.
struct ServiceView: @unchecked Sendable {
    let mapping: RegionMapping
    /// Where the service is and its layout (what the hot paths keep a copy of).
    let geometry: ServiceGeometry
    var base: UnsafeMutableRawPointer { geometry.base }
    var layout: PublishSubscribe.Layout { geometry.layout }
    /// The connections' lock (made once: its region name is for errors).
    let lock: RobustMutex
    typealias P = PublishSubscribe

    var name: RegionName { mapping.name }

    /// Waits up to `timeout` for a service to be formatted at `offset`, then reads and checks its header.
    init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int, timeout: Duration) throws(SharedMemoryError) {
        let header = try region.sharedObjectAddress(at: offset, size: ServiceHeader.historyEntries.offset, alignment: 64, what: "a publish/subscribe service")
        let base = header.address
        let deadline = MessageRing.deadline(after: timeout)!
        let found = Handshake.magic(at: base + ServiceHeader.magic.offset, until: deadline)
        guard let found else {
            throw SharedMemoryError(.notReady, "no publish/subscribe service has been formatted at offset \(offset) yet", region: region.name)
        }
        guard found == P.magic else {
            throw SharedMemoryError(.foreign, "the region at offset \(offset) holds no publish/subscribe service (its magic number is \(String(found, radix: 16)))", region: region.name)
        }
        let layout = try P.readLayout(base, room: region.size - offset, offset: offset, region: region.name)
        let whole = try region.sharedObjectAddress(at: offset, size: layout.size, alignment: 64, what: "a publish/subscribe service of \(layout.size) bytes")
        mapping = whole.mapping
        geometry = ServiceGeometry(base: whole.address, layout: layout)
        lock = RobustMutex(address: whole.address + ServiceHeader.lock.offset, region: whole.mapping.name)
    }

    func atomic<T: AtomicValue>(_ at: Int, _ type: T.Type) -> UnsafeAtomic<T> where T.AtomicRepresentation.Value == T { geometry.atomic(at, type) }
    func slot(_ s: Int) -> Int { geometry.slot(s) }
    func chunk(_ c: Int) -> Int { geometry.chunk(c) }
    func holders(_ c: Int) -> UnsafeAtomic<UInt64> { geometry.holders(c) }

    func occupant(pidAt: Int, startAt: Int) -> Creator? {
        let pid = atomic(pidAt, Int32.self).load(ordering: .acquiring)
        guard pid != 0 else { return nil }
        let start = base.load(fromByteOffset: startAt, as: UInt64.self)
        return Creator.seat(pid: pid, start: start)
    }

    var publisher: Creator? { occupant(pidAt: ServiceHeader.publisherPID.offset, startAt: ServiceHeader.publisherStart.offset) }

    func subscriber(_ s: Int) -> Creator? { occupant(pidAt: slot(s) + SubscriberSlot.pid.offset, startAt: slot(s) + SubscriberSlot.start.offset) }

    /// A chunk index read from a queue or the history: `foreign` unless it names a chunk.
    /// The error for a chunk index that names no chunk.
    func badChunk(_ raw: Int) -> SharedMemoryError {
        SharedMemoryError(.foreign, "a queue of the service names chunk \(raw), and it has \(layout.chunkCount)", region: name)
    }

    @inline(__always)
    func checkedChunk(_ raw: UInt32) throws(SharedMemoryError) -> Int {
        guard Int(raw) < layout.chunkCount else {
            throw SharedMemoryError(.foreign, "a queue of the service names chunk \(raw), and it has \(layout.chunkCount)", region: name)
        }
        return Int(raw)
    }

    /// Runs `body` holding the connections' lock; after a holder's death, repairs first.
    func withLock<R>(_ body: () throws(SharedMemoryError) -> R) throws(SharedMemoryError) -> R {
        try acquireLock()
        defer { releaseLock() }
        return try body()
    }

    /// Takes the connections' lock; after a holder's death, repairs first. (For the publish, which holds it without
    /// a closure: ``withLock(_:)`` elsewhere.)
    func acquireLock() throws(SharedMemoryError) {
        if try lock.lock() == .ownerDied {
            repair()
            try lock.markConsistent()
        }
    }

    func releaseLock() { try? lock.unlock() }

    /// After a process died holding the lock (in the middle of a publish, a connect, a reclaim): reclaims every
    /// subscriber that is dead, and if the publisher is dead, takes back its loan and makes the history's marks
    /// match the history. A chunk a dead publisher marked for a subscriber without queueing it (the one moment a
    /// publish can leave behind) is given back too: a live subscriber's mark counts only on a chunk in its queue or
    /// the one it is reading.
    func repair() {
        for s in 0..<layout.subscribers { reclaimIfDead(s) }
        if !(publisher?.isAlive ?? false) { recoverFromDeadPublisher() }
        for s in 0..<layout.subscribers where atomic(slot(s) + SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.connected {
            let slotAt = slot(s)
            let read = atomic(slotAt + SubscriberSlot.read.offset, UInt64.self).load(ordering: .acquiring)
            let write = atomic(slotAt + SubscriberSlot.write.offset, UInt64.self).load(ordering: .acquiring)
            let held = atomic(slotAt + SubscriberSlot.held.offset, UInt32.self).load(ordering: .acquiring)
            var queued = Set<Int>()
            if write >= read, write - read <= UInt64(layout.queueCapacity) {
                for position in read..<write {
                    queued.insert(Int(base.load(fromByteOffset: slotAt + SubscriberSlot.entries.offset + Int(position & UInt64(layout.queueCapacity - 1)) * 4, as: UInt32.self)))
                }
            }
            for c in 0..<layout.chunkCount where holders(c).load(ordering: .acquiring) & ServiceGeometry.mark(s) != 0 {
                if !queued.contains(c) && Int(held) != c + 1 { _ = holders(c).loadThenBitwiseAnd(with: ~ServiceGeometry.mark(s), ordering: .acquiringAndReleasing) }
            }
        }
    }

    /// A dead publisher's loan goes back, and each chunk is marked as in the history exactly when the history lists
    /// it.
    func recoverFromDeadPublisher() {
        var inHistory = Set<Int>()
        let head = atomic(ServiceHeader.historyHead.offset, UInt64.self).load(ordering: .acquiring)
        let kept = min(head, UInt64(layout.history))
        for i in 0..<Int(kept) {
            let c = Int(base.load(fromByteOffset: ServiceHeader.historyEntries.offset + Int((head - 1 - UInt64(i)) % UInt64(layout.history)) * 4, as: UInt32.self))
            if c < layout.chunkCount { inHistory.insert(c) }
        }
        for c in 0..<layout.chunkCount {
            let marks = holders(c)
            _ = marks.loadThenBitwiseAnd(with: ~P.loanBit, ordering: .acquiringAndReleasing)
            if inHistory.contains(c) {
                _ = marks.loadThenBitwiseOr(with: P.historyBit, ordering: .acquiringAndReleasing)
            } else {
                _ = marks.loadThenBitwiseAnd(with: ~P.historyBit, ordering: .acquiringAndReleasing)
            }
        }
    }

    /// If subscriber `s`'s process is dead (or its slot was left half made or half reclaimed by a dead process),
    /// takes back every chunk it held or had queued and frees the slot. Called with the lock held, so no publish
    /// runs meanwhile. Whether it reclaimed.
    @discardableResult
    func reclaimIfDead(_ s: Int) -> Bool {
        let slotAt = slot(s)
        let state = atomic(slotAt + SubscriberSlot.state.offset, UInt32.self)
        let current = state.load(ordering: .acquiring)
        guard current != P.free else { return false }
        if current != P.reclaiming, subscriber(s)?.isAlive ?? false { return false }
        state.store(P.reclaiming, ordering: .releasing)
        let bit = ServiceGeometry.mark(s)
        for c in 0..<layout.chunkCount where holders(c).load(ordering: .relaxed) & bit != 0 {
            _ = holders(c).loadThenBitwiseAnd(with: ~bit, ordering: .acquiringAndReleasing)
        }
        atomic(slotAt + SubscriberSlot.write.offset, UInt64.self).store(0, ordering: .relaxed)
        atomic(slotAt + SubscriberSlot.read.offset, UInt64.self).store(0, ordering: .relaxed)
        atomic(slotAt + SubscriberSlot.held.offset, UInt32.self).store(0, ordering: .relaxed)
        atomic(slotAt + SubscriberSlot.pid.offset, Int32.self).store(0, ordering: .relaxed)
        state.store(P.free, ordering: .releasing)
        // A publisher waiting for room in this queue looks again.
        Syscalls.futexWake(base + slotAt + SubscriberSlot.read.offset)
        return true
    }
}

/// The publisher of a service (see ``PublishSubscribe``): loans a chunk, lets a body fill it in place, and publishes
/// it to every subscriber. One per service; holds the service's publisher seat and the region's mapping.
public struct Publisher: ~Copyable {
    let service: ServiceView
    /// The service's place and layout, read in place by the hot path (see ``ServiceGeometry``).
    let geometry: ServiceGeometry
    /// The connections' lock, held by every publish (the service view's, kept apart for the same reason).
    let lock: RobustMutex
    // The publish's helpers below are `mutating` though most change nothing: a publish is `mutating` (its loan moves
    // the cursor), and calling a borrowing method from it had the compiler copy the whole publisher (288 bytes) to
    // borrow it, on every sample.
    /// Where the next loan starts looking for a free chunk.
    private var cursor = 0
    /// The chunk loaned ahead for the next publish, or -1: see ``loanAhead()``.
    private var nextLoan = -1
    /// How long a publish waits for room in a ``Subscriber/Overflow/blockPublisher`` subscriber's queue.
    public let blockTimeout: Duration

    typealias P = PublishSubscribe

    /// Takes the publisher's seat of the service at `offset`, waiting up to `timeout` for it to be formatted.
    /// ``SharedMemoryError/Code/busy`` if a live process publishes; a dead publisher's seat is taken over (its
    /// half-done publish repaired). `blockTimeout` bounds each wait for a full blocking subscriber.
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration = .zero, blockTimeout: Duration = .seconds(1)) throws(SharedMemoryError) {
        let service = try ServiceView(region, at: offset, timeout: timeout)
        try service.withLock { () throws(SharedMemoryError) in
            if let holder = service.publisher, holder.isAlive, holder != Creator.current,
               service.atomic(ServiceHeader.publisherState.offset, UInt32.self).load(ordering: .acquiring) == 1 {
                throw SharedMemoryError(.busy, "process \(holder.pid) already publishes on this service; a service has one publisher", region: service.name)
            }
            if let holder = service.publisher, !holder.isAlive { service.recoverFromDeadPublisher() }
            let me = Creator.current
            ServiceHeader.publisherStart.store(me.startTime ?? 0 as UInt64, service.base)
            service.atomic(ServiceHeader.publisherPID.offset, Int32.self).store(me.pid, ordering: .releasing)
            service.atomic(ServiceHeader.publisherState.offset, UInt32.self).store(1, ordering: .releasing)
        }
        self.service = service
        geometry = service.geometry
        lock = service.lock
        self.blockTimeout = blockTimeout
    }

    /// The largest payload a sample can have.
    public var maxPayload: Int { service.layout.maxPayload }

    /// The sequence number of the last sample published on the service (0 before the first).
    public var lastSequence: UInt64 { service.atomic(ServiceHeader.published.offset, UInt64.self).load(ordering: .acquiring) }

    /// Subscribers connected now.
    public var subscriberCount: Int {
        (0..<service.layout.subscribers).count { service.atomic(service.slot($0) + SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.connected }
    }

    /// Zero-copy: loans a chunk of up to `count` bytes, lets `body` write the sample in place through an
    /// `OutputRawSpan` (which cannot leave `body` nor write past `count`), and publishes what it wrote to every
    /// connected subscriber; returns the sample's sequence number. A ``Subscriber/Overflow/blockPublisher``
    /// subscriber whose queue stays full for ``blockTimeout`` misses the sample (counted in its ``Subscriber/lost``),
    /// and the publish then throws ``SharedMemoryError/Code/timedOut`` naming it, after every other subscriber got it.
    @discardableResult
    public mutating func publish(count: Int, _ body: (inout OutputRawSpan) -> Void) throws(SharedMemoryError) -> UInt64 {
        let (c, length) = try loanAndFill(count: count, body)
        return try deliver(c, length: length)
    }

    /// A publish's first half: loans a chunk and lets `body` write up to `count` bytes into it; the chunk and the
    /// length written.
    mutating func loanAndFill(count: Int, _ body: (inout OutputRawSpan) -> Void) throws(SharedMemoryError) -> (chunk: Int, length: Int) {
        guard count >= 0, count <= geometry.layout.maxPayload else {
            throw SharedMemoryError(.invalidArgument, "a sample of \(count) bytes does not fit this service: at most \(geometry.layout.maxPayload)", region: service.name)
        }
        let c = try loan()
        let payload = UnsafeMutableRawBufferPointer(start: geometry.base + geometry.chunk(c) + Chunk.payload.offset, count: count)
        var output = OutputRawSpan(buffer: payload, initializedCount: 0)
        body(&output)
        return (c, output.finalize(for: payload))
    }

    /// Zero-copy for C interop and benchmarks: loans a chunk, lets `body` fill exactly `count` bytes of it through a
    /// pointer, and publishes them. The pointer is valid only inside `body`: the compiler does not check that;
    /// ``publish(count:_:)`` is the safe way.
    @discardableResult
    public mutating func publishUnsafe(count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws(SharedMemoryError) -> UInt64 {
        guard count >= 0, count <= geometry.layout.maxPayload else {
            throw SharedMemoryError(.invalidArgument, "a sample of \(count) bytes does not fit this service: at most \(geometry.layout.maxPayload)", region: service.name)
        }
        let c = try loan()
        body(UnsafeMutableRawBufferPointer(start: geometry.base + geometry.chunk(c) + Chunk.payload.offset, count: count))
        return try deliver(c, length: count)
    }

    /// Copies `bytes` into a chunk and publishes it (see ``publish(count:_:)``).
    @discardableResult
    public mutating func publish(_ bytes: UnsafeRawBufferPointer) throws(SharedMemoryError) -> UInt64 {
        guard bytes.count <= geometry.layout.maxPayload else {
            throw SharedMemoryError(.invalidArgument, "a sample of \(bytes.count) bytes does not fit this service: at most \(geometry.layout.maxPayload)", region: service.name)
        }
        let c = try loan()
        if bytes.count > 0 { (geometry.base + (geometry.chunk(c) &+ Chunk.payload.offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        return try deliver(c, length: bytes.count)
    }

    /// Delivers the history to subscribers that asked for it since the last publish, and reclaims dead
    /// subscribers, without publishing: for a publisher with nothing to say for a while.
    public mutating func update() throws(SharedMemoryError) {
        let service = self.service
        try service.withLock { () throws(SharedMemoryError) in
            for s in 0..<service.layout.subscribers where !service.reclaimIfDead(s) { try deliverHistory(to: s) }
        }
    }

    /// Ends the stream: subscribers read what was published, then their ``Subscriber/receive(timeout:_:)`` returns
    /// `nil`. Gives the publisher's seat back (another process may then publish).
    public consuming func finish() {
        service.atomic(ServiceHeader.publisherState.offset, UInt32.self).store(2, ordering: .releasing)
        for s in 0..<service.layout.subscribers { Syscalls.futexWake(service.base + service.slot(s) + SubscriberSlot.write.offset) }
    }

    /// A free chunk (no holder), marked as this publisher's loan: the one loaned ahead at the end of the last
    /// publish, if any. After a full scan finds none, reclaims dead subscribers and scans once more.
    @inline(__always)
    private mutating func loan() throws(SharedMemoryError) -> Int {
        if nextLoan >= 0 {
            let c = nextLoan
            nextLoan = -1
            return c
        }
        // The next chunk after the cursor is usually free: take it here, anything else out of line.
        if let c = loanAtCursor() { return c }
        return try loanSearching()
    }

    /// The chunk at the cursor, loaned if it is free; the cursor moves past it either way.
    @inline(__always)
    private mutating func loanAtCursor() -> Int? {
        let c = cursor
        cursor = cursor &+ 1 == geometry.layout.chunkCount ? 0 : cursor &+ 1  // below the count, a small number
        return geometry.holders(c).compareExchange(expected: 0, desired: P.loanBit, ordering: .acquiringAndReleasing).exchanged ? c : nil
    }

    /// Right after a publish, loans the chunk for the next one if the one at the cursor is free. Taking a chunk
    /// means a compare-and-swap on its marks, which the subscriber that released it last wrote: done here, while the
    /// subscribers read, the wait for that cache line is off the next publish's path (measured in
    /// Docs/Benchmarks.md). The publisher still holds at most one loan at a time, as the wire format counts on; it
    /// gives this one back when it goes (its deinit), and if its process dies, whoever recovers the service does.
    @inline(__always)
    private mutating func loanAhead() {
        if nextLoan < 0, let c = loanAtCursor() { nextLoan = c }
    }

    deinit {
        if nextLoan >= 0 { geometry.endLoan(nextLoan) }
    }

    /// ``loan()`` when the chunk at the cursor is held: every chunk in turn, then again after reclaiming dead
    /// subscribers' chunks.
    @inline(never)
    private mutating func loanSearching() throws(SharedMemoryError) -> Int {
        for pass in 0..<2 {
            for _ in 0..<geometry.layout.chunkCount {
                if let c = loanAtCursor() { return c }
            }
            if pass == 0 {
                let service = self.service
                try service.withLock { () throws(SharedMemoryError) in
                    for s in 0..<service.layout.subscribers { service.reclaimIfDead(s) }
                }
            }
        }
        throw SharedMemoryError(.noSpace, "every chunk of the service is held (by subscribers' queues and reads, and the history): something holds samples it should have released", region: service.name)
    }

    /// Publishes the loaned chunk `c`: its sequence and length, into the history, into every connected subscriber's
    /// queue (history first for those that asked), then gives up the loan and loans the next chunk ahead. The loan
    /// goes back on an error too: the lock or a corrupt queue refused the sample, or a blocking subscriber stayed
    /// full (then the sample was published to every other one).
    private mutating func deliver(_ c: Int, length: Int) throws(SharedMemoryError) -> UInt64 {
        var blocked: UInt64 = 0  // bit s: subscriber s blocks the publisher and its queue was full
        let sequence: UInt64
        do {
            sequence = try locked(c, geometry.chunk(c), length, &blocked)
            if blocked != 0 { try waitForBlocked(c, blocked, sequence) }
        } catch {
            geometry.endLoan(c)
            throw error
        }
        geometry.endLoan(c)
        loanAhead()
        return sequence
    }

    /// ``deliver(_:length:)`` from async code: a wait for room in a blocking subscriber's queue suspends the task
    /// instead of its thread. Cancelling the task ends those waits: the subscribers still full miss the sample
    /// (counted as lost) and this throws `CancellationError`, after every other subscriber got it.
    mutating func deliverAsync(_ c: Int, length: Int, isolation: isolated (any Actor)? = #isolation) async throws -> UInt64 {
        var blocked: UInt64 = 0
        let sequence: UInt64
        do {
            sequence = try locked(c, geometry.chunk(c), length, &blocked)
            if blocked != 0 { try await waitForBlockedAsync(c, blocked, sequence) }
        } catch {
            geometry.endLoan(c)
            throw error
        }
        geometry.endLoan(c)
        loanAhead()
        return sequence
    }

    /// Subscribers that block the publisher, whose queues were full: waits (without the lock, so others can
    /// connect) for room in each, then puts the sample in; one still full after the timeout misses it, and the
    /// publish says so after every other got it.
    private mutating func waitForBlocked(_ c: Int, _ blocked: UInt64, _ sequence: UInt64) throws(SharedMemoryError) {
        var late: [Int32] = []
        for s in 0..<service.layout.subscribers where blocked & ServiceGeometry.mark(s) != 0 {
            if try !waitAndEnqueue(c, to: s) { late.append(service.subscriber(s)?.pid ?? 0) }
        }
        if !late.isEmpty { throw lateError(late, sequence) }
    }

    /// ``waitForBlocked(_:_:_:)``, suspending the task while it waits; a cancel ends every wait still to come, those
    /// subscribers missing the sample.
    private mutating func waitForBlockedAsync(_ c: Int, _ blocked: UInt64, _ sequence: UInt64, isolation: isolated (any Actor)? = #isolation) async throws {
        var late: [Int32] = []
        var cancelled = false
        for s in 0..<service.layout.subscribers where blocked & ServiceGeometry.mark(s) != 0 {
            let wait = BlockedWait(service, s, blockTimeout)
            waiting: while true {
                if try enqueueUnlessStillFull(c, wait) { break waiting }
                if cancelled {
                    wait.countLost()
                    break waiting
                }
                guard let seen = wait.prepareToSleep() else { continue }
                let slept = await FutexWaiters.sleep(on: wait.word, seen: seen, until: wait.deadline)
                wait.stopSleeping()
                switch slept {
                case .deadlinePassed:
                    wait.countLost()
                    late.append(service.subscriber(s)?.pid ?? 0)
                    break waiting
                case .cancelled: cancelled = true
                case .woken, .sliceElapsed: continue
                }
            }
        }
        if cancelled { throw CancellationError() }
        if !late.isEmpty { throw lateError(late, sequence) }
    }

    /// The publish's error when blocking subscribers (in processes `late`) stayed full for the whole block timeout.
    func lateError(_ late: [Int32], _ sequence: UInt64) -> SharedMemoryError {
        SharedMemoryError(.timedOut, "sample \(sequence) was published, but the queue of the subscriber\(late.count == 1 ? "" : "s") in process \(late.map(String.init).joined(separator: ", ")) stayed full for \(blockTimeout); they miss it (counted as lost)", region: service.name)
    }

    /// The part of a publish that holds the lock: the sample's sequence and length, the history owed to new
    /// subscribers, each connected subscriber's queue (those full and blocking are marked in `blocked`), the
    /// history.
    @inline(__always)
    private mutating func locked(_ c: Int, _ chunkAt: Int, _ length: Int, _ blocked: inout UInt64) throws(SharedMemoryError) -> UInt64 {
        if try lock.lock() == .ownerDied { try repairAfterOwnerDied() }
        defer { try? lock.unlock() }
        let sequence = geometry.atomic(ServiceHeader.published.offset, UInt64.self).load(ordering: .relaxed) &+ 1
        geometry.base.storeBytes(of: sequence, toByteOffset: chunkAt &+ Chunk.sequence.offset, as: UInt64.self)
        geometry.base.storeBytes(of: UInt64(truncatingIfNeeded: length), toByteOffset: chunkAt &+ Chunk.length.offset, as: UInt64.self)
        for s in 0..<geometry.layout.subscribers where geometry.atomic(geometry.slot(s) &+ SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.connected {
            if geometry.atomic(geometry.slot(s) &+ SubscriberSlot.historyDelivered.offset, UInt32.self).load(ordering: .acquiring) == 0 { try deliverHistory(to: s) }
            if try !enqueue(c, to: s) { blocked |= ServiceGeometry.mark(s) }
        }
        if geometry.layout.history > 0 { addToHistory(c) }
        geometry.atomic(ServiceHeader.published.offset, UInt64.self).store(sequence, ordering: .releasing)
        return sequence
    }

    /// The lock's last holder died holding it: repairs, then marks the lock consistent (out of line: the publish
    /// needs none of the service view for its common path).
    private mutating func repairAfterOwnerDied() throws(SharedMemoryError) {
        service.repair()
        try lock.markConsistent()
    }

    /// Puts chunk `c` at the end of subscriber `s`'s queue; with the queue full, drops the oldest (overwriting
    /// subscribers) or returns false (blocking ones). Called with the lock held.
    @inline(__always)
    private mutating func enqueue(_ c: Int, to s: Int) throws(SharedMemoryError) -> Bool {
        let slotAt = geometry.slot(s)  // inside the region (the layout was checked): offsets from it cannot overflow
        let depth = UInt64(geometry.base.load(fromByteOffset: slotAt &+ SubscriberSlot.depth.offset, as: UInt32.self))
        let capacity = UInt64(truncatingIfNeeded: geometry.layout.queueCapacity)
        let write = geometry.atomic(slotAt &+ SubscriberSlot.write.offset, UInt64.self)
        let read = geometry.atomic(slotAt &+ SubscriberSlot.read.offset, UInt64.self)
        let w = write.load(ordering: .relaxed)
        while true {
            let r = read.load(ordering: .acquiring)
            guard w >= r, w - r <= depth, depth >= 1, depth <= capacity else {
                throw SharedMemoryError(.foreign, "subscriber \(s)'s queue positions (read \(r), write \(w), depth \(depth)) do not add up", region: service.name)
            }
            if w - r < depth { break }
            guard try dropOldest(from: s, read: r) else { return false }
        }
        _ = geometry.holders(c).loadThenBitwiseOr(with: ServiceGeometry.mark(s), ordering: .acquiringAndReleasing)
        geometry.base.storeBytes(of: UInt32(truncatingIfNeeded: c), toByteOffset: slotAt &+ SubscriberSlot.entries.offset &+ Int(truncatingIfNeeded: w & (capacity &- 1)) &* 4, as: UInt32.self)
        write.store(w &+ 1, ordering: .sequentiallyConsistent)
        if geometry.atomic(slotAt &+ SubscriberSlot.subscriberSleeps.offset, UInt32.self).load(ordering: .sequentiallyConsistent) != 0 {
            Syscalls.futexWake(geometry.base + slotAt + SubscriberSlot.write.offset)
        }
        return true
    }

    /// Subscriber `s`'s queue is full at read position `r`: an overwriting subscriber's oldest sample is dropped
    /// (unless the subscriber took it first) and counted as lost, and the caller looks again (true); a blocking
    /// subscriber's is left (false). Out of line, as a full queue is the rare case: inlined, its address arithmetic
    /// was hoisted into every publish's loop over the subscribers.
    @inline(never)
    private func dropOldest(from s: Int, read r: UInt64) throws(SharedMemoryError) -> Bool {
        let slotAt = geometry.slot(s)
        guard geometry.base.load(fromByteOffset: slotAt &+ SubscriberSlot.policy.offset, as: UInt32.self) == 0 else { return false }
        let capacity = UInt64(truncatingIfNeeded: geometry.layout.queueCapacity)
        let oldest = Int(geometry.base.load(fromByteOffset: slotAt &+ SubscriberSlot.entries.offset &+ Int(truncatingIfNeeded: r & (capacity &- 1)) &* 4, as: UInt32.self))
        guard oldest < geometry.layout.chunkCount else { throw service.badChunk(oldest) }
        if geometry.atomic(slotAt &+ SubscriberSlot.read.offset, UInt64.self).compareExchange(expected: r, desired: r &+ 1, ordering: .acquiringAndReleasing).exchanged {
            _ = geometry.holders(oldest).loadThenBitwiseAnd(with: ~ServiceGeometry.mark(s), ordering: .acquiringAndReleasing)
            geometry.atomic(slotAt &+ SubscriberSlot.lost.offset, UInt64.self).wrappingIncrement(ordering: .relaxed)
        }
        return true
    }

    /// For a blocking subscriber whose queue was full: waits (without the lock) for room, at most ``blockTimeout``,
    /// then enqueues under the lock if the subscriber is still the same one. False if it stayed full (the sample
    /// is counted as lost for it).
    private mutating func waitAndEnqueue(_ c: Int, to s: Int) throws(SharedMemoryError) -> Bool {
        let wait = BlockedWait(service, s, blockTimeout)
        while true {
            if try enqueueUnlessStillFull(c, wait) { return true }
            guard let seen = wait.prepareToSleep() else { continue }
            let slept = MessageRing.sleep(on: wait.word, seen: seen, until: wait.deadline)
            wait.stopSleeping()
            if slept == .deadlinePassed {
                wait.countLost()
                return false
            }
        }
    }

    /// Under the lock: true if the sample needs no more waiting (it was queued, or the subscriber left, died or was
    /// replaced), false if its queue is still full.
    mutating func enqueueUnlessStillFull(_ c: Int, _ wait: BlockedWait) throws(SharedMemoryError) -> Bool {
        let service = self.service
        return try service.withLock { () throws(SharedMemoryError) -> Bool in
            guard service.atomic(wait.slotAt + SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.connected,
                  service.atomic(wait.slotAt + SubscriberSlot.generation.offset, UInt32.self).load(ordering: .acquiring) == wait.generation
            else { return true }  // it left, or died and was reclaimed: nothing to deliver
            if service.reclaimIfDead(wait.subscriber) { return true }
            return try enqueue(c, to: wait.subscriber)
        }
    }

    /// A publisher's wait for room in one blocking subscriber's queue: which subscriber (its slot's generation, so
    /// that a slot changing hands ends the wait), until when, and the futex word it sleeps on (the low half of the
    /// read position, with `publisherSleeps` raised so that the subscriber wakes it).
    struct BlockedWait {
        let service: ServiceView
        let subscriber: Int
        let slotAt: Int
        let generation: UInt32
        let deadline: Int64

        init(_ service: ServiceView, _ s: Int, _ timeout: Duration) {
            self.service = service
            subscriber = s
            slotAt = service.slot(s)
            generation = service.atomic(slotAt + SubscriberSlot.generation.offset, UInt32.self).load(ordering: .acquiring)
            deadline = MessageRing.deadline(after: timeout)!
        }

        var word: UnsafeMutableRawPointer { service.base + slotAt + SubscriberSlot.read.offset }

        /// Raises `publisherSleeps` and returns the read position's low half to sleep on; nil (flag lowered) if the
        /// subscriber read meanwhile, so that no wake is missed.
        func prepareToSleep() -> UInt32? {
            let read = service.atomic(slotAt + SubscriberSlot.read.offset, UInt64.self)
            let seen = UInt32(truncatingIfNeeded: read.load(ordering: .sequentiallyConsistent))
            service.atomic(slotAt + SubscriberSlot.publisherSleeps.offset, UInt32.self).store(1, ordering: .sequentiallyConsistent)
            guard UInt32(truncatingIfNeeded: read.load(ordering: .sequentiallyConsistent)) == seen else {
                stopSleeping()
                return nil
            }
            return seen
        }

        func stopSleeping() { service.atomic(slotAt + SubscriberSlot.publisherSleeps.offset, UInt32.self).store(0, ordering: .relaxed) }

        /// The subscriber misses the sample: one more in its `lost`.
        func countLost() { service.atomic(slotAt + SubscriberSlot.lost.offset, UInt64.self).wrappingIncrement(ordering: .relaxed) }
    }

    /// Delivers the history subscriber `s` asked for, once (lock held).
    private mutating func deliverHistory(to s: Int) throws(SharedMemoryError) {
        let slotAt = service.slot(s)
        guard service.atomic(slotAt + SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.connected,
              service.atomic(slotAt + SubscriberSlot.historyDelivered.offset, UInt32.self).load(ordering: .acquiring) == 0 else { return }
        let layout = service.layout
        let wanted = min(Int(service.base.load(fromByteOffset: slotAt + SubscriberSlot.historyWanted.offset, as: UInt32.self)), layout.history)
        let head = service.atomic(ServiceHeader.historyHead.offset, UInt64.self).load(ordering: .relaxed)
        let available = Int(min(head, UInt64(wanted)))
        for i in stride(from: available, to: 0, by: -1) {
            let c = try service.checkedChunk(service.base.load(fromByteOffset: ServiceHeader.historyEntries.offset + Int((head - UInt64(i)) % UInt64(layout.history)) * 4, as: UInt32.self))
            _ = try enqueue(c, to: s)
        }
        service.atomic(slotAt + SubscriberSlot.historyDelivered.offset, UInt32.self).store(1, ordering: .releasing)
    }

    /// Puts `c` into the history ring, evicting the oldest (lock held). The chunk is marked before it is listed and
    /// the evicted one unmarked after, so a crash leaves at worst a mark too many, which a repair removes.
    private mutating func addToHistory(_ c: Int) {
        let history = UInt64(service.layout.history)
        let head = service.atomic(ServiceHeader.historyHead.offset, UInt64.self).load(ordering: .relaxed)
        let at = ServiceHeader.historyEntries.offset + Int(head % history) * 4
        let evicted = head >= history ? Int(service.base.load(fromByteOffset: at, as: UInt32.self)) : nil
        _ = service.holders(c).loadThenBitwiseOr(with: P.historyBit, ordering: .acquiringAndReleasing)
        service.base.storeBytes(of: UInt32(c), toByteOffset: at, as: UInt32.self)
        if let evicted, evicted < service.layout.chunkCount, evicted != c {
            _ = service.holders(evicted).loadThenBitwiseAnd(with: ~P.historyBit, ordering: .acquiringAndReleasing)
        }
        service.atomic(ServiceHeader.historyHead.offset, UInt64.self).store(head &+ 1, ordering: .releasing)
    }
}

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

    let service: ServiceView
    /// The service's place and layout, for the inlined fast path.
    @usableFromInline let geometry: ServiceGeometry
    /// This subscriber's slot.
    @usableFromInline let index: Int
    /// How ``receive(timeout:_:)`` waits for a sample.
    public let strategy: WaitStrategy
    /// The event loop's descriptor, once asked for (``readinessDescriptor()``): while it exists, the flag that makes
    /// the publisher wake this subscriber stays up.
    var readiness: Readiness? = nil
    /// Whether ``close()`` gave the slot back already (the deinit then has nothing to do).
    private var closed = false

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
            let me = Creator.current
            service.atomic(slotAt + SubscriberSlot.state.offset, UInt32.self).store(P.claiming, ordering: .releasing)
            service.base.storeBytes(of: me.startTime ?? 0, toByteOffset: slotAt + SubscriberSlot.start.offset, as: UInt64.self)
            service.atomic(slotAt + SubscriberSlot.pid.offset, Int32.self).store(me.pid, ordering: .releasing)
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
            return s
        }
        self.service = service
        geometry = service.geometry
        self.index = index
        self.strategy = strategy
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
    public mutating func receive<R>(timeout: Duration? = nil, _ body: (RawSpan, SampleInfo) throws -> R) throws -> R? {
        guard let sample = try next(timeout: timeout) else { return nil }
        defer { release(sample.chunk) }
        return try body(RawSpan(_unsafeBytes: sample.bytes), SampleInfo(sequence: sample.sequence))
    }

    /// A sample taken from the queue: its chunk (held until ``release(_:)``), its bytes in place, its sequence.
    @usableFromInline
    struct TakenSample {
        @usableFromInline let chunk: Int
        @usableFromInline let bytes: UnsafeRawBufferPointer
        @usableFromInline let sequence: UInt64

        @inlinable init(chunk: Int, bytes: UnsafeRawBufferPointer, sequence: UInt64) {
            self.chunk = chunk
            self.bytes = bytes
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
        return TakenSample(chunk: c, bytes: UnsafeRawBufferPointer(start: service.base + service.chunk(c) + Chunk.payload.offset, count: length), sequence: sequence)
    }

    /// Leaves the service: the slot and everything queued in it are given back at once.
    public consuming func close() {
        Self.leave(service, index)
        closed = true
    }

    /// A subscriber that goes away without ``close()`` (an error thrown past it, a cancelled task's loop, a handle
    /// simply dropped) gives its slot and everything queued in it back at once, as `close()` does: leaving ends
    /// nothing for the publisher or the other subscribers, so a handle's lifetime may decide it. Before, the slot
    /// stayed taken for the life of the process (a one-slot service refused every later subscriber, and a dropped
    /// blocking one made every publish wait out its block timeout).
    deinit {
        if !closed { Self.leave(service, index) }
    }

    /// Gives slot `index` back, if this process holds it: marked as leaving, then reclaimed (its marks cleared, its
    /// queue emptied). A copy inherited across `fork` names the parent's slot: the child leaving (or its copy going
    /// away) must not take the parent's subscription, so a slot another process holds is left alone.
    private static func leave(_ service: ServiceView, _ index: Int) {
        try? service.withLock { () throws(SharedMemoryError) in
            let slot = service.slot(index)
            guard service.atomic(slot + SubscriberSlot.pid.offset, Int32.self).load(ordering: .acquiring) == getpid() else { return }
            service.atomic(slot + SubscriberSlot.state.offset, UInt32.self).store(P.reclaiming, ordering: .releasing)
            service.reclaimIfDead(index)
        }
    }

    /// The next chunk, taken from the queue (its mark for this subscriber stays until ``release(_:)``).
    @inline(__always)
    private func take(timeout: Duration?) throws(SharedMemoryError) -> (Int, Int, UInt64)? {
        let slotAt = service.slot(index)
        let write = service.atomic(slotAt + SubscriberSlot.write.offset, UInt64.self)
        var deadline: Int64? = nil
        var spins = Int.min  // read from the strategy once the queue is first found empty
        var lookAtPublisher = false
        while true {
            let (taken, w) = try takeNow()
            if let taken { return taken }
            // Empty: spin a while (looking at the publisher now and then), then sleep. Whether the publisher still
            // runs is read from /proc only after a sleep slice ran out or a million spins went by, so that a sample
            // arriving never pays for it.
            if spins == .min { spins = strategy.spins }
            spins -= 1
            if spins > 0, spins & 0xfff != 0 { continue }
            if spins > 0, spins & 0xfffff == 0 { lookAtPublisher = true }
            if try publisherFinished(lookingAtIt: lookAtPublisher) { return nil }
            lookAtPublisher = false
            if deadline == nil, let timeout { deadline = MessageRing.deadline(after: timeout) }
            if spins > 0 {
                if let deadline, MessageRing.monotonicNanoseconds() >= deadline {
                    throw SharedMemoryError(.timedOut, "no sample arrived within \(timeout!)", region: service.name)
                }
                continue
            }
            let sleeps = service.atomic(slotAt + SubscriberSlot.subscriberSleeps.offset, UInt32.self)
            sleeps.store(1, ordering: .sequentiallyConsistent)
            let moved = write.load(ordering: .sequentiallyConsistent) != w
            let slept: MessageRing.Sleep = moved ? .woken : MessageRing.sleep(on: service.base + slotAt + SubscriberSlot.write.offset, seen: UInt32(truncatingIfNeeded: w), until: deadline)
            if readiness == nil { sleeps.store(0, ordering: .relaxed) }
            if slept == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "no sample arrived within \(timeout!)", region: service.name)
            }
            if slept == .sliceElapsed { lookAtPublisher = true }
        }
    }

    /// The next chunk, taken from the queue as ``take(timeout:)`` does, suspending the task (not blocking a thread)
    /// while the queue is empty.
    func takeAsync(timeout: Duration?, isolation: isolated (any Actor)? = #isolation) async throws -> (Int, Int, UInt64)? {
        let slotAt = service.slot(index)
        let write = service.atomic(slotAt + SubscriberSlot.write.offset, UInt64.self)
        var deadline: Int64? = nil
        var spins = strategy.asyncSpins
        var lookAtPublisher = false
        while true {
            let (taken, w) = try takeNow()
            if let taken { return taken }
            if spins > 0 {
                spins -= 1
                csm_cpu_relax()
                continue
            }
            if try publisherFinished(lookingAtIt: lookAtPublisher) { return nil }
            if deadline == nil, let timeout { deadline = MessageRing.deadline(after: timeout) }
            let sleeps = service.atomic(slotAt + SubscriberSlot.subscriberSleeps.offset, UInt32.self)
            sleeps.store(1, ordering: .sequentiallyConsistent)
            if write.load(ordering: .sequentiallyConsistent) != w {
                if readiness == nil { sleeps.store(0, ordering: .relaxed) }
                continue
            }
            let slept = await FutexWaiters.sleep(on: service.base + slotAt + SubscriberSlot.write.offset, seen: UInt32(truncatingIfNeeded: w), until: deadline)
            if readiness == nil { sleeps.store(0, ordering: .relaxed) }
            switch slept {
            case .cancelled: throw CancellationError()
            case .deadlinePassed: throw SharedMemoryError(.timedOut, "no sample arrived within \(timeout!)", region: service.name)
            case .sliceElapsed: lookAtPublisher = true
            case .woken: lookAtPublisher = false
            }
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
