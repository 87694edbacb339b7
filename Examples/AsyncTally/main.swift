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

    init(answers: consuming RingSender) { self.answers = answers }

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

switch arguments[1] {
case "server":
    try? SharedMemory.remove(name)
    let region = try SharedMemory.create(name, size: 2 * ringSize)
    try MessageRing.format(region, at: 0)
    try MessageRing.format(region, at: ringSize)
    let receiver = try RingReceiver(region, at: 0)
    let tally = Tally(answers: try RingSender(region, at: ringSize))
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
        print("client: no server at \(name)")
        exit(1)
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
