// A typed publish's OutputSpan kept past the publish would write into a chunk that subscribers are reading.
// expect: Escapable
import SharedMemory

struct Reading: BitwiseCopyable { var value: Double }

func typedPublishOutputEscapes(_ region: borrowing AnyRegion) throws -> Int {
    var publisher = try TypedPublisher<Reading>(region)
    var kept = OutputSpan<Reading>()
    try publisher.publish { (output: inout OutputSpan<Reading>) in swap(&kept, &output) }
    return kept.count
}
