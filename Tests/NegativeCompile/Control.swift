// The control: the same calls used as the API means them compile, so a failure above is the misuse's, not the
// harness's.
// expect: compiles
import SharedMemory

func control(_ name: RegionName) throws -> Int {
    var region = try SharedMemory.create(name, size: 4096)
    let first = try region.withBytes { (bytes: RawSpan) throws(SharedMemoryError) in bytes.unsafeLoad(as: UInt8.self) }
    try region.withMutableBytes { (bytes: inout MutableRawSpan) throws(SharedMemoryError) in bytes.storeBytes(of: first, as: UInt8.self) }
    try region.resize(to: 8192)
    _ = try region.remap()
    let size = region.size
    try region.detach()
    return size
}
