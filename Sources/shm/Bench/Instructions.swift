import ArgumentParser
import Foundation
import Glibc
import SharedMemory

/// The instruction-count mode (`shm bench --instructions`): the single-process paths, Swift and C, each run twice
/// under `valgrind --tool=callgrind` (N1 and N2 times), and (Ir(N2) − Ir(N1)) / (N2 − N1) reported as instructions
/// per operation. Unlike times, these do not move with the machine's neighbours: this is the figure goals are
/// put on (Swift/C ≤ 1.10 for the ring and get/set).
enum InstructionCount {
    /// The cases: the row's name, the Swift operation, the C experiment, N1 and N2.
    static let cases: [(name: String, swift: String, c: [String], n1: Int, n2: Int)] = [
        ("get/set of a UInt64 in a posix region", "getset", ["getset"], 10_000, 110_000),
        ("get/set of a UInt64 through any SharedRegion (C: through a table of function pointers)", "getset-any", ["getset-dispatch"], 10_000, 110_000),
        ("ring: a 64 B send and zero-copy receive, one process", "ring", ["ring1"], 10_000, 110_000),
        ("ring: a 64 B send and a receive copied into the caller's buffer, one process", "ring-copy", ["ring1copy"], 10_000, 110_000),
        ("publish/subscribe: a 64 B publish and zero-copy receive, one subscriber, one process", "pubsub", ["pubsub1"], 10_000, 110_000),
    ] + ["posix", "memfd", "sysv", "anonymous"].map { backend in
        ("lifecycle: create, touch, remove, detach a 4 KiB \(backend) region (process lifetime)", "lifecycle-\(backend)", ["lifecycle1", backend], 200, 2_200)
    }

    /// Instructions per operation for each case, Swift and C; a row per case saying why if valgrind is missing.
    static func measure() throws -> [Measurement] {
        guard let valgrind = ["/usr/bin/valgrind", "/usr/local/bin/valgrind"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return cases.map { Measurement(experiment: "instructions", name: $0.name, unit: "instructions", skipped: "valgrind not installed (Debian: apt-get install valgrind)") }
        }
        // valgrind cannot read Swift's debug information: count a stripped copy of this executable.
        let binary = NSTemporaryDirectory() + "shmbench-instructions-\(getpid())"
        defer { unlink(binary) }
        let me = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let stripped = FileManager.default.isExecutableFile(atPath: "/usr/bin/strip") ? try run("/usr/bin/strip", ["-o", binary, me]).status == 0 : false
        if !stripped { try FileManager.default.copyItem(atPath: me, toPath: binary) }

        func count(_ arguments: [String]) throws -> Double {
            let result = try run(valgrind, ["--tool=callgrind", "--callgrind-out-file=/dev/null", binary] + arguments)
            guard result.status == 0, let line = result.error.split(separator: "\n").first(where: { $0.contains("Collected :") }),
                  let total = line.split(separator: " ").last.flatMap({ Double($0) }) else {
                throw BenchError("callgrind on \(arguments.joined(separator: " ")) failed (status \(result.status)): \(result.error.suffix(300))")
            }
            return total
        }
        func perOperation(_ arguments: (Int) -> [String], _ n1: Int, _ n2: Int) throws -> Summary {
            let value = (try count(arguments(n2)) - count(arguments(n1))) / Double(n2 - n1)
            return Summary(median: value.rounded(), p99: value.rounded(), samples: 1)
        }
        return try cases.map { item in
            var m = Measurement(experiment: "instructions", name: item.name, unit: "instructions",
                                swift: try perOperation({ ["swift-bench", item.swift, "\($0)"] }, item.n1, item.n2),
                                c: try perOperation({ ["c-bench"] + item.c + ["\($0)"] }, item.n1, item.n2))
            m.note = "C: the same operation in C (Sources/CShmBench), this run; callgrind, deterministic"
            return m
        }
    }
}

/// `shm swift-bench OPERATION N`: runs one single-process Swift loop N times, for the instruction counts (hidden:
/// `shm bench --instructions` starts it under callgrind).
struct SwiftBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-bench", abstract: "Run one single-process loop of shm bench's Swift side.", shouldDisplay: false)

    @Argument var operation: String
    @Argument var count: Int

    func run() throws {
        let name = try RegionName("posix:/shmbench-swift-\(getpid())")
        switch operation {
        case "getset": try Self.getset(name, count)
        case "getset-any": try Self.getsetAny(name, count)
        case "ring-copy": try Self.ringCopy(name, count)
        case "ring": try Self.ring(name, count)
        case "pubsub": try Self.pubsub(name, count)
        default:
            guard operation.hasPrefix("lifecycle-"), let backend = Backend(rawValue: String(operation.dropFirst(10))) else {
                throw ValidationError("getset, getset-any, ring, ring-copy, pubsub or lifecycle-BACKEND")
            }
            try Self.lifecycle(backend, count)
        }
    }

    /// What `c-bench lifecycle1 BACKEND` does: SwiftBench.lifecycle's cycle, untimed and unrecorded, under one name
    /// (each cycle removes the region before the next makes it again).
    static func lifecycle(_ backend: Backend, _ n: Int) throws {
        let removable = backend.capabilities.contains(.named)
        let name = try SwiftBench.name(backend, 0)
        for _ in 0..<n {
            let region = try SharedMemory.create(name, size: 4096, options: .init(lifetime: .process))
            try region.withUnsafeMutableBytes { $0[0] = 1 }
            if removable { try region.remove() }
            try region.detach()
        }
    }

    static func getset(_ name: RegionName, _ n: Int) throws {
        let region = try SharedMemory.create(name, size: 4096)
        var sum: UInt64 = 0
        for i in 0..<n {
            try region.set(UInt64(i), at: 64)
            sum &+= try region.get(UInt64.self, at: 64)
        }
        try region.remove()
        if sum == 42 { print(sum) }
    }

    /// The same through the existential: a region whose type is known only at run time.
    static func getsetAny(_ name: RegionName, _ n: Int) throws {
        let region: any SharedRegion & ~Copyable = try SharedMemory.create(name, size: 4096)
        var sum: UInt64 = 0
        for i in 0..<n {
            try region.set(UInt64(i), at: 64)
            sum &+= try region.get(UInt64.self, at: 64)
        }
        try region.remove()
        if sum == 42 { print(sum) }
    }

    /// What `c-bench ring1copy` does: a 64-byte send, and a receive copied into a buffer of the receiver's.
    static func ringCopy(_ name: RegionName, _ n: Int) throws {
        let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 16))
        try MessageRing.format(region, capacity: 1 << 16)
        let sender = try RingSender(region)
        let receiver = try RingReceiver(region)
        let message = [UInt8](repeating: 7, count: 64)
        var storage = [UInt8](repeating: 0, count: receiver.maximumMessage)
        var span = storage.mutableSpan
        var bytes = span.mutableBytes
        var total = 0
        for i in 0..<n {
            try message.withUnsafeBytes { try sender.send($0) }
            total &+= try receiver.receive(into: &bytes) ?? 0
            total &+= Int(bytes.unsafeLoad(fromByteOffset: i & 63, as: UInt8.self))
        }
        sender.finish()
        try region.remove()
        if total == 42 { print(total) }
    }

    /// What `c-bench pubsub1` does: a service of 64-byte samples with one subscriber, publish a copy and receive it.
    static func pubsub(_ name: RegionName, _ n: Int) throws {
        let size = PublishSubscribe.size(maxPayload: 64, subscribers: 1, queueDepth: 8)
        let region = try SharedMemory.create(name, size: size)
        try PublishSubscribe.format(region, maxPayload: 64, subscribers: 1, queueDepth: 8)
        var subscriber = try Subscriber(region)
        var publisher = try Publisher(region)
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

    static func ring(_ name: RegionName, _ n: Int) throws {
        let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 16))
        try MessageRing.format(region, capacity: 1 << 16)
        let sender = try RingSender(region)
        let receiver = try RingReceiver(region)
        let message = [UInt8](repeating: 7, count: 64)
        var total = 0
        for _ in 0..<n {
            try message.withUnsafeBytes { try sender.send($0) }
            total &+= try receiver.receive { $0.byteCount } ?? 0
        }
        sender.finish()
        try region.remove()
        if total == 42 { print(total) }
    }
}
