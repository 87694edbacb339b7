// Taking the region back out of a heap ends the heap: it cannot be used after.
// expect: used after consume
import SharedMemory

func heapRegionTakenBack(_ name: RegionName) throws {
    var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
    var region = heap.intoRegion()
    try region.resize(to: 1 << 20)
    _ = try heap.allocate(byteCount: 8)
}
