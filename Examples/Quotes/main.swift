// Publish/subscribe across processes: a publisher sends quotes to every subscriber, zero-copy; a subscriber that
// starts late asks for the last three first.
//
//   swift run quotes publisher --region posix:/quotes --count 10 &
//   swift run quotes subscriber --region posix:/quotes &
//   swift run quotes subscriber --region posix:/quotes
//
// The publisher creates and formats the service, waits for two subscribers, publishes COUNT quotes, and finishes;
// each subscriber prints what it receives until the stream ends. The publisher removes the region at the end.

import Glibc
import SharedMemory

let arguments = CommandLine.arguments
func value(_ flag: String) -> String? { arguments.firstIndex(of: flag).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }
guard arguments.count >= 2, let regionText = value("--region"), let name = try? RegionName(regionText) else {
    print("usage: quotes publisher|subscriber --region NAME [--count N]")
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
    case "publisher":
        let count = Int(value("--count") ?? "10") ?? 10
        let size = PublishSubscribe.size(maxPayload: 64, subscribers: 4, queueDepth: 16, history: 3)
        try? SharedMemory.remove(name)
        let region = try SharedMemory.create(name, size: size)
        try PublishSubscribe.format(region, maxPayload: 64, subscribers: 4, queueDepth: 16, history: 3)
        let publisher = try Publisher(region)
        // Wait (up to 10 s) for two subscribers, so that both see every quote; say so (on standard error).
        let waiting = "publisher: waiting up to 10 s for 2 subscribers on \(name)…\n"
        _ = waiting.withCString { write(2, $0, strlen($0)) }
        for _ in 0..<10_000 where publisher.subscriberCount < 2 { usleep(1000) }
        for i in 1...count {
            let quote = Array("EURUSD \(1.0800 + Double(i) / 10_000)".utf8)
            try publisher.publish(count: quote.count) { output in for byte in quote { output.append(byte) } }
        }
        let subscribers = publisher.subscriberCount
        publisher.finish()
        print("publisher: published \(count) quotes to \(subscribers) subscribers")
        // Give the subscribers a moment to read the last ones, then take the name away (their mappings stay).
        usleep(200_000)
        try region.remove()
    case "subscriber":
        var region: AnyRegion? = nil
        for _ in 0..<5000 where region == nil {
            region = try? SharedMemory.open(name)
            if region == nil { usleep(1000) }
        }
        guard let region else {
            throw ExampleFailure("subscriber: no service at \(name)")
        }
        let subscriber = try Subscriber(region, overflow: .overwriteOldest, history: 3, timeout: .seconds(5))
        var received = 0
        while let text = try subscriber.receive(timeout: .seconds(10), { (bytes: RawSpan, info: SampleInfo) in
            "#\(info.sequence) " + String(decoding: (0..<bytes.byteCount).map { bytes.unsafeLoad(fromByteOffset: $0, as: UInt8.self) }, as: UTF8.self)
        }) {
            print("subscriber: \(text)")
            received += 1
        }
        print("subscriber: \(received) quotes, \(subscriber.lost) lost")
        subscriber.close()
    default:
        print("usage: quotes publisher|subscriber --region NAME [--count N]")
        exit(2)
    }
}

// An example is what users copy: a failure is one line saying why (the error's description names the region, the
// call and what to do) and exit status 1, never a crash report.
do {
    try run()
} catch {
    let line = "quotes: \(error)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }  // standard error
    exit(1)
}
