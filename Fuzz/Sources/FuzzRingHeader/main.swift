// libFuzzer: any bytes as the start of a region that should hold a message ring, as a broken or hostile sender
// could leave it, read by a receiver and written to by a sender. Attaching either succeeds with a header that
// really fits, or is refused; nothing crashes, nothing reads or writes past the ring (the region lies between guard
// pages, so an access past it is a crash).
import Glibc
import FuzzDriver
import SharedMemory

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    inspectEveryWay(region(holding: input), at: 0)
    // As the receiver, of what a "sender" left: every message read lies inside the ring.
    do {
        let receiver = try RingReceiver(region(holding: input))
        for _ in 0..<64 {
            guard let message = try receiver.tryReceive() else { break }
            precondition(message.count <= receiver.maximumMessage)
        }
    } catch {
        // Refused as not a ring (or corrupt), or the consumer seat names a live process: both are answers.
        precondition(error.code == .foreign || error.code == .busy, "\(error)")
    }
    // As the sender, over what a "receiver" left: sends of sizes taken from the input never write outside.
    do {
        let sender = try RingSender(region(holding: input))
        for (index, byte) in input.suffix(64).enumerated() {
            let count = (Int(byte) << (index % 8)) % (sender.maximumMessage + 1)
            guard try sender.trySend(UnsafeRawBufferPointer(start: data, count: min(count, size))) else { break }
        }
    } catch {
        precondition(error.code == .foreign || error.code == .busy, "\(error)")
    }
    return 0
}

/// Where each input's region lies: between guard pages, so a read or write past the ring is a crash seen here.
nonisolated(unsafe) let place = GuardedPlace(size: 64 * 1024)

/// A fresh memfd region whose first bytes are the input.
func region(holding input: UnsafeRawBufferPointer) -> AnyRegion {
    let region = place.region()
    try! region.withUnsafeMutableBytes { bytes in
        bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: input.prefix(bytes.count)))
    }
    return region
}

runFuzzer { data, size in fuzz(data, size) }
