// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "SharedMemory",
    products: [
        .library(name: "SharedMemory", targets: ["SharedMemory"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
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
            ]
        ),
        // A second process for the tests: opens regions by name, reads, writes, and can drop to another uid.
        .executableTarget(
            name: "RegionProbe",
            dependencies: ["SharedMemory"],
            path: "Tests/RegionProbe"
        ),
        .testTarget(
            name: "SharedMemoryTests",
            dependencies: ["SharedMemory", "RegionProbe"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
