// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "SharedMemory",
    products: [
        .library(name: "SharedMemory", targets: ["SharedMemory"]),
        .executable(name: "shm", targets: ["shm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Only what Swift cannot import from Glibc: mremap, memfd_create, F_SEAL_*, constants behind macros.
        .target(
            name: "CSharedMemory",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(
            name: "SharedMemory",
            dependencies: [
                "CSharedMemory",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        // The C side of `shm bench`, linked into the tool so an installed `shm` needs no source tree or compiler.
        .target(name: "CShmBench", cSettings: [.headerSearchPath("../../Interop/c")]),
        // The command-line tool: one ipcs/ipcrm for every mechanism.
        .executableTarget(
            name: "shm",
            dependencies: [
                "SharedMemory",
                "CShmBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Examples (Examples/): built with the package, run by .ci/run.
        .executableTarget(name: "messages", dependencies: ["SharedMemory"], path: "Examples/Messages"),
        .executableTarget(name: "fork-counter", dependencies: ["SharedMemory"], path: "Examples/Fork"),
        .executableTarget(name: "heap-book", dependencies: ["SharedMemory"], path: "Examples/HeapBook"),
        .executableTarget(name: "quotes", dependencies: ["SharedMemory"], path: "Examples/Quotes"),
        .executableTarget(name: "uppercase", dependencies: ["SharedMemory"], path: "Examples/Uppercase"),
        .executableTarget(name: "async-tally", dependencies: ["SharedMemory"], path: "Examples/AsyncTally"),
        .executableTarget(
            name: "sealed-memfd",
            dependencies: ["SharedMemory"],
            path: "Examples/SealedMemfd"
        ),
        // A second process for the tests: opens regions by name, reads, writes, and can drop to another uid.
        .executableTarget(
            name: "RegionProbe",
            dependencies: ["SharedMemory", .product(name: "Atomics", package: "swift-atomics")],
            path: "Tests/RegionProbe",
            // Optimised even in debug builds: it streams a gigabyte through a ring in the tests.
            swiftSettings: [.unsafeFlags(["-O"])]
        ),
        // What both test targets share: the one way they start a child process.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(
            name: "SharedMemoryTests",
            dependencies: ["SharedMemory", "RegionProbe", "TestSupport"]
        ),
        .testTarget(
            name: "shmTests",
            dependencies: ["shm", "SharedMemory", "TestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
