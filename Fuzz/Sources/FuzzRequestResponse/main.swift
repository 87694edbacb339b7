// libFuzzer: a request/response service as a broken or hostile peer could leave it. The input is a list of patches
// (a 16-bit offset, a length of 1 to 8, that many bytes) written over a freshly formatted service in which a client
// has sent two requests and the server has answered one; then a client connects and sends, the server takes the seat
// and handles, and the clients read responses. Every step succeeds or says why (foreign, busy, timedOut,
// limitExceeded, peerDied, notReady, alreadyExists, invalidArgument): nothing crashes, hangs, or reads or writes
// outside the service (it ends at a guard page, and its region starts at one: an access past either is a crash).
// The connections' lock (bytes 128 to 167) is left alone (a peer that writes over a lock can make others wait).
import Glibc
import FuzzDriver
import SharedMemory

let allowed: Set<SharedMemoryError.Code> = [.foreign, .busy, .timedOut, .limitExceeded, .peerDied, .notReady, .alreadyExists, .invalidArgument]
let bytes = RequestResponse.size(maxRequest: 64, maxResponse: 64, clients: 2, depth: 2)
nonisolated(unsafe) let place = GuardedPlace(size: bytes)
/// The service ends exactly where the guard page starts.
let at = place.offset(endingHere: bytes, alignment: 64)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let region = place.region()
    do {
        try RequestResponse.format(region, at: at, maxRequest: 64, maxResponse: 64, clients: 2, depth: 2)
        var server = try Server(region, at: at)
        var client = try Client(region, at: at)
        for length in [3, 64] { try client.send(count: length) { for byte in 0..<UInt8(length) { $0.append(byte) } } }
        try server.handle(timeout: .zero) { request, response, _ in response.append(UInt8(request.byteCount)) }
        server.finish()
    } catch {
        fatalError("setting up: \(error)")
    }
    try! region.withUnsafeMutableBytes { whole in
        applyPatches(input, to: UnsafeMutableRawBufferPointer(rebasing: whole[at...]), sparing: 128..<168)
    }
    inspectEveryWay(region, at: at)
    func check(_ body: () throws -> Void) { expectAnswer(allowed, body) }
    // The client slot the setup left (its process is this one: alive) and a new one read and send.
    check {
        var client = try Client(region, at: at)
        _ = try client.send(count: 8) { for byte in 0..<UInt8(8) { $0.append(byte) } }
        for _ in 0..<3 {
            let count = try client.receive(timeout: .zero) { bytes, _ in bytes.byteCount }
            precondition(count <= 64)
        }
    }
    check {
        var server = try Server(region, at: at)
        for _ in 0..<4 {
            try server.handle(timeout: .zero) { request, response, info in
                precondition(request.byteCount <= 64)
                // As much as fits: the response's room is the service's largest response as this server read it.
                for _ in 0..<min(response.freeCapacity, request.byteCount) { response.append(UInt8(info.correlation & 0xff)) }
            }
        }
        server.finish()
    }
    check {
        var client = try Client(region, at: at)
        _ = try client.request(count: 1, timeout: .zero, { $0.append(1 as UInt8) }) { bytes in bytes.byteCount }
    }
    return 0
}

runFuzzer { data, size in fuzz(data, size) }
