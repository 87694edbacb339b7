// libFuzzer: any bytes as the start of a region that should hold a message ring, as a broken or hostile sender
// could leave it. Attaching either succeeds with a header that really fits, or is refused; every message read
// lies inside the ring; nothing crashes, nothing reads past the region.
import Glibc
import SharedMemory

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let region = try! SharedMemory.create(.memfd("fuzz"), size: 64 * 1024)
    try! region.withUnsafeMutableBytes { bytes in
        bytes.copyMemory(from: UnsafeRawBufferPointer(start: data, count: min(size, bytes.count)))
    }
    do {
        let receiver = try RingReceiver(region)
        // Read what the "sender" left, as far as it goes: every message must lie inside the ring.
        for _ in 0..<64 {
            guard let message = try receiver.tryReceive() else { break }
            precondition(message.count <= receiver.maximumMessage)
        }
    } catch {
        // Refused as not a ring (or corrupt), or the consumer seat names a live process: both are answers.
        precondition(error.code == .foreign || error.code == .busy, "\(error)")
    }
    return 0
}

// libFuzzer's own main does not run in a SwiftPM executable (Swift's does), so hand it the loop.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzer(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzer(&argc, &argv) { data, size in fuzz(data, size) })
