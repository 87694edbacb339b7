// Resizing while a span of the same region is in use.
// expect: overlapping accesses to 'region'
import SharedMemory

func resizeInsideSpan(_ name: RegionName) throws {
    var region = try SharedMemory.create(name, size: 4096)
    try region.withBytes { (_: RawSpan) throws(SharedMemoryError) in
        try region.resize(to: 8192)
    }
}
