// A sample's bytes returned out of receive would outlive the sample, which is released (and may be reused by the
// publisher) when the body returns.
// expect: Escapable
import SharedMemory

func sampleEscapes(_ region: borrowing AnyRegion) throws {
    var subscriber = try Subscriber(region)
    let bytes: RawSpan? = try subscriber.receive { (bytes: RawSpan, _: SampleInfo) -> RawSpan in bytes }
    _ = bytes?.byteCount
}
