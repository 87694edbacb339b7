// swift-tools-version:6.1
// In-process microbenchmarks (ordo-one/benchmark), in a package of their own so that users of SharedMemory
// never build them. Run from this directory: `swift package benchmark`; check against the committed thresholds:
// `swift package benchmark thresholds check`. The two-process experiments are `shm bench` (see Docs/Benchmarks.md).
import PackageDescription

let package = Package(
    name: "SharedMemoryBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "SharedMemory", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
    ],
    targets: [
        .executableTarget(
            name: "RegionBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SharedMemory", package: "SharedMemory"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            path: "Benchmarks/RegionBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
