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
    // 3: `connections`, moved on by every connect and reclaim, so that a publish reads the slots only when it moved
    // (2.x: every publish read each slot's state, generation and history flag); 2: the subscriber slot's lines, one
    // writer each (1.x: `held` beside what every publish reads).
    static let major: UInt16 = 3
    static let minor: UInt16 = 0
    /// The most subscribers a service can have (one bit each in a chunk's holders).
    public static let maxSubscribers = 62
    @available(*, deprecated, renamed: "maxSubscribers")
    public static var maximumSubscribers: Int { maxSubscribers }

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
            if subscribers < 1 || subscribers > PublishSubscribe.maxSubscribers { return "1 to \(PublishSubscribe.maxSubscribers) subscribers" }
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
        try format(region, at: offset, maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history, sampleType: nil)
    }

    /// ``format(_:at:maxPayload:subscribers:queueDepth:history:)`` for a service whose samples are `sampleType`'s
    /// values (its identity recorded in the header), or bytes (nil).
    static func format(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int, maxPayload: Int, subscribers: Int,
        queueDepth: Int, history: Int, sampleType: TypeIdentity?
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
        if let sampleType {
            ServiceHeader.sampleType.store(sampleType.hash, base)
            ServiceHeader.sampleSize.store(UInt32(sampleType.size), base)
            ServiceHeader.sampleAlignment.store(UInt32(sampleType.alignment), base)
            let name = sampleType.name.count <= 40 ? sampleType.name : sampleType.name.prefix(37) + Array("…".utf8)
            name.withUnsafeBytes { (base + ServiceHeader.sampleTypeName.offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
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
    /// A publish begins: the publish epoch made odd, sequentially consistent, before the publish reads any slot's
    /// state (so a reclaimer that marked a slot either is seen, or sees the publish running and waits for it). No
    /// lock: the connections' lock is for connects, closes, reclaims and repairs.
    @inline(__always) func enterPublish() {
        _ = atomic(ServiceHeader.publishEpoch.offset, UInt64.self).loadThenWrappingIncrement(ordering: .sequentiallyConsistent)
    }

    /// A publish ends: the epoch even again, and a reclaimer waiting for it woken.
    @inline(__always) func leavePublish() {
        _ = atomic(ServiceHeader.publishEpoch.offset, UInt64.self).loadThenWrappingIncrement(ordering: .sequentiallyConsistent)
        if atomic(ServiceHeader.epochWaiting.offset, UInt32.self).load(ordering: .sequentiallyConsistent) != 0 {
            Syscalls.futexWake(base + ServiceHeader.publishEpoch.offset)
        }
    }

    /// Chunk `c`'s marks in `bits` taken back: those of subscribers it was not queued for, or the loan's.
    func unmark(_ c: Int, _ bits: UInt64) { _ = holders(c).loadThenBitwiseAnd(with: ~bits, ordering: .acquiringAndReleasing) }

    /// The publisher's loan of chunk `c` ends (its bit 62 cleared): published, or given back.
    func endLoan(_ c: Int) { unmark(c, PublishSubscribe.loanBit) }

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
        return .sample(Subscriber.TakenSample(chunk: c, start: base + (chunkAt &+ Chunk.payload.offset), count: Int(truncatingIfNeeded: length),
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
        let deadline = Deadline(after: timeout).end
        try Handshake.expect(P.magic, at: base + ServiceHeader.magic.offset, until: deadline, what: "publish/subscribe service", offset: offset, region: region.name)
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

    /// The publisher's seat (see ``Seat``).
    var publisherSeat: Seat { .publisher(base) }
    /// The process that publishes, if any.
    var publisher: Creator? { publisherSeat.occupant }

    /// Subscriber slot `s`'s seat.
    func subscriberSeat(_ s: Int) -> Seat { .subscriber(base + slot(s)) }
    /// The process in subscriber slot `s`, if any.
    func subscriber(_ s: Int) -> Creator? { subscriberSeat(s).occupant }

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

    /// Takes the connections' lock; after a holder's death, repairs first.
    private func acquireLock() throws(SharedMemoryError) {
        if try lock.lock() == .ownerDied {
            repair()
            try lock.markConsistent()
        }
    }

    func releaseLock() { try? lock.unlock() }

    /// A slot's state moved to or from connected (lock held, after its `state` was stored): `connections` moves on,
    /// sequentially consistent, so that the next publish looks at the slots again (see
    /// ``Publisher/connectedSubscribers(_:)``). A reclaimer moves it before it reads the publish epoch: a publish
    /// that entered its epoch after that read sees the new count.
    func connectionsChanged() {
        atomic(ServiceHeader.connections.offset, UInt32.self).wrappingIncrement(ordering: .sequentiallyConsistent)
    }

    /// The publish epoch: odd while a publish runs (Docs/WireFormat.md, "The lock, the publish epoch, and repair").
    var publishEpoch: UnsafeAtomic<UInt64> { atomic(ServiceHeader.publishEpoch.offset, UInt64.self) }

    /// After a slot was marked as leaving (sequentially consistent): waits until no publish that may have seen it
    /// connected is still running. A publish makes the epoch odd (sequentially consistent) before it reads the slots'
    /// states, so either it sees the mark, or this sees it running; then this waits for the epoch to move on,
    /// spinning a while and then asleep on its low half, with `epochWaiting` raised so that the publish wakes it. A
    /// publisher that died in its publish writes nothing more: its death ends the wait (looked at after each quiet
    /// slice). Lock held, so one process at a time waits.
    func waitForPublishesInFlight() {
        let epoch = publishEpoch
        let seen = epoch.load(ordering: .sequentiallyConsistent)
        guard seen & 1 == 1 else { return }
        let waiting = atomic(ServiceHeader.epochWaiting.offset, UInt32.self)
        var wait = Wait(.default, timeout: nil)
        while epoch.load(ordering: .acquiring) == seen {
            if wait.spin() { continue }
            if wait.lookAtPeer, !(publisher?.isAlive ?? false) { return }
            _ = try? wait.sleep(on: base + ServiceHeader.publishEpoch.offset, raise: { () -> UInt32? in
                waiting.store(1, ordering: .sequentiallyConsistent)
                guard epoch.load(ordering: .sequentiallyConsistent) == seen else {
                    waiting.store(0, ordering: .relaxed)
                    return nil
                }
                return UInt32(truncatingIfNeeded: seen)
            }, lower: { waiting.store(0, ordering: .relaxed) })
        }
    }

    /// After a process died holding the lock (in the middle of a connect, a close, a reclaim, a takeover): reclaims
    /// every subscriber that is dead, and if the publisher is dead, recovers from it. (A live publisher's publishes
    /// take no lock and are not repaired: one may be running now.)
    func repair() {
        for s in 0..<layout.subscribers { reclaimIfDead(s) }
        if !(publisher?.isAlive ?? false) { recoverFromDeadPublisher() }
    }

    /// A dead publisher's loan goes back, each chunk is marked as in the history exactly when the history lists it,
    /// and a chunk it marked for a subscriber without queueing it (the one thing a publish cut short leaves behind)
    /// is given back: a live subscriber's mark counts only on a chunk in its queue or the one it is reading. Its
    /// publish epoch, odd if it died in a publish, is made even. Lock held, and no publisher runs.
    func recoverFromDeadPublisher() {
        let epoch = publishEpoch
        let e = epoch.load(ordering: .acquiring)
        if e & 1 == 1 { epoch.store(e &+ 1, ordering: .sequentiallyConsistent) }
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
    /// takes back every chunk it held or had queued and frees the slot. Called with the lock held, never from inside
    /// a publish: once the slot is marked, it waits for the publishes that may have seen it connected (see
    /// ``waitForPublishesInFlight()``), so none still writes into the queue it empties. Whether it reclaimed.
    @discardableResult
    func reclaimIfDead(_ s: Int) -> Bool {
        let slotAt = slot(s)
        let state = atomic(slotAt + SubscriberSlot.state.offset, UInt32.self)
        let current = state.load(ordering: .acquiring)
        guard current != P.free else { return false }
        if current != P.reclaiming, subscriberSeat(s).isHeldByLiveProcess { return false }
        state.store(P.reclaiming, ordering: .sequentiallyConsistent)
        connectionsChanged()
        waitForPublishesInFlight()
        let bit = ServiceGeometry.mark(s)
        for c in 0..<layout.chunkCount where holders(c).load(ordering: .relaxed) & bit != 0 {
            _ = holders(c).loadThenBitwiseAnd(with: ~bit, ordering: .acquiringAndReleasing)
        }
        atomic(slotAt + SubscriberSlot.write.offset, UInt64.self).store(0, ordering: .relaxed)
        atomic(slotAt + SubscriberSlot.read.offset, UInt64.self).store(0, ordering: .relaxed)
        atomic(slotAt + SubscriberSlot.held.offset, UInt32.self).store(0, ordering: .relaxed)
        subscriberSeat(s).clear()
        state.store(P.free, ordering: .releasing)
        // A publisher waiting for room in this queue looks again.
        Syscalls.futexWake(base + slotAt + SubscriberSlot.read.offset)
        return true
    }
}
