// swift-tools-version:6.2
// libFuzzer targets, in a package of their own (they need -sanitize=fuzzer, which the main build must not have).
// Build and run, as .ci/run does:
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   .build/debug/FuzzRegionName -max_total_time=30
import PackageDescription

let package = Package(
    name: "SharedMemoryFuzz",
    dependencies: [.package(name: "SharedMemory", path: "../")],
    targets: [
        .executableTarget(name: "FuzzRegionName", dependencies: [.product(name: "SharedMemory", package: "SharedMemory")]),
        .executableTarget(name: "FuzzRingHeader", dependencies: [.product(name: "SharedMemory", package: "SharedMemory")]),
    ]
)
