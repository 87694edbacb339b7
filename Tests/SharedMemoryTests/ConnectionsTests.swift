import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// The service's `connections` word (format 3, Docs/WireFormat.md, "Service header"): every connect and reclaim moves
/// it, and a publisher looks at the slots again only when it moved, so what it kept of a slot must never outlive the
/// subscriber it saw there.
@Suite("Publish/subscribe: connections")
struct ConnectionsTests {
    typealias Tests = PublishSubscribeTests

    /// The header's `connections`, read as another process would.
    static func connections(_ region: borrowing AnyRegion) throws -> UInt32 {
        let view = try ServiceView(region, at: 0, timeout: .zero)
        return view.atomic(ServiceHeader.connections.offset, UInt32.self).load(ordering: .sequentiallyConsistent)
    }

    @Test("each connect and close moves connections; the next publish reaches the subscribers there are then, a slot's new subscriber by its own depth")
    func slotChangesHands() throws {
        try Names.with(.posix) { name in
            let region = try Tests.makeService(name, maxPayload: 64, subscribers: 2, queueDepth: 8, history: 2)
            var publisher = try Publisher(try SharedMemory.open(name))
            try Tests.publish(&publisher, 1)  // no one connected: the publisher keeps an empty set
            #expect(try Self.connections(region) == 0)

            var first: Subscriber? = try Subscriber(try SharedMemory.open(name), queueDepth: 8)
            #expect(try Self.connections(region) == 1)
            try Tests.publish(&publisher, 8)  // 2...9: the first subscriber's queue is full, its read position seen at 0
            for expected in 2...9 { #expect(try Tests.receive(&first!)?.sequence == UInt64(expected)) }
            first = nil  // closed: its slot reclaimed
            #expect(try Self.connections(region) == 2)

            // The same slot, another subscriber with a queue of 2: what was seen of the first (depth 8, read 0) must
            // not count as room in its queue.
            do {
                var second = try Subscriber(try SharedMemory.open(name), queueDepth: 2)
                #expect(second.index == 0)
                #expect(try Self.connections(region) == 3)
                try Tests.publish(&publisher, 3)  // 10, 11, 12: the oldest of three is dropped
                #expect(second.lost == 1)
                for expected in 11...12 {
                    let sample = try Tests.receive(&second)
                    #expect(sample?.sequence == UInt64(expected) && sample?.good == true)
                }
                expectError(.timedOut) { _ = try Tests.receive(&second, timeout: .zero) }

                // A subscriber that asks for history gets it with the first publish after it connected, before the
                // sample.
                var late = try Subscriber(try SharedMemory.open(name), history: 2)
                #expect(try Self.connections(region) == 4)
                try Tests.publish(&publisher, 1)  // 13
                for expected in 11...13 { #expect(try Tests.receive(&late)?.sequence == UInt64(expected)) }
                #expect(try Tests.receive(&second)?.sequence == 13)
                #expect(publisher.subscriberCount == 2)
            }  // both closed
            #expect(try Self.connections(region) == 6)

            // History delivered by an update, outside a publish, into a slot that changed hands: by the new
            // subscriber's depth of 1, the older of the two is dropped.
            var third = try Subscriber(try SharedMemory.open(name), queueDepth: 1, history: 2)
            #expect(third.index == 0)
            #expect(try Self.connections(region) == 7)
            try publisher.update()
            #expect(third.lost == 1)
            #expect(try Tests.receive(&third)?.sequence == 13)
            expectError(.timedOut) { _ = try Tests.receive(&third, timeout: .zero) }
        }
    }

    /// A subscriber another thread closes.
    final class Held: @unchecked Sendable {
        var subscriber: Subscriber?
        init(_ subscriber: consuming Subscriber) { self.subscriber = .some(subscriber) }
    }

    @Test("a blocking subscriber that leaves while the publisher waits for room ends the wait; the slot's next subscriber gets the next sample")
    func blockedSubscriberLeaves() throws {
        try Names.with(.posix) { name in
            let region = try Tests.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 4)
            // A block timeout no run reaches: had the wait not seen the slot change hands, the publish would throw.
            let publisher = try Publisher(try SharedMemory.open(name), blockTimeout: .seconds(60))
            let held = Held(try Subscriber(try SharedMemory.open(name), queueDepth: 4, overflow: .blockPublisher))
            let bytes = [UInt8](repeating: 1, count: 8)
            for _ in 0..<4 { _ = try publisher.publish(bytes) }
            // Closed while the fifth publish waits (or before it starts: then it waits for no one).
            let closer = Thread {
                Thread.sleep(forTimeInterval: 0.05)
                held.subscriber = nil
            }
            closer.start()
            #expect(try publisher.publish(bytes) == 5)
            #expect(try Self.connections(region) == 2)
            let next = try Subscriber(try SharedMemory.open(name), queueDepth: 1, overflow: .blockPublisher)
            #expect(try publisher.publish(bytes) == 6)
            #expect(try next.receive(timeout: .seconds(5)) { _, info in info.sequence } == 6)
        }
    }
}
