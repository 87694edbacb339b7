import Glibc
import SharedMemory

// Harness OPERATION N: runs the operation N times (for callgrind: instructions per operation =
// (Ir(N2) - Ir(N1)) / (N2 - N1)).
//
// The loops are global functions, not top-level code: top-level code runs on the main actor, so every closure it
// hands the library (a zero-copy receive's body) would check on each call that it still runs there
// (swift_task_isCurrentExecutor, about 320 instructions a message), which is the harness's cost, not the library's.

func getset(_ name: RegionName, _ n: Int) throws {
    let region = try SharedMemory.create(name, size: 4096)
    var sum: UInt64 = 0
    for i in 0..<n {
        try region.set(UInt64(i), at: 64)
        sum &+= try region.get(UInt64.self, at: 64)
    }
    try region.remove()
    if sum == 42 { print(sum) }
}

// The same on a concrete backend type (AnonymousRegion), not the factory's AnyRegion.
func getsetConcrete(_ n: Int) throws {
    let region = try AnonymousRegion.create(size: 4096)
    var sum: UInt64 = 0
    for i in 0..<n {
        try region.set(UInt64(i), at: 64)
        sum &+= try region.get(UInt64.self, at: 64)
    }
    if sum == 42 { print(sum) }
}

// A relaxed increment of an atomic in a region (`region.atomic(_:at:)`, made once).
func atomicIncrement(_ n: Int) throws {
    let region = try SharedMemory.create(.anonymous, size: 4096)
    let counter = try region.atomic(UInt64.self, at: 64)
    for _ in 0..<n { counter.wrappingIncrement(ordering: .relaxed) }
    if counter.load(ordering: .relaxed) == 42 { print(42) }
}

// The same through the existential: a region whose type is known only at run time.
func getsetAny(_ name: RegionName, _ n: Int) throws {
    let region: any SharedRegion & ~Copyable = try SharedMemory.create(name, size: 4096)
    var sum: UInt64 = 0
    for i in 0..<n {
        try region.set(UInt64(i), at: 64)
        sum &+= try region.get(UInt64.self, at: 64)
    }
    try region.remove()
    if sum == 42 { print(sum) }
}

/// A region holding a formatted ring of 64 KiB. (Each case makes its sides itself, as locals: a side reached through
/// a closure's parameter cost 3 to 4 instructions a message more, the harness's cost and not the library's.)
func ringRegion(_ name: RegionName) throws -> AnyRegion {
    let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 16))
    try MessageRing.format(region, capacity: 1 << 16)
    return region
}

/// A 64-byte message sent as a copy and received in place.
func ring(_ name: RegionName, _ n: Int) throws {
    let message = [UInt8](repeating: 7, count: 64)
    let region = try ringRegion(name)
    let sender = try RingSender(try SharedMemory.open(name)), receiver = try RingReceiver(try SharedMemory.open(name))
    var total = 0
    for _ in 0..<n {
        try message.withUnsafeBytes { try sender.send($0) }
        total &+= try receiver.receive { $0.byteCount } ?? 0
    }
    sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

// The ring again, each message received as an array of its own (`receive()`: an allocation and a free a message).
func ringArray(_ name: RegionName, _ n: Int) throws {
    let message = [UInt8](repeating: 7, count: 64)
    let region = try ringRegion(name)
    let sender = try RingSender(try SharedMemory.open(name)), receiver = try RingReceiver(try SharedMemory.open(name))
    var total = 0
    for _ in 0..<n {
        try message.withUnsafeBytes { try sender.send($0) }
        total &+= try receiver.receive()?.count ?? 0
    }
    sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

// The ring again, each message received as a copy into a buffer of the receiver's.
func ringCopy(_ name: RegionName, _ n: Int) throws {
    let message = [UInt8](repeating: 7, count: 64)
    let region = try ringRegion(name)
    let sender = try RingSender(try SharedMemory.open(name)), receiver = try RingReceiver(try SharedMemory.open(name))
    var storage = [UInt8](repeating: 0, count: receiver.maxMessage)
    var span = storage.mutableSpan
    var bytes = span.mutableBytes
    var total = 0
    for _ in 0..<n {
        try message.withUnsafeBytes { try sender.send($0) }
        total &+= try receiver.receive(into: &bytes) ?? 0
    }
    sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

// The ring's safe zero-copy forms both ways: the message written in place through an `OutputRawSpan`, read in
// place through a `RawSpan` (#32's "spans both ways" row).
func ringSpan(_ name: RegionName, _ n: Int) throws {
    let region = try ringRegion(name)
    let sender = try RingSender(try SharedMemory.open(name)), receiver = try RingReceiver(try SharedMemory.open(name))
    var total = 0
    for i in 0..<n {
        try sender.send(count: 64) { output in
            for _ in 0..<8 { output.append(UInt64(truncatingIfNeeded: i), as: UInt64.self) }
        }
        total &+= Int(truncatingIfNeeded: try receiver.receive { $0.unsafeLoad(fromByteOffset: 56, as: UInt64.self) } ?? 0)
    }
    sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

// The same through the pointer forms, `sendUnsafe(count:)` and `receiveUnsafe`.
func ringUnsafe(_ name: RegionName, _ n: Int) throws {
    let region = try ringRegion(name)
    let sender = try RingSender(try SharedMemory.open(name)), receiver = try RingReceiver(try SharedMemory.open(name))
    var total = 0
    for i in 0..<n {
        try sender.sendUnsafe(count: 64) { slot in
            for word in 0..<8 { slot.storeBytes(of: UInt64(truncatingIfNeeded: i), toByteOffset: word * 8, as: UInt64.self) }
        }
        total &+= try receiver.receiveUnsafe { Int(truncatingIfNeeded: $0.load(fromByteOffset: 56, as: UInt64.self)) } ?? 0
    }
    sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

/// The ring's two sides kept in a struct rather than in locals (#32: within 5% of `ring`).
struct RingPair: ~Copyable {
    let sender: RingSender
    let receiver: RingReceiver
}

func ringStruct(_ name: RegionName, _ n: Int) throws {
    let message = [UInt8](repeating: 7, count: 64)
    let region = try ringRegion(name)
    let pair = RingPair(sender: try RingSender(try SharedMemory.open(name)), receiver: try RingReceiver(try SharedMemory.open(name)))
    var total = 0
    for _ in 0..<n {
        try message.withUnsafeBytes { try pair.sender.send($0) }
        total &+= try pair.receiver.receive { $0.byteCount } ?? 0
    }
    pair.sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

/// The same sides held by a class (an actor's or a server's state).
final class RingHolder {
    let sender: RingSender
    let receiver: RingReceiver
    init(sender: consuming RingSender, receiver: consuming RingReceiver) {
        self.sender = sender
        self.receiver = receiver
    }
}

func ringClass(_ name: RegionName, _ n: Int) throws {
    let message = [UInt8](repeating: 7, count: 64)
    let region = try ringRegion(name)
    let holder = RingHolder(sender: try RingSender(try SharedMemory.open(name)), receiver: try RingReceiver(try SharedMemory.open(name)))
    var total = 0
    for _ in 0..<n {
        try message.withUnsafeBytes { try holder.sender.send($0) }
        total &+= try holder.receiver.receive { $0.byteCount } ?? 0
    }
    holder.sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

func pubsub(_ name: RegionName, _ n: Int) throws {
    let region = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 64, subscribers: 1, queueDepth: 8))
    try PublishSubscribe.format(region, maxPayload: 64, subscribers: 1, queueDepth: 8)
    let subscriber = try Subscriber(try SharedMemory.open(name))
    let publisher = try Publisher(try SharedMemory.open(name))
    let message = [UInt8](repeating: 7, count: 64)
    var total = 0
    for _ in 0..<n {
        try message.withUnsafeBytes { _ = try publisher.publish($0) }
        total &+= try subscriber.receive { bytes, _ in bytes.byteCount } ?? 0
    }
    subscriber.close()
    publisher.finish()
    try region.remove()
    if total == 42 { print(total) }
}

/// A publish and a receive by each of `count` subscribers (1 or 4), kept in locals (fanout-1, fanout-4) or in an
/// `InlineArray` (fanout-4-array; #32: within 5% of the locals). run.sh also counts the publish alone in fanout-1
/// and fanout-4 (publish-1, publish-4; #14: four at most 1.5 times one).
func fanout(_ name: RegionName, _ count: Int, inArray: Bool, _ n: Int) throws {
    let region = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 64, subscribers: count, queueDepth: 8))
    try PublishSubscribe.format(region, maxPayload: 64, subscribers: count, queueDepth: 8)
    let message = [UInt8](repeating: 7, count: 64)
    var total = 0
    if inArray {
        let subscribers = try InlineArray<4, Subscriber> { (_) throws(SharedMemoryError) in try Subscriber(region) }
        let publisher = try Publisher(region)
        for _ in 0..<n {
            try message.withUnsafeBytes { _ = try publisher.publish($0) }
            for i in 0..<4 { total &+= try subscribers[i].receive { bytes, _ in bytes.byteCount } ?? 0 }
        }
    } else if count == 4 {
        let s0 = try Subscriber(region), s1 = try Subscriber(region), s2 = try Subscriber(region), s3 = try Subscriber(region)
        let publisher = try Publisher(region)
        for _ in 0..<n {
            try message.withUnsafeBytes { _ = try publisher.publish($0) }
            total &+= try s0.receive { bytes, _ in bytes.byteCount } ?? 0
            total &+= try s1.receive { bytes, _ in bytes.byteCount } ?? 0
            total &+= try s2.receive { bytes, _ in bytes.byteCount } ?? 0
            total &+= try s3.receive { bytes, _ in bytes.byteCount } ?? 0
        }
    } else {
        let s0 = try Subscriber(region)
        let publisher = try Publisher(region)
        for _ in 0..<n {
            try message.withUnsafeBytes { _ = try publisher.publish($0) }
            total &+= try s0.receive { bytes, _ in bytes.byteCount } ?? 0
        }
    }
    try region.remove()
    if total == 42 { print(total) }
}

/// `pubsub` with the publisher and the subscriber kept in a class (an actor's or a server's state; #32: within 5%
/// of `pubsub`).
final class PubSubHolder {
    let publisher: Publisher
    let subscriber: Subscriber
    init(publisher: consuming Publisher, subscriber: consuming Subscriber) {
        self.publisher = publisher
        self.subscriber = subscriber
    }
}

func pubsubClass(_ name: RegionName, _ n: Int) throws {
    let region = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 64, subscribers: 1, queueDepth: 8))
    try PublishSubscribe.format(region, maxPayload: 64, subscribers: 1, queueDepth: 8)
    let holder = PubSubHolder(publisher: try Publisher(try SharedMemory.open(name)), subscriber: try Subscriber(try SharedMemory.open(name)))
    let message = [UInt8](repeating: 7, count: 64)
    var total = 0
    for _ in 0..<n {
        try message.withUnsafeBytes { _ = try holder.publisher.publish($0) }
        total &+= try holder.subscriber.receive { bytes, _ in bytes.byteCount } ?? 0
    }
    _ = holder  // its sides give their seats back when it goes; finish() consumes, which a stored property cannot
    try region.remove()
    if total == 42 { print(total) }
}

/// A 64-byte sample as a typed service's value: `pubsub`'s work through `TypedPublisher` and `TypedSubscriber`.
struct Sample64: BitwiseCopyable {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
}

func pubsubTyped(_ name: RegionName, _ n: Int) throws {
    let region = try SharedMemory.create(name, size: PublishSubscribe.size(of: Sample64.self, subscribers: 1, queueDepth: 8))
    try PublishSubscribe.format(region, sampleType: Sample64.self, subscribers: 1, queueDepth: 8)
    let subscriber = try TypedSubscriber<Sample64>(try SharedMemory.open(name))
    let publisher = try TypedPublisher<Sample64>(try SharedMemory.open(name))
    let sample = Sample64(words: (7, 7, 7, 7, 7, 7, 7, 7))
    var total = 0
    for _ in 0..<n {
        _ = try publisher.publish(sample)
        total &+= try subscriber.receive { sample, _ in Int(truncatingIfNeeded: sample.words.7) } ?? 0
    }
    subscriber.close()
    publisher.finish()
    try region.remove()
    if total == 42 { print(total) }
}

/// The same 64-byte struct through the byte forms: a copy of its bytes published, the value loaded from the sample's
/// bytes (what a user of the byte API does with a struct; the typed form's baseline).
func pubsubStruct(_ name: RegionName, _ n: Int) throws {
    let region = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 64, subscribers: 1, queueDepth: 8))
    try PublishSubscribe.format(region, maxPayload: 64, subscribers: 1, queueDepth: 8)
    let subscriber = try Subscriber(try SharedMemory.open(name))
    let publisher = try Publisher(try SharedMemory.open(name))
    let sample = Sample64(words: (7, 7, 7, 7, 7, 7, 7, 7))
    var total = 0
    for _ in 0..<n {
        _ = try withUnsafeBytes(of: sample) { try publisher.publish($0) }
        total &+= try subscriber.receive { bytes, _ in Int(truncatingIfNeeded: bytes.unsafeLoad(as: Sample64.self).words.7) } ?? 0
    }
    subscriber.close()
    publisher.finish()
    try region.remove()
    if total == 42 { print(total) }
}

func lifecycle(_ n: Int) throws {
    for i in 0..<n {
        let each = try RegionName("posix:/smharness-\(getpid())-\(i)")
        let region = try SharedMemory.create(each, size: 4096)
        try region.remove()
        try region.detach()
    }
}

/// The same for a memfd (no name to remove), a System V segment (one key, removed each time, so free again) and
/// anonymous memory (no name).
func lifecycle(_ name: RegionName, removable: Bool, _ n: Int) throws {
    for _ in 0..<n {
        let region = try SharedMemory.create(name, size: 4096)
        if removable { try region.remove() }
        try region.detach()
    }
}

/// A 64-byte allocate and its free, on a heap with 1 000 other blocks in use.
func heapAllocate(_ name: RegionName, _ n: Int) throws {
    var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 4 << 20))
    for _ in 0..<1000 { _ = try heap.allocate(byteCount: 48) }
    for _ in 0..<n {
        let block = try heap.allocate(byteCount: 64)
        try heap.deallocate(block)
    }
    try heap.intoRegion().remove()
}

/// A find of one of 1 000 named objects (8-byte values) by name.
func heapFind(_ name: RegionName, _ n: Int) throws {
    var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 4 << 20))
    let names = (0..<1000).map { "object-\($0)" }
    for (index, name) in names.enumerated() { _ = try heap.construct(name, repeating: UInt64(index)) }
    var sum: UInt64 = 0
    for i in 0..<n { sum &+= try heap.load(try heap.find(names[i % 1000], as: UInt64.self)!) }
    try heap.intoRegion().remove()
    if sum == 42 { print(sum) }
}

// The cache-line traces (Benchmarks/CacheLines/run.sh runs these under `valgrind --tool=lackey --trace-mem=yes`):
// both sides in this one process on one mapping, the sender's (publisher's) work and the receiver's (subscriber's)
// in turns. The first line says where the region and the markers are (lackey shows addresses, not values): a store
// to the first marker word starts a turn of the sending side, to the second one of the receiving side, to the third
// ends the trace.

/// The three marker words, on a page of their own (malloc'd memory is also written by malloc, which a trace would
/// take for marks), and a store to one that the optimiser keeps.
nonisolated(unsafe) let marker = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!.assumingMemoryBound(to: UInt64.self)
func mark(_ turn: Int) {
    UnsafeAtomic<UInt64>(at: UnsafeMutableRawPointer(marker + (turn - 1)).assumingMemoryBound(to: UnsafeAtomic<UInt64>.Storage.self))
        .store(1, ordering: .relaxed)
}

func announce(_ region: borrowing AnyRegion) {
    let base = region.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
    print("region \(String(base, radix: 16)) \(region.size) marker \(String(UInt(bitPattern: marker), radix: 16))")
    fflush(nil)
}

func linesRing(_ name: RegionName, _ n: Int) throws {
    let region = try ringRegion(name)
    let sender = try RingSender(region), receiver = try RingReceiver(region)
    let message = [UInt8](repeating: 7, count: 64)
    var total = 0
    announce(region)
    for _ in 0..<n {
        mark(1)
        try message.withUnsafeBytes { try sender.send($0) }
        mark(2)
        total &+= try receiver.receiveUnsafe { bytes in bytes.reduce(0) { $0 &+ Int($1) } } ?? 0  // every byte read, as a consumer does
    }
    mark(3)
    sender.finish()
    try region.remove()
    if total == 42 { print(total) }
}

func linesPubsub(_ name: RegionName, _ n: Int) throws {
    let region = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 64, subscribers: 1, queueDepth: 8))
    try PublishSubscribe.format(region, maxPayload: 64, subscribers: 1, queueDepth: 8)
    let subscriber = try Subscriber(region)
    let publisher = try Publisher(region)
    let message = [UInt8](repeating: 7, count: 64)
    var total = 0
    announce(region)
    for _ in 0..<n {
        mark(1)
        try message.withUnsafeBytes { _ = try publisher.publish($0) }
        mark(2)
        total &+= try subscriber.receive { bytes, _ in bytes.withUnsafeBytes { $0.reduce(0) { $0 &+ Int($1) } } } ?? 0
    }
    mark(3)
    subscriber.close()
    publisher.finish()
    try region.remove()
    if total == 42 { print(total) }
}

let operation = CommandLine.arguments[1], n = Int(CommandLine.arguments[2])!
let name = try RegionName("posix:/smharness-\(getpid())")
switch operation {
case "getset": try getset(name, n)
case "getset-any": try getsetAny(name, n)
case "getset-concrete": try getsetConcrete(n)
case "atomic": try atomicIncrement(n)
case "ring": try ring(name, n)
case "ring-copy": try ringCopy(name, n)
case "ring-array": try ringArray(name, n)
case "ring-span": try ringSpan(name, n)
case "ring-unsafe": try ringUnsafe(name, n)
case "ring-struct": try ringStruct(name, n)
case "ring-class": try ringClass(name, n)
case "pubsub-class": try pubsubClass(name, n)
case "pubsub": try pubsub(name, n)
case "fanout-1": try fanout(name, 1, inArray: false, n)
case "fanout-4": try fanout(name, 4, inArray: false, n)
case "fanout-4-array": try fanout(name, 4, inArray: true, n)
case "lines-ring": try linesRing(name, n)
case "lines-pubsub": try linesPubsub(name, n)
case "pubsub-typed": try pubsubTyped(name, n)
case "pubsub-struct": try pubsubStruct(name, n)
case "lifecycle": try lifecycle(n)
case "lifecycle-memfd": try lifecycle(try RegionName("memfd:smharness"), removable: false, n)
case "lifecycle-anonymous": try lifecycle(.anonymous, removable: false, n)
case "lifecycle-sysv": try lifecycle(try RegionName("sysv:0x5eed\(String(getpid() & 0xffff, radix: 16))"), removable: true, n)
case "heap-allocate": try heapAllocate(name, n)
case "heap-find": try heapFind(name, n)
default: fatalError("getset, getset-any, getset-concrete, atomic, ring, ring-copy, ring-array, ring-span, ring-unsafe, ring-struct, ring-class, pubsub, pubsub-class, pubsub-typed, pubsub-struct, fanout-1, fanout-4, fanout-4-array, lines-ring, lines-pubsub, lifecycle, lifecycle-memfd, lifecycle-anonymous, lifecycle-sysv, heap-allocate or heap-find")
}
