import ArgumentParser
import Foundation
import Glibc
import SharedMemory

/// The instruction-count mode (`shm bench --instructions`): the single-process paths, Swift and C, each run twice
/// under `valgrind --tool=callgrind` (N1 and N2 times), and (Ir(N2) − Ir(N1)) / (N2 − N1) reported as instructions
/// per operation. Unlike times, these do not move with the machine's neighbours: this is the figure goals are
/// put on (Docs/Benchmarks.md lists them, met and not).
enum InstructionCount {
    /// A case: the row's name, the Swift loop (`shm swift-bench` arguments), what it is compared with (`shm c-bench`
    /// arguments, or another Swift loop), N1 and N2, and where set, the one function whose instructions are counted
    /// (callgrind's `--toggle-collect`, on a binary stripped of its debug information but not of its symbols).
    struct Case {
        var name: String
        var swift: [String]
        var reference: [String]
        var n1: Int, n2: Int
        var onlyIn: String? = nil
        var note = "C: the same operation in C (Sources/CShmBench, clang -O2 as SwiftPM builds it, the ring header's functions inlined: the fair C), this run; callgrind, deterministic"
    }

    static let cases: [Case] = [
        Case(name: "get/set of a UInt64 in a posix region", swift: ["getset"], reference: ["c-bench", "getset"], n1: 10_000, n2: 110_000),
        Case(name: "get/set of a UInt64 through any SharedRegion (C: through a table of function pointers)", swift: ["getset-any"], reference: ["c-bench", "getset-dispatch"], n1: 10_000, n2: 110_000),
        Case(name: "ring: a 64 B send and zero-copy receive, one process", swift: ["ring"], reference: ["c-bench", "ring1"], n1: 10_000, n2: 110_000),
        Case(name: "ring: a 64 B send and a receive copied into the caller's buffer, one process", swift: ["ring-copy"], reference: ["c-bench", "ring1copy"], n1: 10_000, n2: 110_000),
        Case(name: "publish/subscribe: a 64 B publish and zero-copy receive, one subscriber, one process", swift: ["pubsub"], reference: ["c-bench", "pubsub1"], n1: 10_000, n2: 110_000),
        // What a publish costs the publisher with four subscribers against one: the publish alone is counted (the
        // subscribers, in the same process, take each sample outside it). The work, not the time: on this 2-core
        // machine the time measures the scheduler.
        Case(name: "publish/subscribe: the publisher's instructions per 64 B publish, 4 subscribers (C: with 1 subscriber)", swift: ["fanout-4"], reference: ["swift-bench", "fanout-1"], n1: 10_000, n2: 110_000,
             onlyIn: "$s12SharedMemory9PublisherV7publishys6UInt64VSWAA0aB5ErrorVYKF",
             note: "C: the same publish with 1 subscriber, this run (goal: at most 1.5x); callgrind, deterministic, the publish only"),
    ] + ["posix", "memfd", "sysv", "anonymous"].map { backend in
        Case(name: "lifecycle: create, touch, remove, detach a 4 KiB \(backend) region (process lifetime)", swift: ["lifecycle-\(backend)"], reference: ["c-bench", "lifecycle1", backend], n1: 200, n2: 2_200)
    }

    /// Instructions per operation for each case, Swift and C; a row per case saying why if valgrind is missing.
    static func measure() throws -> [Measurement] {
        guard let valgrind = ["/usr/bin/valgrind", "/usr/local/bin/valgrind"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return cases.map { Measurement(experiment: "instructions", name: $0.name, unit: "instructions", skipped: "valgrind not installed (Debian: apt-get install valgrind)") }
        }
        // valgrind cannot read Swift's debug information: count a copy of this executable without it (its symbols
        // kept, for the cases that count one function).
        let binary = NSTemporaryDirectory() + "shmbench-instructions-\(getpid())"
        defer { unlink(binary) }
        let me = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let stripped = FileManager.default.isExecutableFile(atPath: "/usr/bin/strip") ? try run("/usr/bin/strip", ["--strip-debug", "-o", binary, me]).status == 0 : false
        if !stripped { try FileManager.default.copyItem(atPath: me, toPath: binary) }

        let isolated = PrivateNamespace.available
        func count(_ arguments: [String], onlyIn function: String?) throws -> Double {
            let collect = function.map { ["--toggle-collect=\($0)"] } ?? []
            let command = Repeatable.prefix + [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"] + collect + [binary] + arguments
            let result = isolated ? try run(PrivateNamespace.unshare, PrivateNamespace.arguments + command)
                                  : try run(command[0], Array(command.dropFirst()))
            guard result.status == 0, let line = result.error.split(separator: "\n").first(where: { $0.contains("Collected :") }),
                  let total = line.split(separator: " ").last.flatMap({ Double($0) }) else {
                throw BenchError("callgrind on \(arguments.joined(separator: " ")) failed (status \(result.status)): \(result.error.suffix(300))")
            }
            return total
        }
        func perOperation(_ arguments: [String], _ item: Case) throws -> Summary {
            let value = (try count(arguments + ["\(item.n2)"], onlyIn: item.onlyIn) - count(arguments + ["\(item.n1)"], onlyIn: item.onlyIn)) / Double(item.n2 - item.n1)
            return Summary(median: value.rounded(), p99: value.rounded(), samples: 1)
        }
        return try cases.map { item in
            var m = Measurement(experiment: "instructions", name: item.name, unit: "instructions",
                                swift: try perOperation(["swift-bench"] + item.swift, item),
                                c: try perOperation(item.reference, item))
            m.note = item.note + (isolated ? "" : "; counted beside the machine's other processes (no private namespace here): a lifecycle moves with what /dev/shm holds")
            return m
        }
    }
}

/// What makes a count the same on every run: Swift's hashing seeded the same way (`SWIFT_DETERMINISTIC_HASHING`: the
/// process's one-time setup, argument parsing among it, otherwise walks its dictionaries in a random order, and the
/// N1 and N2 runs' setups then differ by thousands of instructions, up to 15 an operation in a 2 000-operation
/// difference), and no address randomisation (`setarch -R`: a string's alignment changes how many instructions
/// `strcmp` and `memcpy` take). With both, the same binary gives the same count three times out of three.
enum Repeatable {
    static let prefix: [String] = {
        var prefix = ["/usr/bin/env", "SWIFT_DETERMINISTIC_HASHING=1"]
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/setarch") {
            var name = utsname()
            uname(&name)
            let machine = withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            prefix += ["/usr/bin/setarch", machine, "-R"]
        }
        return prefix
    }()
}

/// Where the counts run: a private user, mount, IPC and PID namespace (`unshare`), with its own empty /dev/shm (a
/// tmpfs) and System V segments, as process 1. A lifecycle's count otherwise moves with what other processes keep in
/// /dev/shm (the lifetime record directory coming and going) and with the length of the pid in the names it makes:
/// 18.8% between two runs on a busy machine. Needs no privilege where unprivileged user namespaces are allowed (the
/// default on Debian and most distributions).
enum PrivateNamespace {
    static let unshare = "/usr/bin/unshare"
    static let arguments = ["--user", "--map-root-user", "--mount", "--ipc", "--pid", "--fork", "--mount-proc", "/bin/sh", "-c",
                            "mount -t tmpfs -o size=64m,mode=1777 tmpfs /dev/shm && exec \"$@\"", "sh"]

    /// Whether this machine lets this user make one (tried once).
    static let available: Bool = {
        guard FileManager.default.isExecutableFile(atPath: unshare) else { return false }
        return (try? run(unshare, arguments + ["/bin/true"]).status) == 0
    }()
}

/// `shm swift-bench OPERATION N`: runs one single-process Swift loop N times, for the instruction counts (hidden:
/// `shm bench --instructions` starts it under callgrind).
struct SwiftBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-bench", abstract: "Run one single-process loop of shm bench's Swift side.", shouldDisplay: false)

    @Argument var operation: String
    @Argument var count: Int
    @Option(help: "ping-pong: the message size in bytes.") var size = 64
    @Option(help: "ping-pong: the wait strategy (adaptive, spin, sleep).") var strategy = "adaptive"

    func run() throws {
        guard count >= 0 else { throw ValidationError("the count is how many times to run the loop: 0 or more, not \(count)") }
        let name = try RegionName("posix:/shmbench-swift-\(getpid())")
        switch operation {
        case "getset": try Self.getset(name, count)
        case "getset-any": try Self.getsetAny(name, count)
        case "ring-copy": try Self.ring(name, count, copy: true)
        case "ring": try Self.ring(name, count)
        case "pubsub": try Self.pubsub(name, count)
        case "fanout-1": try Self.fanout(name, subscribers: 1, count)
        case "fanout-4": try Self.fanout(name, subscribers: 4, count)
        case "ping-pong":
            // Round trips of 64 B (or --size) between two processes with the default wait (or --strategy; #31): the
            // median, the p99, and the round trips over 10 µs, with where they fell in the run (index: µs), on standard
            // error. Under `strace -f -c -e trace=futex,sched_yield`, how often the waits slept.
            guard count > 0 else { throw ValidationError("ping-pong needs at least one round trip; \(count) is not") }
            let strategies: [String: WaitStrategy] = ["adaptive": .adaptive, "spin": .spin, "sleep": .sleep]
            guard let chosen = strategies[strategy] else { throw ValidationError("--strategy adaptive, spin or sleep, not \(strategy)") }
            guard size >= 1 && size <= 1 << 20 else { throw ValidationError("--size 1 to 1048576 bytes, not \(size)") }
            let raw = try SwiftBench.pingPong("ring", strategy: chosen, rounds: count, size: size)
            let sorted = raw.sorted()
            let slow = raw.indices.filter { raw[$0] > 10_000 }
            let text = "median \(Int(sorted[sorted.count / 2])) ns, p99 \(Int(sorted[sorted.count * 99 / 100])) ns, over 10 µs: \(slow.count)"
                + (slow.isEmpty ? "" : ", the first at \(slow.prefix(12).map { "\($0): \(Int(raw[$0]) / 1000)" }.joined(separator: ", "))")
            FileHandle.standardError.write(Data((text + "\n").utf8))
        default:
            guard operation.hasPrefix("lifecycle-"), let backend = Backend(rawValue: String(operation.dropFirst(10))) else {
                throw ValidationError("getset, getset-any, ring, ring-copy, pubsub, fanout-1, fanout-4, ping-pong or lifecycle-BACKEND")
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

    /// A service of 64-byte samples with `subscribers` subscribers in this process: publish a copy, and each
    /// subscriber takes it (the fan-out rows count only the publish).
    static func fanout(_ name: RegionName, subscribers count: Int, _ n: Int) throws {
        let size = PublishSubscribe.size(maxPayload: 64, subscribers: count, queueDepth: 8)
        let region = try SharedMemory.create(name, size: size)
        try PublishSubscribe.format(region, maxPayload: 64, subscribers: count, queueDepth: 8)
        var subscribers = try InlineArray<4, Subscriber?> { (i) throws(SharedMemoryError) in i < count ? try Subscriber(region) : nil }
        let publisher = try Publisher(region)
        let message = [UInt8](repeating: 7, count: 64)
        var total = 0
        for _ in 0..<n {
            try message.withUnsafeBytes { _ = try publisher.publish($0) }
            for i in 0..<count { total &+= try subscribers[i]!.receive { bytes, _ in bytes.byteCount } ?? 0 }
        }
        for i in 0..<count { subscribers[i].take()?.close() }
        publisher.finish()
        try region.remove()
        if total == 42 { print(total) }
    }

    /// What `c-bench pubsub1` does: a service of 64-byte samples with one subscriber, publish a copy and receive it.
    static func pubsub(_ name: RegionName, _ n: Int) throws {
        let size = PublishSubscribe.size(maxPayload: 64, subscribers: 1, queueDepth: 8)
        let region = try SharedMemory.create(name, size: size)
        try PublishSubscribe.format(region, maxPayload: 64, subscribers: 1, queueDepth: 8)
        let subscriber = try Subscriber(region)
        let publisher = try Publisher(region)
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

    /// What `c-bench ring1` does: a 64-byte send, received in place, or (`copy`, as `c-bench ring1copy`) into a
    /// buffer of the receiver's. A loop for each, so neither pays for the other.
    static func ring(_ name: RegionName, _ n: Int, copy: Bool = false) throws {
        let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 16))
        try MessageRing.format(region, capacity: 1 << 16)
        let sender = try RingSender(region)
        let receiver = try RingReceiver(region)
        let message = [UInt8](repeating: 7, count: 64)
        var total = 0
        if copy {
            var storage = [UInt8](repeating: 0, count: receiver.maxMessage)
            var span = storage.mutableSpan
            var bytes = span.mutableBytes
            for i in 0..<n {
                try message.withUnsafeBytes { try sender.send($0) }
                total &+= try receiver.receive(into: &bytes) ?? 0
                total &+= Int(bytes.unsafeLoad(fromByteOffset: i & 63, as: UInt8.self))
            }
        } else {
            for _ in 0..<n {
                try message.withUnsafeBytes { try sender.send($0) }
                total &+= try receiver.receive { $0.byteCount } ?? 0
            }
        }
        sender.finish()
        try region.remove()
        if total == 42 { print(total) }
    }
}
