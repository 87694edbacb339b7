import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// Typed publish/subscribe (Channel/TypedPublishSubscribe.swift): a service of one type's values, the type recorded
/// in the header and checked on attach.
@Suite("Typed publish/subscribe")
struct TypedPubSubTests {
    struct Quote: BitwiseCopyable, Equatable {
        var bid: Double
        var ask: Double
        var time: UInt64
    }

    /// The same size and alignment as `Quote`, another name.
    struct Trade: BitwiseCopyable {
        var price: Double
        var quantity: Double
        var time: UInt64
    }

    static func service(_ body: (borrowing AnyRegion) throws -> Void) throws {
        let region = try SharedMemory.create(.anonymous, size: PublishSubscribe.size(of: Quote.self, subscribers: 2, queueDepth: 4, history: 1))
        try PublishSubscribe.format(region, sampleType: Quote.self, subscribers: 2, queueDepth: 4, history: 1)
        try body(region)
    }

    @Test("values go in by copy or in place and come out in place or by copy, in order")
    func publishAndReceive() throws {
        try Self.service { region in
            let publisher = try TypedPublisher<Quote>(region)
            let subscriber = try TypedSubscriber<Quote>(region)
            #expect(try publisher.publish(Quote(bid: 1.5, ask: 1.75, time: 1)) == 1)
            #expect(try publisher.publish { output in output.append(Quote(bid: 2.5, ask: 2.75, time: 2)) } == 2)
            let first = try subscriber.receive(timeout: .seconds(1)) { (quote: Quote, info: SampleInfo) in (quote.bid, info.sequence) }
            #expect(first?.0 == 1.5 && first?.1 == 1)
            let second = try subscriber.receive(timeout: .seconds(1))
            #expect(second?.sample == Quote(bid: 2.5, ask: 2.75, time: 2) && second?.info.sequence == 2)
            expectError(.timedOut) { try subscriber.receive(timeout: .zero) }
        }
    }

    @Test("an in-place publish that appends nothing publishes nothing and keeps the chunk for the next")
    func emptyInPlacePublish() throws {
        try Self.service { region in
            let publisher = try TypedPublisher<Quote>(region)
            let subscriber = try TypedSubscriber<Quote>(region)
            expectError(.invalidArgument) { try publisher.publish { _ in } }
            #expect(publisher.lastSequence == 0)
            for time in 1...20 as ClosedRange<UInt64> { try publisher.publish(Quote(bid: 0, ask: 0, time: time)) }  // no chunk leaked
            var times: [UInt64] = []
            while let next = try? subscriber.receive(timeout: .zero) { times.append(next.sample.time) }
            #expect(times == [17, 18, 19, 20])  // a queue of 4, the oldest overwritten
        }
    }

    @Test("another type, or a service of bytes, is typeMismatch naming both types; a byte subscriber reads the bytes")
    func typeMismatch() throws {
        try Self.service { region in
            let other = expectError(.typeMismatch) { try TypedSubscriber<Trade>(region) }
            #expect(other?.reason.contains("TypedPubSubTests.Quote (size 24, alignment 8), not SharedMemoryTests.TypedPubSubTests.Trade") == true)
            expectError(.typeMismatch) { try TypedPublisher<Trade>(region) }
            expectError(.typeMismatch) { try TypedSubscriber<UInt64>(region) }
            let publisher = try TypedPublisher<Quote>(region)
            let bytes = try Subscriber(region)
            try publisher.publish(Quote(bid: 3, ask: 4, time: 5))
            #expect(try bytes.receive(timeout: .seconds(1)) { span, _ in span.byteCount } == 24)
        }
        let region = try SharedMemory.create(.anonymous, size: PublishSubscribe.size(maxPayload: 24, subscribers: 1, queueDepth: 1))
        try PublishSubscribe.format(region, maxPayload: 24, subscribers: 1, queueDepth: 1)
        #expect(expectError(.typeMismatch) { try TypedSubscriber<Quote>(region) }?.reason.contains("bytes") == true)
        // Types a service cannot carry.
        struct Empty: BitwiseCopyable {}
        expectError(.invalidArgument) { try PublishSubscribe.format(region, at: 4096, sampleType: Empty.self, subscribers: 1, queueDepth: 1) }
    }

    @Test("a header whose sample type and largest payload disagree is foreign, never a value made past a chunk")
    func forgedHeader() throws {
        try Self.service { region in
            try region.set(UInt64(8), at: ServiceHeader.maxPayload.offset)  // a peer's word: smaller than a Quote
            #expect(expectError(.foreign) { try TypedPublisher<Quote>(region) }?.reason.contains("largest payload 8") == true)
            expectError(.foreign) { try TypedSubscriber<Quote>(region) }
        }
    }

    @Test("a byte publisher's sample of another length is foreign to a typed subscriber, which then reads on")
    func wrongLength() throws {
        try Self.service { region in
            let subscriber = try TypedSubscriber<Quote>(region)
            do {
                let publisher = try Publisher(region)
                try publisher.publish([1, 2, 3] as [UInt8])
                try publisher.publish(count: 24) { output in for _ in 0..<24 { output.append(0 as UInt8) } }
            }
            expectError(.foreign) { try subscriber.receive(timeout: .seconds(1)) }
            #expect(try subscriber.receive(timeout: .seconds(1))?.sample == Quote(bid: 0, ask: 0, time: 0))
        }
    }

    @Test("asynchronously, as the byte subscriber")
    func async() async throws {
        let region = try SharedMemory.create(.anonymous, size: PublishSubscribe.size(of: Quote.self, subscribers: 1, queueDepth: 4))
        try PublishSubscribe.format(region, sampleType: Quote.self, subscribers: 1, queueDepth: 4)
        let publisher = try TypedPublisher<Quote>(region)
        let subscriber = try TypedSubscriber<Quote>(region)
        try publisher.publish(Quote(bid: 7, ask: 8, time: 9))
        #expect(try await subscriber.receiveAsync(timeout: .seconds(1)) { quote, info in quote.time + info.sequence } == 10)
        publisher.finish()
        #expect(try await subscriber.receiveAsync(timeout: .seconds(1)) { quote, _ in quote.time } == nil)
    }

    @Test("by name, across processes: one type in one module; another type here is typeMismatch")
    func twoProcesses() throws {
        try Names.with(.posix) { name in
            let publisher = try Probe.start(["typed-publish", name.description, "50"])
            #expect(publisher.line() == "ok created")
            let mismatch = expectError(.typeMismatch) { try TypedSubscriber<Quote>.open(name, timeout: .seconds(5)) }
            #expect(mismatch?.reason.contains("RegionProbe.ProbeQuote (size 24, alignment 8)") == true)
            expectError(.typeMismatch) { try TypedPublisher<Quote>.openOrCreate(name, subscribers: 2, queueDepth: 64) }
            let subscriber = try Probe.start(["typed-subscribe", name.description])
            #expect(subscriber.line() == "ok connected")
            #expect(subscriber.finish().lastLine == "ok 50")
            #expect(publisher.finish().lastLine == "ok published")
        }
    }
}
