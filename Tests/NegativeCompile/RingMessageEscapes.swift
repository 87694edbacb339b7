// A received message handed out of receive's body would outlive it: its space is reused once the body returns.
// expect: Escapable
import SharedMemory

func ringMessageEscapes(_ receiver: borrowing RingReceiver) throws {
    let message: RawSpan? = try receiver.receive { (bytes: RawSpan) -> RawSpan in bytes }
    _ = message?.byteCount
}
