// swift-tools-version:6.2
// libFuzzer targets, in a package of their own (they need -sanitize=fuzzer, which the main build must not have).
// Build, and run one from its committed corpus (Corpus/NAME: seeds and every input that once failed), as .ci/run does:
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld
//   mkdir -p /tmp/corpus && cp Corpus/FuzzRingHeader/* /tmp/corpus
//   ASAN_OPTIONS=detect_leaks=0 .build/debug/FuzzRingHeader /tmp/corpus -max_total_time=600
// A failing input goes into Corpus/NAME, with a test in Tests/ for what it found.
import PackageDescription

let package = Package(
    name: "SharedMemoryFuzz",
    dependencies: [.package(name: "SharedMemory", path: "../")],
    targets: [
        .target(name: "FuzzDriver", dependencies: [.product(name: "SharedMemory", package: "SharedMemory")]),
        .executableTarget(name: "FuzzRegionName", dependencies: ["FuzzDriver", .product(name: "SharedMemory", package: "SharedMemory")]),
        .executableTarget(name: "FuzzRingHeader", dependencies: ["FuzzDriver", .product(name: "SharedMemory", package: "SharedMemory")]),
        .executableTarget(name: "FuzzPublishSubscribe", dependencies: ["FuzzDriver", .product(name: "SharedMemory", package: "SharedMemory")]),
        .executableTarget(name: "FuzzHeap", dependencies: ["FuzzDriver", .product(name: "SharedMemory", package: "SharedMemory")]),
        .executableTarget(name: "FuzzRequestResponse", dependencies: ["FuzzDriver", .product(name: "SharedMemory", package: "SharedMemory")]),
    ]
)
