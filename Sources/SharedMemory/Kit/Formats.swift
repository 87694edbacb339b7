// Every in-region format's fields, declared once (see FormatField). The ring's and the publish/subscribe service's
// words are Docs/WireFormat.md's tables, word for word; Interop/c implements those two.

/// The message ring's 256-byte header (Docs/WireFormat.md, "The message ring", "Header").
@usableFromInline package enum RingHeader: Int, FormatField {
    case magic = 0, major = 8, minor = 10, headerSize = 12, capacity = 16
    case senderPID = 32, senderVacated = 36, senderStart = 40, receiverPID = 48, receiverVacated = 52, receiverStart = 56
    case head = 64, finished = 72, senderToken = 80
    case tail = 128, receiverToken = 136
    case dataSignal = 192, receiverWaiting = 196
    case spaceSignal = 224, senderWaiting = 228

    @usableFromInline package static var part: String { "The message ring / Header" }
    @usableFromInline package static var cPrefix: String? { "SMRING_OFF_" }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .magic: FieldDeclaration(8, "formatter", "release, last")
        case .major, .minor: FieldDeclaration(2, "formatter", "plain (before `magic`)")
        case .headerSize: FieldDeclaration(4, "formatter", "plain (before `magic`)")
        case .capacity: FieldDeclaration(8, "formatter", "plain (before `magic`)")
        case .senderPID: FieldDeclaration(4, "sender", "compare-and-swap, acquire-release")
        case .senderStart: FieldDeclaration(8, "sender", "plain, before the `senderPID` CAS")
        case .senderVacated: FieldDeclaration(4, "sender", "release, its pid as its handle goes (a claim: 0, relaxed, before the CAS)")
        case .receiverPID: FieldDeclaration(4, "receiver", "compare-and-swap, acquire-release")
        case .receiverVacated: FieldDeclaration(4, "receiver", "release, its pid as its handle goes (a claim: 0, relaxed, before the CAS)")
        case .receiverStart: FieldDeclaration(8, "receiver", "plain, before the `receiverPID` CAS")
        case .head, .senderToken: FieldDeclaration(8, "sender", "release")
        case .finished: FieldDeclaration(4, "sender", "release")
        case .tail, .receiverToken: FieldDeclaration(8, "receiver", "release")
        case .dataSignal: FieldDeclaration(4, "sender", "increment, release; then `FUTEX_WAKE`")
        case .receiverWaiting: FieldDeclaration(4, "receiver", "sequentially consistent")
        case .spaceSignal: FieldDeclaration(4, "receiver", "increment, release; then `FUTEX_WAKE`")
        case .senderWaiting: FieldDeclaration(4, "sender", "sequentially consistent")
        }
    }
}

/// The publish/subscribe service's header (Docs/WireFormat.md, "Service header").
@usableFromInline package enum ServiceHeader: Int, FormatField {
    case magic = 0, major = 8, minor = 10, subscribers = 12, maxPayload = 16, queueDepth = 24, history = 28
    case chunkCount = 32, publisherState = 36, published = 40, publisherPID = 48, publisherVacated = 52, publisherStart = 56
    case historyHead = 64, sampleType = 72, sampleSize = 80, sampleAlignment = 84, sampleTypeName = 88, lock = 128, publishEpoch = 176
    case epochWaiting = 184, connections = 188, historyEntries = 192

    @usableFromInline package static var part: String { "The publish/subscribe service / Service header" }
    @usableFromInline package static var cPrefix: String? { "SMPS_OFF_" }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .magic: FieldDeclaration(8, "formatter", "release, last")
        case .major, .minor: FieldDeclaration(2, "formatter", "plain (before `magic`)")
        case .subscribers, .queueDepth, .history, .chunkCount: FieldDeclaration(4, "formatter", "plain (before `magic`)")
        case .maxPayload, .sampleType: FieldDeclaration(8, "formatter", "plain (before `magic`)")
        case .sampleSize, .sampleAlignment: FieldDeclaration(4, "formatter", "plain (before `magic`)")
        case .sampleTypeName: FieldDeclaration(1, "formatter", "plain (before `magic`)", extent: "40")
        case .publisherState: FieldDeclaration(4, "publisher", "release")
        case .published, .historyHead: FieldDeclaration(8, "publisher, in a publish", "release")
        case .publisherPID: FieldDeclaration(4, "publisher, lock held", "release")
        case .publisherVacated: FieldDeclaration(4, "publisher", "release, its pid as its handle goes (a claim: 0, relaxed, before `publisherPID`)")
        case .publisherStart: FieldDeclaration(8, "publisher, lock held", "plain, before `publisherPID`")
        case .lock: FieldDeclaration(40, "formatter", "`pthread_mutex_init`", extent: "≤ 48")
        case .publishEpoch: FieldDeclaration(8, "publisher; one taking a dead one's seat, lock held", "sequentially consistent (odd: in a publish; even: out of it)")
        case .epochWaiting: FieldDeclaration(4, "a reclaimer, lock held", "sequentially consistent (1), relaxed (0)")
        case .connections: FieldDeclaration(4, "connecting subscriber, a reclaimer; lock held", "increment (wrapping), sequentially consistent, after `state`")
        case .historyEntries: FieldDeclaration(4, "publisher, in a publish", "plain", extent: "4 × H")
        }
    }
}

/// A subscriber's slot of a publish/subscribe service (Docs/WireFormat.md, "Subscriber slot").
@usableFromInline package enum SubscriberSlot: Int, FormatField {
    // Three lines, each written by one side for each sample (format 2.0): the first only at connect and close, the
    // second by the subscriber (`read`, `held`), the third by the publisher (`write` with the first 13 entries).
    case state = 0, pid = 4, start = 8, generation = 20, policy = 24, depth = 28, lost = 32
    case historyWanted = 40, historyDelivered = 44, read = 64, held = 72, publisherSleeps = 76
    case write = 128, subscriberSleeps = 136, entries = 140

    @usableFromInline package static var part: String { "The publish/subscribe service / Subscriber slot" }
    @usableFromInline package static var cPrefix: String? { "SMPS_SLOT_" }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .state: FieldDeclaration(4, "connecting subscriber, closing one, a reclaimer; lock held", "release (3: sequentially consistent)")
        case .pid: FieldDeclaration(4, "connecting subscriber (a reclaimer zeroes it)", "release")
        case .start: FieldDeclaration(8, "connecting subscriber", "plain, before `pid`")
        case .generation: FieldDeclaration(4, "connecting subscriber, lock held", "relaxed increment")
        case .policy, .depth, .historyWanted: FieldDeclaration(4, "connecting subscriber, lock held", "plain, before `state` = 2")
        case .lost: FieldDeclaration(8, "publisher (relaxed increment); connecting subscriber zeroes it", "relaxed")
        case .historyDelivered: FieldDeclaration(4, "connecting subscriber (relaxed: 1 if it wants none, else 0); publisher", "release")
        case .held: FieldDeclaration(4, "subscriber", "release")
        case .write: FieldDeclaration(8, "publisher, in a publish; a reclaimer, lock held", "sequentially consistent")
        case .subscriberSleeps: FieldDeclaration(4, "subscriber", "sequentially consistent (1), relaxed (0)")
        case .read: FieldDeclaration(8, "subscriber; publisher dropping the oldest", "compare-and-swap, acquire-release")
        case .publisherSleeps: FieldDeclaration(4, "publisher", "sequentially consistent (1), relaxed (0)")
        case .entries: FieldDeclaration(4, "publisher, in a publish", "plain, before `write`", extent: "4 × `queueCapacity`")
        }
    }
}

/// A chunk of a publish/subscribe service: one sample (Docs/WireFormat.md, "Chunk").
@usableFromInline package enum Chunk: Int, FormatField {
    case holders = 0, sequence = 8, length = 16, payload = 64

    @usableFromInline package static var part: String { "The publish/subscribe service / Chunk" }
    @usableFromInline package static var cPrefix: String? { "SMPS_CHUNK_" }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .holders: FieldDeclaration(8, "everyone", "compare-and-swap, fetch-or, fetch-and; acquire-release")
        case .sequence, .length: FieldDeclaration(8, "publisher, in a publish", "plain, before the queues' `write`")
        case .payload: FieldDeclaration(1, "publisher, while it holds the loan", "plain, before the queues' `write`", extent: "`maxPayload`")
        }
    }
}

/// The request/response service's header (Docs/PublishSubscribe.md, "Request/response").
@usableFromInline package enum RequestResponseHeader: Int, FormatField {
    case magic = 0, major = 8, minor = 10, clients = 12, maxRequest = 16, maxResponse = 24, depth = 32
    case serverState = 36, serverPID = 40, serverVacated = 44, serverStart = 48, doorbell = 64, serverSleeps = 68
    case requestType = 72, requestSize = 80, requestAlignment = 84, responseType = 88, responseSize = 96, responseAlignment = 100
    case lock = 128, slots = 192

    @usableFromInline package static var part: String { "Request/response header" }
    @usableFromInline package static var cPrefix: String? { nil }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .magic: FieldDeclaration(8, "formatter", "release, last")
        case .major, .minor: FieldDeclaration(2, "formatter", "plain (before `magic`)")
        case .clients, .depth: FieldDeclaration(4, "formatter", "plain (before `magic`)")
        case .maxRequest, .maxResponse, .requestType, .responseType: FieldDeclaration(8, "formatter", "plain (before `magic`)")
        case .requestSize, .requestAlignment, .responseSize, .responseAlignment: FieldDeclaration(4, "formatter", "plain (before `magic`)")
        case .serverState: FieldDeclaration(4, "server", "release")
        case .serverPID: FieldDeclaration(4, "server, lock held", "release")
        case .serverVacated: FieldDeclaration(4, "server", "release, its pid as its handle goes (a claim: 0, relaxed, before `serverPID`)")
        case .serverStart: FieldDeclaration(8, "server, lock held", "plain, before `serverPID`")
        case .doorbell: FieldDeclaration(4, "clients", "increment, sequentially consistent; then `FUTEX_WAKE`")
        case .serverSleeps: FieldDeclaration(4, "server", "sequentially consistent (1), relaxed (0)")
        case .lock: FieldDeclaration(40, "formatter", "`pthread_mutex_init`", extent: "≤ 64")
        case .slots: FieldDeclaration(1, "—", "—", extent: "clients × slot stride")
        }
    }
}

/// A client's slot of a request/response service: its two queues' positions, then `depth` request cells and
/// `depth` response cells.
@usableFromInline package enum ClientSlot: Int, FormatField {
    case state = 0, pid = 4, start = 8, generation = 16, requestWrite = 64, requestRead = 128
    case responseWrite = 192, clientSleeps = 200, responseRead = 256, entries = 320

    @usableFromInline package static var part: String { "Request/response client slot" }
    @usableFromInline package static var cPrefix: String? { nil }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .state: FieldDeclaration(4, "connecting client, closing one, a reclaimer; lock held", "release")
        case .pid: FieldDeclaration(4, "connecting client", "release")
        case .start: FieldDeclaration(8, "connecting client", "plain, before `pid`")
        case .generation: FieldDeclaration(4, "connecting client, lock held", "relaxed increment")
        case .requestWrite, .responseRead: FieldDeclaration(8, "client", "release")
        case .requestRead, .responseWrite: FieldDeclaration(8, "server", "release")
        case .clientSleeps: FieldDeclaration(4, "client", "sequentially consistent (1), relaxed (0)")
        case .entries: FieldDeclaration(1, "client (requests), server (responses)", "plain, before the write position", extent: "2 × depth cells")
        }
    }
}

/// One request or response cell: the correlation number, the length, the bytes.
@usableFromInline package enum RequestCell: Int, FormatField {
    case correlation = 0, length = 8, bytes = 16

    @usableFromInline package static var part: String { "Request/response cell" }
    @usableFromInline package static var cPrefix: String? { nil }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .correlation, .length: FieldDeclaration(8, "the queue's writer", "plain, before the write position")
        case .bytes: FieldDeclaration(1, "the queue's writer", "plain, before the write position", extent: "the largest request or response")
        }
    }
}

/// A seqlock cell: the sequence, the writer's seat, the value.
@usableFromInline package enum SeqlockLayout: Int, FormatField {
    case sequence = 0, writerPID = 8, writerVacated = 12, writerStart = 16, value = 24

    @usableFromInline package static var part: String { "Seqlock cell" }
    @usableFromInline package static var cPrefix: String? { nil }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .sequence: FieldDeclaration(8, "writer", "release (odd, then even)")
        case .writerPID: FieldDeclaration(4, "writer", "compare-and-swap, acquire-release")
        case .writerVacated: FieldDeclaration(4, "writer", "release, its pid as its handle goes (a claim: 0, relaxed, before the CAS)")
        case .writerStart: FieldDeclaration(8, "writer", "plain, before `writerPID`")
        case .value: FieldDeclaration(1, "writer", "plain, between the sequence's odd and even stores", extent: "the value's size, rounded up to 8")
        }
    }
}

/// The heap's header (its fields marked derived are rebuilt from the block chain by a repair).
@usableFromInline package enum HeapHeader: Int, FormatField {
    case magic = 0, major = 8, minor = 10, needsRepair = 12, format = 16, extent = 24, generation = 32
    case firstLevelMap = 40, namedCount = 48, freeBytes = 56, mutex = 64, directory = 112, directoryCount = 120
    case secondLevelMaps = 128, heads = 272, buckets = 4624

    @usableFromInline package static var part: String { "Heap header" }
    @usableFromInline package static var cPrefix: String? { nil }
    @usableFromInline package var declaration: FieldDeclaration {
        switch self {
        case .magic: FieldDeclaration(8, "formatter", "release, last")
        case .major, .minor: FieldDeclaration(2, "formatter", "plain (before `magic`)")
        case .needsRepair: FieldDeclaration(4, "a locker that found the owner dead; the repair", "lock held")
        case .format: FieldDeclaration(8, "formatter", "compare-and-swap: state low, pid high")
        case .extent, .generation: FieldDeclaration(8, "whoever grows the heap", "lock held")
        case .firstLevelMap, .namedCount, .freeBytes, .directory, .directoryCount: FieldDeclaration(8, "allocator (derived)", "lock held")
        case .mutex: FieldDeclaration(40, "formatter", "`pthread_mutex_init`", extent: "≤ 48")
        case .secondLevelMaps: FieldDeclaration(4, "allocator (derived)", "lock held", extent: "4 × 34")
        case .heads: FieldDeclaration(8, "allocator (derived)", "lock held", extent: "8 × 34 × 16")
        case .buckets: FieldDeclaration(8, "allocator (derived)", "lock held", extent: "8 × 512")
        }
    }
}
