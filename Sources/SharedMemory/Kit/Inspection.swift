import Atomics
import Glibc

/// What `shm inspect` says of the structure at an offset of a region: its format, its configuration and state, who
/// is in it and what each holds. Read through the formats' declarations (Kit/Formats.swift) and each engine's own
/// header check; it only reads (the region may be mapped read-only), takes no seat and no lock, and checks every
/// offset, count and position it reads before it follows it, so a hostile header gives `problem`, never a read
/// outside the mapping or a wait.
@_spi(Tools) public struct Inspection: Sendable, Encodable {
    public enum Format: String, Sendable, Encodable, CaseIterable {
        case ring, publishSubscribe = "publish-subscribe", requestResponse = "request-response", heap, seqlock, none
    }

    public var format: Format
    public var offset: Int
    /// The format's version, "major.minor".
    public var version: String? = nil
    /// Why the structure does not add up (a reader would say `foreign`); nil if it does.
    public var problem: String? = nil
    /// The configuration and state, in the order to show them.
    public var facts = Facts()
    /// Every occupied seat and slot.
    public var participants: [Participant] = []
    /// A heap's named objects (when asked for).
    public var objects: [Object]? = nil
    /// What a person should know (a repair pending, a dead holder, a format with no magic number).
    public var notes: [String] = []

    public struct Participant: Sendable, Encodable {
        public var role: String
        public var slot: Int?
        public var pid: Int32
        public var alive: Bool
        public var state: String?
        public var facts = Facts()

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Facts.Key.self)
            try container.encode(role, forKey: .init("role"))
            try container.encode(slot, forKey: .init("slot"))
            try container.encode(pid, forKey: .init("pid"))
            try container.encode(alive, forKey: .init("alive"))
            try container.encode(state, forKey: .init("state"))
            try container.encode(facts, forKey: .init("holds"))
        }
    }

    /// Every field, `null` where there is nothing (Docs/CLI.md has the schema).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Facts.Key.self)
        try container.encode(format, forKey: .init("format"))
        try container.encode(offset, forKey: .init("offset"))
        try container.encode(version, forKey: .init("version"))
        try container.encode(problem, forKey: .init("problem"))
        try container.encode(facts, forKey: .init("facts"))
        try container.encode(participants, forKey: .init("participants"))
        try container.encode(objects, forKey: .init("objects"))
        try container.encode(notes, forKey: .init("notes"))
    }

    public struct Object: Sendable, Encodable {
        public var name: String
        public var type: String
        public var count: Int
        public var bytes: Int
        public var offset: UInt64
    }

    /// Named values in order; JSON gets them as one object.
    public struct Facts: Sendable, Encodable {
        public private(set) var items: [(key: String, value: Value)] = []
        public init() {}
        mutating func add(_ key: String, _ value: Value) { items.append((key, value)) }
        public subscript(_ key: String) -> Value? { items.first { $0.key == key }?.value }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            for (key, value) in items { try container.encode(value, forKey: Key(key)) }
        }

        public struct Key: CodingKey {
            public var stringValue: String
            public var intValue: Int? { nil }
            public init(_ string: String) { stringValue = string }
            public init?(stringValue: String) { self.stringValue = stringValue }
            public init?(intValue: Int) { nil }
        }
    }

    public enum Value: Sendable, Encodable, Equatable, CustomStringConvertible {
        case int(Int), uint(UInt64), text(String), flag(Bool)

        public var description: String {
            switch self {
            case .int(let value): String(value)
            case .uint(let value): String(value)
            case .text(let value): value
            case .flag(let value): value ? "yes" : "no"
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .int(let value): try container.encode(value)
            case .uint(let value): try container.encode(value)
            case .text(let value): try container.encode(value)
            case .flag(let value): try container.encode(value)
            }
        }
    }

    /// The format whose magic number is `word` (the structure's first 8 bytes), or `.none`.
    public static func recognise(_ word: UInt64) -> Format {
        switch word {
        case MessageRing.magic: .ring
        case PublishSubscribe.magic: .publishSubscribe
        case RequestResponse.magic: .requestResponse
        case HeapLayout.magic: .heap
        default: .none
        }
    }

    /// Inspects the structure at `offset` of the `bytes` a region maps (all of them, from the region's start).
    /// `format` forces a format that has no magic number to recognise it by (a seqlock cell). `patient: false`
    /// looks once (the fuzzers, whose regions nothing else changes).
    public static func inspect(_ bytes: UnsafeRawBufferPointer, at offset: Int, as format: Format? = nil, objects: Bool = false, patient: Bool = true) -> Inspection {
        // Nothing is locked: a structure that its processes change while it is read can look inconsistent for a
        // moment (a position read before its partner moved), so a look that does not add up is taken again; what
        // stays inconsistent for five looks is foreign.
        var report = look(bytes, at: offset, as: format, objects: objects, patient: patient)
        for _ in 0..<(patient ? 4 : 0) where report.problem != nil {
            usleep(2_000)
            report = look(bytes, at: offset, as: format, objects: objects, patient: patient)
        }
        for gone in report.participants where !gone.alive && gone.pid != 0 {
            report.notes.append("the \(gone.role)\(gone.slot.map { " in slot \($0)" } ?? "") (pid \(gone.pid)) is gone: its seat and what it holds stay until another process takes them over")
        }
        return report
    }

    private static func look(_ bytes: UnsafeRawBufferPointer, at offset: Int, as format: Format?, objects: Bool, patient: Bool) -> Inspection {
        var report = Inspection(format: format ?? .none, offset: offset)
        guard offset >= 0, offset % 8 == 0, offset <= bytes.count - 8, let start = bytes.baseAddress else {
            report.problem = "offset \(offset) is not an 8-byte aligned offset inside the region's \(bytes.count) bytes"
            return report
        }
        let base = start + offset
        let room = bytes.count - offset
        let magic = base.load(as: UInt64.self)
        if format == nil { report.format = recognise(magic) }
        do throws(SharedMemoryError) {
            switch report.format {
            case .ring: try report.ring(base, room: room)
            case .publishSubscribe: try report.service(base, room: room)
            case .requestResponse: try report.requestResponse(base, room: room)
            case .heap: try report.heap(base, room: room, objects: objects, patient: patient)
            case .seqlock: try report.seqlock(base, room: room)
            case .none: report.unknown(base, room: room, magic: magic)
            }
        } catch {
            report.problem = error.reason
        }
        return report
    }

    // MARK: Formats

    private mutating func ring(_ base: UnsafeRawPointer, room: Int) throws(SharedMemoryError) {
        try need(MessageRing.headerSize, room, "a ring's header")
        version = "\(RingHeader.major.load(base, UInt16.self)).\(RingHeader.minor.load(base, UInt16.self))"
        let capacity = try MessageRing.readCapacity(base, room: room, offset: offset, region: nil)
        let head = RingHeader.head.load(base, UInt64.self), tail = RingHeader.tail.load(base, UInt64.self)
        facts.add("capacity", .int(capacity))
        facts.add("largestMessage", .int(MessageRing.maxMessage(capacity: capacity)))
        facts.add("head", .uint(head))
        facts.add("tail", .uint(tail))
        guard head & 7 == 0, tail & 7 == 0, head &- tail <= UInt64(capacity) else {
            throw SharedMemoryError(.foreign, "its write position \(head) and read position \(tail) are not 8-byte slots at most \(capacity) bytes apart")
        }
        facts.add("queuedBytes", .int(Int(head &- tail)))
        facts.add("queuedMessages", .int(try Self.countMessages(base + MessageRing.headerSize, capacity: capacity, from: tail, to: head)))
        facts.add("finished", .flag(RingHeader.finished.load(base, UInt32.self) != 0))
        seat("sender", .sender(base),
             waiting: RingHeader.senderWaiting.load(base, UInt32.self) != 0)
        seat("receiver", .receiver(base),
             waiting: RingHeader.receiverWaiting.load(base, UInt32.self) != 0)
    }

    /// The messages between `tail` and `head`, each checked as the receiver checks it (a length within the largest
    /// message and within what was published, a wrap marker only where a record would cross the end).
    static func countMessages(_ data: UnsafeRawPointer, capacity: Int, from tail: UInt64, to head: UInt64) throws(SharedMemoryError) -> Int {
        let mask = UInt64(capacity - 1)
        var position = tail, count = 0
        while position != head {
            let at = Int(position & mask)
            let length = data.load(fromByteOffset: at, as: UInt32.self)
            if length == UInt32.max {
                position &+= UInt64(capacity - at)  // a wrap marker: the rest of the data is padding
            } else {
                let record = UInt64((Int(length) &+ 4 &+ 7) & ~7)
                guard Int(length) <= MessageRing.maxMessage(capacity: capacity), UInt64(capacity - at) >= record, head &- position >= record else {
                    throw SharedMemoryError(.foreign, "the message at position \(position) claims \(length) bytes, past what was published")
                }
                position &+= record
                count += 1
            }
            guard head &- position <= UInt64(capacity) else {
                throw SharedMemoryError(.foreign, "the ring's records run past its write position \(head)")
            }
        }
        return count
    }

    private mutating func service(_ base: UnsafeRawPointer, room: Int) throws(SharedMemoryError) {
        try need(ServiceHeader.historyEntries.offset, room, "a service's header")
        version = "\(ServiceHeader.major.load(base, UInt16.self)).\(ServiceHeader.minor.load(base, UInt16.self))"
        let layout = try PublishSubscribe.readLayout(base, room: room, offset: offset, region: nil)
        let state = ServiceHeader.publisherState.load(base, UInt32.self)
        facts.add("subscriberSlots", .int(layout.subscribers))
        facts.add("maxPayload", .int(layout.maxPayload))
        facts.add("sampleType", .text(PublishSubscribe.sampleType(at: base).map { "\($0.name) (size \($0.size), alignment \($0.alignment))" } ?? "bytes"))
        facts.add("queueDepth", .int(layout.queueDepth))
        facts.add("history", .int(layout.history))
        facts.add("chunks", .int(layout.chunkCount))
        facts.add("publisher", .text(["none yet", "publishing", "finished"][safe: Int(state)] ?? "unknown state \(state)"))
        facts.add("published", .uint(ServiceHeader.published.load(base, UInt64.self)))
        facts.add("historyHead", .uint(ServiceHeader.historyHead.load(base, UInt64.self)))
        lockHolder(base + ServiceHeader.lock.offset)
        var loans = 0, free = 0, inHistory = 0
        for c in 0..<layout.chunkCount {
            let holders = Chunk.holders.load(base + layout.chunksAt + c * layout.chunkStride, UInt64.self)
            if holders == 0 { free += 1 }
            if holders & PublishSubscribe.loanBit != 0 { loans += 1 }
            if holders & PublishSubscribe.historyBit != 0 { inHistory += 1 }
        }
        facts.add("freeChunks", .int(free))
        facts.add("chunksInHistory", .int(inHistory))
        seat("publisher", .publisher(base), waiting: false)
        if let last = participants.indices.last, participants[last].role == "publisher" { participants[last].facts.add("loans", .int(loans)) }
        for s in 0..<layout.subscribers {
            let slot = base + layout.slotsAt + s * layout.slotStride
            let state = SubscriberSlot.state.load(slot, UInt32.self)
            guard state != PublishSubscribe.free else { continue }
            var subscriber = participant("subscriber", slot: s, .subscriber(slot))
            subscriber.state = ["free", "claiming", "connected", "reclaiming"][safe: Int(state)] ?? "unknown state \(state)"
            let write = SubscriberSlot.write.load(slot, UInt64.self), read = SubscriberSlot.read.load(slot, UInt64.self)
            guard write &- read <= UInt64(layout.queueCapacity) else {
                throw SharedMemoryError(.foreign, "subscriber \(s)'s queue positions \(write) and \(read) are more than its \(layout.queueCapacity) entries apart")
            }
            let held = Int(SubscriberSlot.held.load(slot, UInt32.self))
            guard held <= layout.chunkCount else { throw SharedMemoryError(.foreign, "subscriber \(s) holds chunk \(held - 1), and the service has \(layout.chunkCount)") }
            subscriber.facts.add("policy", .text(SubscriberSlot.policy.load(slot, UInt32.self) == 0 ? "overwrite oldest" : "block publisher"))
            subscriber.facts.add("depth", .int(Int(SubscriberSlot.depth.load(slot, UInt32.self))))
            subscriber.facts.add("queued", .int(Int(write &- read)))
            subscriber.facts.add("reading", .flag(held != 0))
            subscriber.facts.add("lost", .uint(SubscriberSlot.lost.load(slot, UInt64.self)))
            subscriber.facts.add("sleeping", .flag(SubscriberSlot.subscriberSleeps.load(slot, UInt32.self) != 0))
            participants.append(subscriber)
        }
    }

    private mutating func requestResponse(_ base: UnsafeRawPointer, room: Int) throws(SharedMemoryError) {
        try need(RequestResponseHeader.slots.offset, room, "a service's header")
        version = "\(RequestResponseHeader.major.load(base, UInt16.self)).\(RequestResponseHeader.minor.load(base, UInt16.self))"
        let layout = try RequestResponse.readLayout(base, room: room, offset: offset, region: nil)
        let state = RequestResponseHeader.serverState.load(base, UInt32.self)
        facts.add("clientSlots", .int(layout.clients))
        facts.add("maxRequest", .int(layout.maxRequest))
        facts.add("maxResponse", .int(layout.maxResponse))
        facts.add("types", .text(RequestResponse.typesText(base)))
        facts.add("depth", .int(layout.depth))
        facts.add("server", .text(["none yet", "serving", "finished"][safe: Int(state)] ?? "unknown state \(state)"))
        facts.add("doorbell", .int(Int(RequestResponseHeader.doorbell.load(base, UInt32.self))))
        lockHolder(base + RequestResponseHeader.lock.offset)
        seat("server", .server(base),
             waiting: RequestResponseHeader.serverSleeps.load(base, UInt32.self) != 0)
        for s in 0..<layout.clients {
            let slot = base + RequestResponseHeader.slots.offset + s * layout.slotStride
            let state = ClientSlot.state.load(slot, UInt32.self)
            guard state != RequestResponse.free else { continue }
            var client = participant("client", slot: s, .client(slot))
            client.state = state == RequestResponse.connected ? "connected" : "unknown state \(state)"
            let requests = ClientSlot.requestWrite.load(slot, UInt64.self) &- ClientSlot.requestRead.load(slot, UInt64.self)
            let responses = ClientSlot.responseWrite.load(slot, UInt64.self) &- ClientSlot.responseRead.load(slot, UInt64.self)
            let outstanding = ClientSlot.requestWrite.load(slot, UInt64.self) &- ClientSlot.responseRead.load(slot, UInt64.self)
            guard outstanding <= UInt64(layout.depth), requests <= outstanding, responses <= outstanding else {
                throw SharedMemoryError(.foreign, "client \(s)'s queue positions are more than its \(layout.depth) cells apart")
            }
            client.facts.add("outstanding", .int(Int(outstanding)))
            client.facts.add("requestsUnread", .int(Int(requests)))
            client.facts.add("responsesUnread", .int(Int(responses)))
            participants.append(client)
        }
    }

    private mutating func seqlock(_ base: UnsafeRawPointer, room: Int) throws(SharedMemoryError) {
        try need(SeqlockLayout.value.offset, room, "a seqlock cell")
        let sequence = SeqlockLayout.sequence.load(base, UInt64.self)
        facts.add("sequence", .uint(sequence))
        facts.add("writes", .uint(sequence / 2))
        facts.add("writing", .flag(sequence & 1 != 0))
        seat("writer", .writer(base), waiting: false)
        notes.append("a seqlock cell has no magic number: what is read here is a seqlock cell only if one was made at this offset")
        if sequence & 1 != 0, let writer = participants.first, !writer.alive {
            notes.append("a write was left half done by a writer that is gone: readers wait until the next writer takes the seat")
        }
    }

    private mutating func heap(_ base: UnsafeRawPointer, room: Int, objects wanted: Bool, patient: Bool) throws(SharedMemoryError) {
        try need(HeapLayout.firstBlock, room, "a heap's header")
        version = "\(HeapHeader.major.load(base, UInt16.self)).\(HeapHeader.minor.load(base, UInt16.self))"
        guard HeapHeader.major.load(base, UInt16.self) == HeapLayout.major else {
            throw SharedMemoryError(.foreign, "the heap has format version \(version!); this library reads version \(HeapLayout.major)")
        }
        let formatWord = HeapHeader.format.load(base, UInt64.self)
        if formatWord & 0xffff_ffff != HeapLayout.ready {
            let pid = Int32(truncatingIfNeeded: formatWord >> 32)
            facts.add("state", .text("being formatted"))
            participants.append(Participant(role: "formatter", slot: nil, pid: pid, alive: Syscalls.processExists(pid), state: "formatting"))
            return
        }
        let extent = Int(truncatingIfNeeded: HeapHeader.extent.load(base, UInt64.self))
        guard extent >= HeapLayout.minimumSize, extent & 15 == 0, extent <= room else {
            throw SharedMemoryError(.foreign, "the heap's header says it has \(extent) bytes, and the region has \(room) after offset \(offset)")
        }
        let repair = HeapHeader.needsRepair.load(base, UInt32.self) != 0
        facts.add("size", .int(extent))
        facts.add("grown", .int(Int(truncatingIfNeeded: HeapHeader.generation.load(base, UInt64.self))))
        facts.add("repairPending", .flag(repair))
        lockHolder(base + HeapHeader.mutex.offset)
        if repair { notes.append("a process died holding the heap's lock: the next operation repairs the heap") }
        let bytes = HeapBytes(base: UnsafeMutableRawPointer(mutating: base), extent: extent, offset: offset)
        // No lock is taken: the block chain is walked between operations. While a process holds the lock, the
        // walk waits for a moment between operations (up to 0.2 s); a heap that never holds still is reported
        // without its use rather than called foreign.
        let lock = base + HeapHeader.mutex.offset
        var attempt = 0, same = 0
        var previous: String? = nil
        while true {
            let holder = RobustMutex.holder(at: lock)
            do throws(SharedMemoryError) {
                let statistics = try bytes.verify()
                facts.add("used", .int(statistics.allocatedBytes))
                facts.add("free", .int(statistics.freeBytes))
                facts.add("largestFree", .int(statistics.largestFreeBlock))
                facts.add("fragmentation", .text(statistics.freeBytes == 0 ? "0%" : "\(100 - statistics.largestFreeBlock * 100 / statistics.freeBytes)%"))
                facts.add("blocks", .int(statistics.allocatedBlocks))
                facts.add("freeBlocks", .int(statistics.freeBlocks))
                facts.add("namedObjects", .int(statistics.namedObjects))
                if wanted {
                    let directory = HeapDirectory(bytes: bytes)
                    objects = try directory.all().map { entry in
                        let info = HeapObjectInfo(entry, directory)
                        return Object(name: info.name, type: info.typeName, count: info.count, bytes: info.byteCount, offset: info.offset)
                    }.sorted { $0.name < $1.name }
                }
                return
            } catch {
                attempt += 1
                if repair || holder == .ownerDied || (holder != .nobody && !Self.busyHolder(lock)) {
                    notes.append("the heap's use is not shown: a repair is pending, and until it runs the heap need not add up")
                    return
                }
                // A heap that does not add up says so the same way on every look with its lock free; one that only
                // changed under the walk fails differently, or with its lock held.
                let quiet = holder == .nobody && RobustMutex.holder(at: lock) == .nobody
                same = quiet && error.reason == previous ? same + 1 : 0
                previous = error.reason
                if same >= 2 || !patient { throw error }
                guard attempt < 100 else {
                    notes.append("the heap's use is not shown: it changed on every look for 0.2 s (shm inspect takes no lock)")
                    return
                }
                usleep(2_000)
            }
        }
    }

    private mutating func unknown(_ base: UnsafeRawPointer, room: Int, magic: UInt64) {
        if magic == 0, room >= HeapHeader.extent.offset, HeapHeader.format.load(base, UInt64.self) & 0xffff_ffff == HeapLayout.formatting {
            format = .heap
            let pid = Int32(truncatingIfNeeded: HeapHeader.format.load(base, UInt64.self) >> 32)
            facts.add("state", .text("being formatted"))
            participants.append(Participant(role: "formatter", slot: nil, pid: pid, alive: Syscalls.processExists(pid), state: "formatting"))
            return
        }
        notes.append(magic == 0
            ? "no known format: the first 8 bytes are zero (nothing formatted here yet, or plain data; a seqlock cell has no magic number: --as seqlock)"
            : "no known format: the first 8 bytes are 0x\(String(magic, radix: 16)), no magic number SharedMemory writes")
    }

    // MARK: Helpers

    private func need(_ bytes: Int, _ room: Int, _ what: String) throws(SharedMemoryError) {
        guard room >= bytes else { throw SharedMemoryError(.foreign, "\(what) takes \(bytes) bytes, and the region has \(room) from offset \(offset)") }
    }

    private func participant(_ role: String, slot: Int?, _ seat: Seat) -> Participant {
        Participant(role: role, slot: slot, pid: seat.pidValue, alive: seat.isHeldByLiveProcess, state: nil)
    }

    /// Adds the process in a seat, if any.
    private mutating func seat(_ role: String, _ seat: Seat, waiting: Bool) {
        var seated = participant(role, slot: nil, seat)
        guard seated.pid != 0 else { return }
        // A vacated seat: the handle went away; its process may live on, and anyone may take the seat.
        seated.state = seat.isVacated ? "vacated" : waiting ? "waiting" : nil
        participants.append(seated)
    }

    /// The thread that holds a robust mutex (glibc keeps its id at byte 8 on x86-64 and arm64), and whether it runs.
    /// A thread that holds the lock and still runs: a walk that fails meanwhile may only have met its work.
    private static func busyHolder(_ mutex: UnsafeRawPointer) -> Bool {
        if case .thread(let tid) = RobustMutex.holder(at: mutex) { return Syscalls.processExists(tid) }
        return false
    }

    /// The lock's holder, and a note when it is gone or the lock is lost.
    private mutating func lockHolder(_ mutex: UnsafeRawPointer) {
        switch RobustMutex.holder(at: mutex) {
        case .nobody:
            facts.add("lockHeldBy", .text("nobody"))
        case .thread(let tid) where Syscalls.processExists(tid):
            facts.add("lockHeldBy", .text("thread \(tid)"))
        case .thread(let tid):
            facts.add("lockHeldBy", .text("thread \(tid) (gone)"))
            notes.append("the lock's holder, thread \(tid), is gone: the next process to take the lock repairs what it left")
        case .ownerDied:
            facts.add("lockHeldBy", .text("a thread that died"))
            notes.append("a thread died holding the lock: the next process to take the lock repairs what it left")
        case .notRecoverable:
            facts.add("lockHeldBy", .text("nobody (not recoverable)"))
            notes.append("the lock is not recoverable (its owner died and the next one unlocked it without marking it consistent): it can never be locked again")
        }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
