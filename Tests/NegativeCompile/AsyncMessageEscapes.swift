// A message's bytes returned out of receiveAsync would outlive the message, whose space the sender reuses once the
// body returns.
// expect: Escapable
import SharedMemory

func asyncMessageEscapes(_ region: borrowing AnyRegion) async throws {
    let receiver = try RingReceiver(region)
    let bytes: RawSpan? = try await receiver.receiveAsync { (bytes: RawSpan) -> RawSpan in bytes }
    _ = bytes?.byteCount
}
