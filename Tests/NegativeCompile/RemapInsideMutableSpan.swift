// Remapping while a mutable span of the same region is in use.
// expect: overlapping accesses to 'region'
import SharedMemory

func remapInsideMutableSpan(_ name: RegionName) throws {
    var region = try SharedMemory.create(name, size: 4096)
    try region.withMutableBytes { (_: inout MutableRawSpan) throws(SharedMemoryError) in
        _ = try region.remap()
    }
}
