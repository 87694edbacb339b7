// In-process costs of SharedMemory: each backend's create/attach/detach/remove, bounds-checked get/set against
// raw pointer access, atomics, and a ring round trip within one process. Allocation counts are exact and
// checked with no tolerance (a new allocation on a hot path is a regression); times get a wide tolerance, since
// the machines we run on are noisy. Per-operation benchmarks run 1000 operations per iteration (scalingFactor
// .kilo) and report per operation. Names have no spaces: the thresholds tool writes file names with spaces
// replaced but reads them back without (ordo-one/benchmark 1.38).

import Atomics
import Benchmark
import Glibc
import SharedMemory
import SystemPackage

let benchmarks: @Sendable () -> Void = {
    // CI sets SHM_BENCH_ALLOCATIONS_ONLY: allocation counts are exact on any machine, times are not.
    let allocationsOnly = getenv("SHM_BENCH_ALLOCATIONS_ONLY") != nil
    Benchmark.defaultConfiguration = .init(
        metrics: allocationsOnly ? [.mallocCountTotal] : [.wallClock, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 100_000,
        thresholds: [
            .wallClock: .init(relative: [.p50: 50.0]),
            .mallocCountTotal: .init(absolute: [.p50: 0, .p90: 0]),
        ]
    )

    let pid = getpid()
    for backend in Backend.allCases {
        Benchmark("lifecycle-\(backend)") { benchmark in
            for i in benchmark.scaledIterations {
                // Names of one length, so the benchmark's own string allocations do not vary with i.
                let i = String(1_000_000_000 + i)
                let name: RegionName
                switch backend {
                case .systemV: name = .systemVPrivate
                case .posix: name = try .posix("/smbench-\(pid)-\(i)")
                case .file: name = try .file(FilePath("/tmp/smbench-\(pid)-\(i)"))
                case .anonymous: name = .anonymous
                case .memfd: name = try .memfd("smbench")
                }
                benchmark.startMeasurement()
                let region = try SharedMemory.create(name, size: 4096)
                try region.withUnsafeMutableBytes { $0[0] = 1 }
                if backend.capabilities.contains(.named) { try region.remove() }
                try region.detach()
                benchmark.stopMeasurement()
            }
        }
    }

    let scaled = Benchmark.Configuration(scalingFactor: .kilo)

    // Written out, not through readLoop: passing the existential to a generic would open it, and measure the
    // concrete type instead of the dynamic dispatch.
    Benchmark("get-UInt64-any-SharedRegion", configuration: scaled) { benchmark in
        let region: any SharedRegion & ~Copyable = try SharedMemory.create(.anonymous, size: 1 << 16)
        var sum: UInt64 = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { sum &+= try region.get(UInt64.self, at: (i & 0xfff) * 8) }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    Benchmark("get-UInt64-AnyRegion", configuration: scaled) { benchmark in
        try readLoop(benchmark, try SharedMemory.create(.anonymous, size: 1 << 16))  // what the factory returns
    }

    Benchmark("get-UInt64-AnonymousRegion", configuration: scaled) { benchmark in
        try readLoop(benchmark, try AnonymousRegion.create(size: 1 << 16))
    }

    Benchmark("load-UInt64-raw-pointer", configuration: scaled) { benchmark in
        let region = try SharedMemory.create(.anonymous, size: 1 << 16)
        var sum: UInt64 = 0
        region.withUnsafeBytes { bytes in
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations { sum &+= bytes.load(fromByteOffset: (i & 0xfff) * 8, as: UInt64.self) }
            benchmark.stopMeasurement()
        }
        blackHole(sum)
    }

    Benchmark("set-UInt64-any-SharedRegion", configuration: scaled) { benchmark in
        let region: any SharedRegion & ~Copyable = try SharedMemory.create(.anonymous, size: 1 << 16)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { try region.set(UInt64(i), at: (i & 0xfff) * 8) }
        benchmark.stopMeasurement()
    }

    Benchmark("set-UInt64-AnyRegion", configuration: scaled) { benchmark in
        let region = try SharedMemory.create(.anonymous, size: 1 << 16)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { try region.set(UInt64(i), at: (i & 0xfff) * 8) }
        benchmark.stopMeasurement()
    }

    Benchmark("store-UInt64-raw-pointer", configuration: scaled) { benchmark in
        let region = try SharedMemory.create(.anonymous, size: 1 << 16)
        try region.withUnsafeMutableBytes { bytes in
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations { bytes.storeBytes(of: UInt64(i), toByteOffset: (i & 0xfff) * 8, as: UInt64.self) }
            benchmark.stopMeasurement()
        }
    }

    Benchmark("atomic-increment", configuration: scaled) { benchmark in
        let region = try SharedMemory.create(.anonymous, size: 4096)
        let counter = try region.atomic(UInt64.self, at: 64)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { counter.wrappingIncrement(ordering: .relaxed) }
        benchmark.stopMeasurement()
        blackHole(counter.load(ordering: .relaxed))
    }

    Benchmark("ring-send-receive-64B", configuration: scaled) { benchmark in
        let region = try SharedMemory.create(.memfd("smbench-ring"), size: MessageRing.size(capacity: 1 << 16))
        try MessageRing.format(region)
        let (a, b) = try socketPair()
        try region.send(over: a)
        let sender = try RingSender(region)
        let receiver = try RingReceiver(try SharedMemory.receive(from: b))
        let message = [UInt8](repeating: 1, count: 64)
        var total = 0
        try message.withUnsafeBytes { bytes in
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                try sender.send(bytes)
                total += try receiver.receive { $0.byteCount } ?? 0
            }
            benchmark.stopMeasurement()
        }
        blackHole(total)
        try a.close()
        try b.close()
    }
}

/// Bounds-checked reads of a region of a concrete type (the generic is specialised for each).
@inline(__always)
func readLoop(_ benchmark: Benchmark, _ region: borrowing some SharedRegion & ~Copyable) throws {
    var sum: UInt64 = 0
    benchmark.startMeasurement()
    for i in benchmark.scaledIterations { sum &+= try region.get(UInt64.self, at: (i & 0xfff) * 8) }
    benchmark.stopMeasurement()
    blackHole(sum)
}

func socketPair() throws -> (FileDescriptor, FileDescriptor) {
    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw Errno(rawValue: errno) }
    return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
}
