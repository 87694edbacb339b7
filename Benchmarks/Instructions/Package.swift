// swift-tools-version:6.2
// Instruction counts of SharedMemory's hot paths under callgrind: see run.sh.
import PackageDescription
let package = Package(
    name: "Instructions",
    dependencies: [.package(name: "SharedMemory", path: "../../")],
    targets: [.executableTarget(name: "Harness", dependencies: [.product(name: "SharedMemory", package: "SharedMemory")])]
)
