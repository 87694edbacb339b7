import Glibc
import SharedMemory

// Publish/subscribe and the seqlock cell for the tests (see PublishSubscribeTests):
//
//   ps-format NAME MAXPAYLOAD SUBSCRIBERS QUEUEDEPTH HISTORY
//                   format a service at 0 of the region; print `ok SIZE` (the bytes it takes)
//   ps-publish NAME COUNT [MILLISECONDS]
//                   take the publisher's seat of the service at 0, print `ok publishing`, publish COUNT samples
//                   (0: until killed), sample i holding the bytes of its sequence number s repeated, (s + j) % 251 at
//                   byte j after the first 8, its size cycling through 8, 64, 1000 and the service's largest,
//                   pausing MILLISECONDS after each; then finish and print `ok COUNT`
//   ps-subscribe NAME COUNT [hold|slow|block]
//                   connect as a subscriber, print `ok connected`, receive COUNT samples (0: until the stream ends)
//                   checking each one's bytes against its sequence number; with `hold`, sleep inside the first
//                   receive until killed; with `block`, block the publisher; with `slow`, block it and take a
//                   millisecond per sample; print `ok RECEIVED LOST` at the end of the stream, `error ...` on peerDied
//   ps-subscribe-fork NAME
//                   subscribe, fork; the child closes its inherited copy and exits; print `ok forked`, then receive
//                   one sample and print `ok SEQUENCE`
//   ps-subscribe-drop NAME
//                   connect as a blocking subscriber, drop the handle without close(), print `ok dropped`, and
//                   live on until killed
//   seat-drop NAME ROLE
//                   take ROLE's seat (sender or receiver of the ring at 0; publisher, server, or writer of the 64-byte
//                   seqlock cell at 0), drop the handle without closing or finishing, print `ok dropped`, and live on
//                   until killed: the seat must be free to take over meanwhile, and this process's death still heard
//   byname-receive NAME    RingReceiver.open(NAME, timeout: 10 s) before NAME may exist; print the first message
//   byname-subscribe NAME  Subscriber.open(NAME, timeout: 10 s); print `ok connected`, then the first sample's bytes
//   typed-publish NAME COUNT
//                   TypedPublisher<ProbeQuote>.create(NAME, subscribers: 2); print `ok created`; wait (10 s at most)
//                   for a subscriber, publish COUNT quotes (quote i: bid i, ask i + 0.5, sequence i), finish
//   typed-subscribe NAME
//                   TypedSubscriber<ProbeQuote>.open(NAME, timeout: 10 s); print `ok connected`; receive to the end,
//                   checking each quote against its sequence number; print `ok RECEIVED`
//   typed-serve NAME COUNT
//                   TypedServer<ProbeLookup, ProbePrice>.create(NAME, clients: 2); print `ok created`; answer COUNT
//                   requests (a lookup of key k: a price of k / 4), then finish
//   typed-request NAME COUNT
//                   TypedClient<ProbeLookup, ProbePrice>.open(NAME, timeout: 10 s); COUNT requests (keys 1...COUNT),
//                   each answer checked; print `ok COUNT`
//   byname-either-send NAME TEXT
//                   RingSender.openOrCreate(NAME, capacity: 4096, timeout: 10 s), whoever made it; send TEXT and finish
//   seqlock-write NAME COUNT
//                   take the writer's seat of the 64-byte cell at 0 and write COUNT values, each eight equal words
//   seqlock-read NAME COUNT
//                   read the cell COUNT times; print `ok TORN` (reads whose words disagreed: must be 0)

enum PubSubSamples {
    static func size(_ sequence: UInt64, limit: Int) -> Int { min(limit, [8, 64, 1000, limit][Int(sequence % 4)]) }

    static func fill(_ output: inout OutputRawSpan, sequence: UInt64, size: Int) {
        for j in 0..<size {
            output.append(j < 8 ? UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(j))) : UInt8((Int(sequence % 251) + j) % 251))
        }
    }

    static func check(_ bytes: RawSpan, sequence: UInt64, limit: Int) -> Bool {
        guard bytes.byteCount == size(sequence, limit: limit) else { return false }
        for j in 0..<bytes.byteCount {
            let expected = j < 8 ? UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(j))) : UInt8((Int(sequence % 251) + j) % 251)
            if bytes.unsafeLoad(fromByteOffset: j, as: UInt8.self) != expected { return false }
        }
        return true
    }
}

struct SeqlockValue: BitwiseCopyable {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    init(_ value: UInt64) { words = (value, value, value, value, value, value, value, value) }
    var agrees: Bool {
        let w = words
        return w.0 == w.1 && w.1 == w.2 && w.2 == w.3 && w.3 == w.4 && w.4 == w.5 && w.5 == w.6 && w.6 == w.7
    }
}

func pubSubProbe(_ operation: String, _ name: RegionName, _ rest: [String]) throws -> String? {
    switch operation {
    case "ps-format":
        let region = try attach(name)
        let (payload, subscribers, depth, history) = (Int(rest[0])!, Int(rest[1])!, Int(rest[2])!, Int(rest[3])!)
        try PublishSubscribe.format(region, maxPayload: payload, subscribers: subscribers, queueDepth: depth, history: history)
        return "\(PublishSubscribe.size(maxPayload: payload, subscribers: subscribers, queueDepth: depth, history: history))"
    case "ps-publish":
        let region = try attach(name)
        let publisher = try Publisher(region, timeout: .seconds(5))
        print("ok publishing")
        fflush(nil)
        let count = Int(rest[0])!, pause = rest.count > 1 ? UInt32(rest[1])! : 0
        var published = 0
        while count == 0 || published < count {
            // The sequence this sample will get: one more than the service's last (this is its only publisher).
            let next = publisher.lastSequence + 1
            let size = PubSubSamples.size(next, limit: publisher.maxPayload)
            let sequence = try publisher.publish(count: size) { PubSubSamples.fill(&$0, sequence: next, size: size) }
            guard sequence == next else { return "published \(sequence), expected \(next)" }
            published += 1
            if pause > 0 { usleep(pause * 1000) }
        }
        publisher.finish()
        return "\(published)"
    case "ps-subscribe-fork":
        // Subscribe, fork, and let the child close its inherited copy of the subscriber: the parent's subscription
        // must stand. Then receive one sample and print its sequence.
        let region = try attach(name)
        let subscriber = try Subscriber(region, timeout: .seconds(5))
        let child = fork()
        if child == 0 {
            subscriber.close()
            _exit(0)
        }
        var status: Int32 = 0
        waitpid(child, &status, 0)
        print("ok forked")
        fflush(nil)
        let sequence = try subscriber.receive(timeout: .seconds(5)) { (_: RawSpan, info: SampleInfo) in info.sequence }
        return sequence.map { "\($0)" } ?? "finished"
    case "ps-subscribe-drop":
        // Connect, drop the handle without close(), say so, and live on until killed: the slot must be free meanwhile.
        let region = try attach(name)
        do {
            let subscriber = try Subscriber(region, overflow: .blockPublisher, timeout: .seconds(5))
            _ = subscriber.maxPayload
        }
        print("ok dropped")
        fflush(nil)
        while true { pause() }
    case "ps-subscribe":
        let region = try attach(name)
        let mode = rest.count > 1 ? rest[1] : ""
        let subscriber = try Subscriber(region, overflow: mode == "slow" || mode == "block" ? .blockPublisher : .overwriteOldest, timeout: .seconds(5))
        print("ok connected")
        fflush(nil)
        let count = Int(rest[0])!, hold = mode == "hold"
        let limit = subscriber.maxPayload
        var received = 0
        while count == 0 || received < count {
            let good = try subscriber.receive { (bytes, info) -> Bool in
                if hold {
                    print("ok holding")
                    fflush(nil)
                    while true { pause() }
                }
                return PubSubSamples.check(bytes, sequence: info.sequence, limit: limit)
            }
            guard let good else { break }
            if !good { return "bad sample" }
            received += 1
            if mode == "slow" { usleep(1000) }
        }
        return "\(received) \(subscriber.lost)"
    case "byname-receive":
        let receiver = try RingReceiver.open(name, timeout: .seconds(10))
        return String(decoding: try receiver.receive(timeout: .seconds(10)) ?? [], as: UTF8.self)
    case "typed-publish":
        let publisher = try TypedPublisher<ProbeQuote>.create(name, subscribers: 2, queueDepth: 64)
        print("ok created")
        fflush(nil)
        for _ in 0..<10_000 where publisher.subscriberCount == 0 { usleep(1000) }
        for i in 1...UInt64(rest[0])! { try publisher.publish(ProbeQuote(bid: Double(i), ask: Double(i) + 0.5, sequence: i)) }
        publisher.finish()
        return "published"
    case "typed-subscribe":
        let subscriber = try TypedSubscriber<ProbeQuote>.open(name, queueDepth: 64, timeout: .seconds(10))
        print("ok connected")
        fflush(nil)
        var received = 0
        while let good = try subscriber.receive(timeout: .seconds(10), { (quote: ProbeQuote, info: SampleInfo) in
            quote.sequence == info.sequence && quote.bid == Double(info.sequence) && quote.ask == quote.bid + 0.5
        }) {
            if !good { return "bad quote" }
            received += 1
        }
        return "\(received)"
    case "typed-serve":
        let server = try TypedServer<ProbeLookup, ProbePrice>.create(name, clients: 2)
        print("ok created")
        fflush(nil)
        for _ in 0..<Int(rest[0])! { try server.handle(timeout: .seconds(10)) { lookup, _ in ProbePrice(value: Double(lookup.key) / 4) } }
        server.finish()
        return "served"
    case "typed-request":
        let client = try TypedClient<ProbeLookup, ProbePrice>.open(name, timeout: .seconds(10))
        var answered = 0
        for key in 1...UInt64(rest[0])! {
            let price = try client.request(ProbeLookup(key: key), timeout: .seconds(10))
            if price.value != Double(key) / 4 { return "bad price \(price.value) for \(key)" }
            answered += 1
        }
        return "\(answered)"
    case "byname-either-send":
        let sender = try RingSender.openOrCreate(name, capacity: 4096, timeout: .seconds(10))
        try sender.send(Array(rest[0].utf8))
        sender.finish()
        return "sent"
    case "byname-subscribe":
        let subscriber = try Subscriber.open(name, timeout: .seconds(10))
        print("ok connected")
        fflush(nil)
        let text = try subscriber.receive(timeout: .seconds(10)) { (bytes: RawSpan, _: SampleInfo) in
            bytes.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        }
        return text ?? "finished"
    case "seat-drop":
        let region = try attach(name)
        switch rest[0] {
        case "sender": do { let sender = try RingSender(region); _ = sender.maxMessage }
        case "receiver": do { let receiver = try RingReceiver(region); _ = receiver.maxMessage }
        case "publisher": do { let publisher = try Publisher(region, timeout: .seconds(5)); _ = publisher.maxPayload }
        case "server": do { let server = try Server(region, timeout: .seconds(5)); _ = server.maxResponse }
        case "writer": do { let writer = try SeqlockCell<SeqlockValue>.Writer(in: region, at: 0); writer.write(SeqlockValue(7)) }
        default: return "unknown role \(rest[0])"
        }
        print("ok dropped")
        fflush(nil)
        while true { pause() }
    case "seqlock-write":
        let region = try attach(name)
        let writer = try SeqlockCell<SeqlockValue>.Writer(in: region, at: 0)
        for i in 1...UInt64(rest[0])! { writer.write(SeqlockValue(i)) }
        writer.close()
        return ""
    case "seqlock-read":
        let region = try attach(name)
        let cell = try SeqlockCell<SeqlockValue>(in: region, at: 0)
        var torn = 0
        for _ in 0..<Int(rest[0])! where !(try cell.read().agrees) { torn += 1 }
        return "\(torn)"
    default:
        return nil
    }
}

// Request/response for the tests (see RequestResponseTests):
//
//   rr-serve NAME COUNT    take the server's seat, print `ok serving`, answer COUNT requests (0: until killed): the
//                          response is the request's bytes reversed; print `ok COUNT`
//   rr-client NAME COUNT   connect, print `ok connected`, send COUNT requests (request i: the bytes of i, then
//                          (i + j) % 251 up to a size cycling through 0, 8, 100 and the largest) and check each
//                          response; print `ok COUNT`, or the error (peerDied when the server dies)
func requestResponseProbe(_ operation: String, _ name: RegionName, _ rest: [String]) throws -> String? {
    switch operation {
    case "rr-serve":
        let region = try attach(name)
        let server = try Server(region, timeout: .seconds(5))
        print("ok serving")
        fflush(nil)
        let count = Int(rest[0])!
        var served = 0
        while count == 0 || served < count {
            try server.handle { request, response, _ in
                for j in stride(from: request.byteCount - 1, through: 0, by: -1) { response.append(request.unsafeLoad(fromByteOffset: j, as: UInt8.self)) }
            }
            served += 1
        }
        return "\(served)"
    case "rr-client":
        let region = try attach(name)
        let client = try Client(region, timeout: .seconds(5))
        print("ok connected")
        fflush(nil)
        let count = Int(rest[0])!
        for i in 0..<count {
            let size = [0, 8, 100, client.maxRequest][i % 4]
            let request = (0..<size).map { j in j < 8 ? UInt8(truncatingIfNeeded: i >> (8 * j)) : UInt8((i + j) % 251) }
            let good = try client.request(count: size, { for byte in request { $0.append(byte) } }) { response -> Bool in
                guard response.byteCount == size else { return false }
                for j in 0..<size where response.unsafeLoad(fromByteOffset: j, as: UInt8.self) != request[size - 1 - j] { return false }
                return true
            }
            if !good { return "bad response \(i)" }
        }
        return "\(count)"
    default:
        return nil
    }
}

/// The typed samples of `typed-publish` and `typed-subscribe`: one type in one module, as typed services need.
struct ProbeQuote: BitwiseCopyable {
    var bid: Double
    var ask: Double
    var sequence: UInt64
}

/// The typed requests and responses of `typed-serve`.
struct ProbeLookup: BitwiseCopyable {
    var key: UInt64
}

struct ProbePrice: BitwiseCopyable {
    var value: Double
}
