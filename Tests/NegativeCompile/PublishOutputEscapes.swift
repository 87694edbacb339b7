// The loaned chunk's OutputRawSpan kept past the publish would write into a chunk that subscribers are reading.
// expect: Escapable
import SharedMemory

func publishOutputEscapes(_ region: borrowing AnyRegion) throws -> Int {
    var publisher = try Publisher(region)
    var kept = OutputRawSpan()
    try publisher.publish(count: 8) { (output: inout OutputRawSpan) in swap(&kept, &output) }
    return kept.byteCount
}
