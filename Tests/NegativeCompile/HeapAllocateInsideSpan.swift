// Allocating (which may remap the region, when another process grew the heap) while a span of the heap is in use.
// expect: overlapping accesses to 'heap'
import SharedMemory

func heapAllocateInsideSpan(_ name: RegionName) throws {
    var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
    let values = try heap.allocate(UInt64.self, count: 4)
    try heap.withMutableSpan(values) { (span: inout MutableSpan<UInt64>) in
        span[0] = 1
        _ = try heap.allocate(byteCount: 8)
    }
}
