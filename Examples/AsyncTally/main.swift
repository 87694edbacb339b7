// An actor serves requests from a ring while other tasks keep running: async waits suspend the task, and no thread
// of Swift's cooperative pool is held while the ring is empty.
//
//   swift run async-tally server --region posix:/tally &
//   swift run async-tally client --region posix:/tally 1 2 3
//
// The client sends numbers on one ring; the server's actor adds each to a running total and answers with it on a
// second ring. Meanwhile a ticker task on the same pool counts milliseconds.

import Glibc
import SharedMemory

let arguments = CommandLine.arguments
func value(_ flag: String) -> String? { arguments.firstIndex(of: flag).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }
guard arguments.count >= 2, let regionText = value("--region"), let name = try? RegionName(regionText) else {
    print("usage: async-tally server|client --region NAME [NUMBERS...]")
    exit(2)
}
let ringSize = MessageRing.size(capacity: 1 << 16)

/// Keeps a running total; requests arrive on a ring, answers leave on another.
actor Tally {
    private var total = 0
    private let answers: RingSender

    /// Attaches as the sender of the answers' ring at `offset` of the region `name`, through an attachment of its own
    /// (an attachment is not `Sendable`, so the actor opens one rather than being handed the caller's).
    init(answeringIn name: RegionName, at offset: Int) throws {
        answers = try RingSender(try SharedMemory.open(name), at: offset)
    }

    /// Serves until the client finishes its stream; returns how many requests it served and the total.
    func serve(_ requests: RingMessages) async throws -> (served: Int, total: Int) {
        var served = 0
        for try await request in requests {  // suspends (holding no thread) while the ring is empty
            total += Int(String(decoding: request, as: UTF8.self)) ?? 0
            try await answers.sendAsync(Array(String(total).utf8))
            served += 1
        }
        answers.finish()
        return (served, total)
    }
}

/// Counts milliseconds until cancelled: proof that the pool is free while the actor waits.
final class Ticks: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var count = 0
    init() { pthread_mutex_init(lock, nil) }
    func add() { pthread_mutex_lock(lock); count += 1; pthread_mutex_unlock(lock) }
    var value: Int { pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }; return count }
}

/// A failure of this example's own (not the library's), with the sentence to print.
struct ExampleFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The program; what it throws is printed below as one line.
@MainActor
func run() async throws {
    switch arguments[1] {
    case "server":
        try? SharedMemory.remove(name)
        let region = try SharedMemory.create(name, size: 2 * ringSize)
        try MessageRing.format(region, at: 0)
        try MessageRing.format(region, at: ringSize)
        let receiver = try RingReceiver(region, at: 0)
        let tally = try Tally(answeringIn: name, at: ringSize)
        let ticks = Ticks()
        let ticker = Task {
            while !Task.isCancelled {
                ticks.add()
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        let (served, total) = try await tally.serve(receiver.messages)
        ticker.cancel()
        print("server: served \(served) requests, total \(total)" + (ticks.value > 0 ? ", while the ticker kept running" : ""))
        try region.remove()
    case "client":
        var region: AnyRegion? = nil
        for _ in 0..<5000 where region == nil {
            region = try? SharedMemory.open(name)
            if region == nil { usleep(1000) }
        }
        guard let region else {
            throw ExampleFailure("client: no server at \(name)")
        }
        try MessageRing.waitUntilFormatted(region, at: ringSize, timeout: .seconds(5))
        let requests = try RingSender(region, at: 0)
        let answers = try RingReceiver(region, at: ringSize)
        for number in arguments.dropFirst(4) {
            try requests.send(Array(number.utf8))
            let answer = try answers.receive(timeout: .seconds(10)) ?? []
            print("client: +\(number) -> \(String(decoding: answer, as: UTF8.self))")
            usleep(20_000)  // the client thinks a while; the server's actor waits without holding a thread
        }
        requests.finish()
    default:
        print("usage: async-tally server|client --region NAME [NUMBERS...]")
        exit(2)
    }
}

// An example is what users copy: a failure is one line saying why (the error's description names the region, the
// call and what to do) and exit status 1, never a crash report.
do {
    try await run()
} catch {
    let line = "async-tally: \(error)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }  // standard error
    exit(1)
}
