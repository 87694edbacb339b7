// The control: the same calls used as the API means them compile, so a failure above is the misuse's, not the
// harness's.
// expect: compiles
import SharedMemory

func control(_ name: RegionName) throws -> Int {
    var region = try SharedMemory.create(name, size: 4096)
    let first = try region.withBytes { (bytes: RawSpan) throws(SharedMemoryError) in bytes.unsafeLoad(as: UInt8.self) }
    try region.withMutableBytes { (bytes: inout MutableRawSpan) throws(SharedMemoryError) in bytes.storeBytes(of: first, as: UInt8.self) }
    try region.resize(to: 8192)
    _ = try region.remap()
    let size = region.size
    try region.detach()
    return size
}

func controlRingAndObjects(_ region: borrowing AnyRegion, _ sender: borrowing RingSender, _ receiver: borrowing RingReceiver) throws -> String {
    try sender.send(count: 8) { (room: inout OutputRawSpan) in room.append(1) }
    let count = try receiver.receive { (bytes: RawSpan) in bytes.byteCount }
    let mutex = try ProcessMutex.existing(in: region, at: 0)
    try mutex.withLock { _ = count }
    let counter = try region.atomic(UInt64.self, at: 64)
    counter.wrappingIncrement(ordering: .relaxed)
    switch region {
    case .systemV: return "segment"
    case .posix: return "object"
    case .file: return "file"
    case .anonymous: return "anonymous"
    case .memfd: return "memfd"
    }
}

func controlHeap(_ name: RegionName) throws -> UInt64 {
    var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
    let values = try heap.allocate(UInt64.self, count: 4, zeroed: true)
    try heap.withMutableSpan(values) { (span: inout MutableSpan<UInt64>) in span[0] = 1 }
    let first = try heap.withSpan(values) { (span: Span<UInt64>) in span[0] }
    _ = try heap.allocate(byteCount: 8)
    var region = heap.intoRegion()
    try region.resize(to: 1 << 20)
    return first
}

func controlPublishSubscribe(_ region: borrowing AnyRegion) throws -> Int? {
    try PublishSubscribe.format(region, maxPayload: 64, subscribers: 2, queueDepth: 4)
    var publisher = try Publisher(region)
    var subscriber = try Subscriber(region)
    try publisher.publish(count: 8) { (output: inout OutputRawSpan) in output.append(1 as UInt8) }
    let count = try subscriber.receive { (bytes: RawSpan, _: SampleInfo) in bytes.byteCount }
    publisher.finish()
    subscriber.close()
    return count
}

func controlAsync(_ region: borrowing AnyRegion, _ receiver: borrowing RingReceiver, _ mutex: ProcessMutex) async throws -> Int {
    let count = try await receiver.receiveAsync { (bytes: RawSpan) in bytes.byteCount } ?? 0
    return try await mutex.withLockAsync { count + 1 }
}

/// Handles in a class's `let`s, used from its methods: sends and receives do not mutate them.
final class ControlHandles {
    let publisher: Publisher
    let subscriber: Subscriber
    let client: Client
    init(_ service: borrowing AnyRegion, _ calls: borrowing AnyRegion) throws {
        subscriber = try Subscriber(service)
        publisher = try Publisher(service)
        client = try Client(calls)
    }
    func roundTrip() throws -> Int? {
        _ = try publisher.publish([1] as [UInt8])
        _ = try client.send([2] as [UInt8])
        return try subscriber.receive { (bytes: RawSpan, _: SampleInfo) in bytes.byteCount }
    }
}
