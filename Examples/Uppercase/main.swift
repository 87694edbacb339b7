// Request/response across processes: a server upper-cases what clients send; each client gets back the answer to
// its own request (matched by correlation id).
//
//   swift run uppercase server --region posix:/uppercase --requests 3 &
//   swift run uppercase client --region posix:/uppercase hello world again

import Glibc
import SharedMemory

let arguments = CommandLine.arguments
func value(_ flag: String) -> String? { arguments.firstIndex(of: flag).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }
guard arguments.count >= 2, let regionText = value("--region"), let name = try? RegionName(regionText) else {
    print("usage: uppercase server|client --region NAME [--requests N] [WORDS...]")
    exit(2)
}

/// A failure of this example's own (not the library's), with the sentence to print.
struct ExampleFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The program; what it throws is printed below as one line.
func run() throws {
    switch arguments[1] {
    case "server":
        let requests = Int(value("--requests") ?? "1") ?? 1
        try? SharedMemory.remove(name)
        let region = try SharedMemory.create(name, size: RequestResponse.size(maxRequest: 256, maxResponse: 256, clients: 4, depth: 2))
        try RequestResponse.format(region, maxRequest: 256, maxResponse: 256, clients: 4, depth: 2)
        let server = try Server(region)
        for _ in 0..<requests {
            try server.handle(timeout: .seconds(10)) { request, response, _ in
                for index in 0..<request.byteCount {
                    let byte = request.unsafeLoad(fromByteOffset: index, as: UInt8.self)
                    response.append((97...122).contains(byte) ? byte - 32 : byte)
                }
            }
        }
        server.finish()
        try region.remove()
    case "client":
        var region: AnyRegion? = nil
        for _ in 0..<5000 where region == nil {
            region = try? SharedMemory.open(name)
            if region == nil { usleep(1000) }
        }
        guard let region else {
            throw ExampleFailure("client: no service at \(name)")
        }
        let client = try Client(region, timeout: .seconds(5))
        for word in arguments.dropFirst(4) {
            let bytes = Array(word.utf8)
            let answer = try client.request(count: bytes.count, timeout: .seconds(10), { for byte in bytes { $0.append(byte) } }) { response in
                String(decoding: (0..<response.byteCount).map { response.unsafeLoad(fromByteOffset: $0, as: UInt8.self) }, as: UTF8.self)
            }
            print("client: \(word) -> \(answer)")
        }
        client.close()
    default:
        print("usage: uppercase server|client --region NAME [--requests N] [WORDS...]")
        exit(2)
    }
}

// An example is what users copy: a failure is one line saying why (the error's description names the region, the
// call and what to do) and exit status 1, never a crash report.
do {
    try run()
} catch {
    let line = "uppercase: \(error)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }  // standard error
    exit(1)
}
