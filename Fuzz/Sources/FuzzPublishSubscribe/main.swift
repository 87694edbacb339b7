// libFuzzer: a publish/subscribe service as a broken or hostile peer could leave it. The input is a list of patches
// (a 16-bit offset, a length of 1 to 8, that many bytes) written over a freshly formatted service with one sample
// queued for a subscriber and two in the history; then a subscriber connects, a publisher takes the seat, samples are
// published and received. Every step succeeds or says why (foreign, busy, timedOut, limitExceeded, noSpace,
// peerDied, notReady, alreadyExists, and invalidArgument for a request the patched configuration no longer allows):
// nothing crashes, hangs, or reads or writes outside the service (it ends at a guard page, and its region starts at one:
// an access past either is a crash). The service's
// lock and the publish epoch are left alone (a peer that writes over a lock, or leaves the epoch odd while its publisher
// lives, can make others wait; see Docs/PublishSubscribe.md).
import Glibc
import FuzzDriver
import SharedMemory

let allowed: Set<SharedMemoryError.Code> = [.foreign, .busy, .timedOut, .limitExceeded, .noSpace, .peerDied, .notReady, .alreadyExists, .invalidArgument]
let bytes = PublishSubscribe.size(maxPayload: 64, subscribers: 2, queueDepth: 4, history: 2)
nonisolated(unsafe) let place = GuardedPlace(size: bytes)
/// The service ends exactly where the guard page starts.
let at = place.offset(endingHere: bytes, alignment: 64)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let region = place.region()
    try! PublishSubscribe.format(region, at: at, maxPayload: 64, subscribers: 2, queueDepth: 4, history: 2)
    do {
        var publisher = try Publisher(region, at: at, blockTimeout: .milliseconds(1))
        var first = try Subscriber(region, at: at, queueDepth: 4, history: 2)
        for _ in 0..<3 { try publisher.publish(count: 16) { for byte in 0..<UInt8(16) { $0.append(byte) } } }
        _ = try first.receive(timeout: .zero) { bytes, _ in bytes.byteCount }
        publisher.finish()
    } catch {
        fatalError("setting up: \(error)")
    }
    // The patches: never over the lock or the publish epoch (bytes 128 to 191).
    try! region.withUnsafeMutableBytes { whole in
        applyPatches(input, to: UnsafeMutableRawBufferPointer(rebasing: whole[at...]), sparing: 128..<192)
    }
    inspectEveryWay(region, at: at)
    func check(_ body: () throws -> Void) { expectAnswer(allowed, body) }
    check {
        var subscriber = try Subscriber(region, at: at, queueDepth: 2, overflow: .blockPublisher, history: 1)
        for _ in 0..<6 {
            let count = try subscriber.receive(timeout: .zero) { bytes, _ in bytes.byteCount }
            precondition((count ?? 0) <= 64)
        }
    }
    check {
        var publisher = try Publisher(region, at: at, blockTimeout: .milliseconds(1))
        for length in [0, 8, 64] { try publisher.publish(count: length) { _ in } }
        try publisher.update()
    }
    check {
        var subscriber = try Subscriber(region, at: at)
        _ = try subscriber.receive(timeout: .zero) { bytes, _ in bytes.byteCount }
        subscriber.close()
    }
    // A typed subscriber reads the patched sample type (hash, size, alignment, name) and says typeMismatch; where
    // the patches make it match, it reads samples of its size only.
    expectAnswer(allowed.union([.typeMismatch])) {
        var typed = try TypedSubscriber<Sample64>(region, at: at)
        _ = try typed.receive(timeout: .zero)
    }
    return 0
}

/// A 64-byte sample type for the typed subscriber.
struct Sample64: BitwiseCopyable {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
}

runFuzzer { data, size in fuzz(data, size) }
