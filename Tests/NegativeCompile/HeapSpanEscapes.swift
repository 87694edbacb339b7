// A span of heap values returned out of withSpan would outlive the body, and perhaps the mapping (the heap may
// remap on its next operation).
// expect: Escapable
import SharedMemory

func heapSpanEscapes(_ name: RegionName) throws {
    var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
    let values = try heap.allocate(UInt64.self, count: 4)
    let span: Span<UInt64> = try heap.withSpan(values) { (span: Span<UInt64>) -> Span<UInt64> in span }
    _ = span.count
}
