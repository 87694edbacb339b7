// Resizing while a view of the same region's bytes is in use: mremap may move the mapping under the pointer.
// expect: overlapping accesses to 'region'
import SharedMemory

func resizeInsideBytes(_ name: RegionName) throws {
    var region = try SharedMemory.create(name, size: 4096)
    try region.withUnsafeBytes { (_: UnsafeRawBufferPointer) throws(SharedMemoryError) in
        try region.resize(to: 8192)
    }
}
