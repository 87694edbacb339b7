import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// A handle kept in a class (an actor's or a server's state, Docs/Design.md "A handle is one or two words"): sending,
/// publishing, receiving, serving and requesting are non-mutating, so every handle lives in a `let` of the class, and
/// what it holds goes back when the class goes.
@Suite("Handles kept in a class")
struct HandlesInClassTests {
    final class RingPair {
        let sender: RingSender
        let receiver: RingReceiver
        init(_ region: borrowing AnyRegion) throws {
            sender = try RingSender(region)
            receiver = try RingReceiver(region)
        }
        func roundTrip(_ value: UInt64) throws -> UInt64? {
            try withUnsafeBytes(of: value) { try sender.send($0) }
            return try receiver.receive { $0.unsafeLoadUnaligned(as: UInt64.self) }  // a ring message starts 4 bytes into its record
        }
    }

    final class Service {
        let publisher: Publisher
        let subscriber: Subscriber
        let typedPublisher: TypedPublisher<UInt64>
        let typedSubscriber: TypedSubscriber<UInt64>
        init(bytes: borrowing AnyRegion, typed: borrowing AnyRegion) throws {
            subscriber = try Subscriber(bytes)
            publisher = try Publisher(bytes)
            typedSubscriber = try TypedSubscriber<UInt64>(typed)
            typedPublisher = try TypedPublisher<UInt64>(typed)
        }
        func roundTrip(_ value: UInt64) throws -> (UInt64?, UInt64?) {
            try withUnsafeBytes(of: value) { _ = try publisher.publish($0) }
            _ = try typedPublisher.publish(value &* 2)
            let bytes = try subscriber.receive(timeout: .seconds(5)) { bytes, _ in bytes.unsafeLoad(as: UInt64.self) }
            let typed = try typedSubscriber.receive(timeout: .seconds(5))?.sample
            return (bytes, typed)
        }
    }

    final class Calls {
        let server: Server
        let client: Client
        init(_ region: borrowing AnyRegion) throws {
            server = try Server(region)
            client = try Client(region)
        }
        func call(_ value: UInt8) throws -> UInt8 {
            let correlation = try client.send([value])
            try server.handle(timeout: .seconds(5)) { request, response, _ in response.append(request.unsafeLoad(as: UInt8.self) &+ 1) }
            return try client.receive(timeout: .seconds(5)) { response, answered in
                #expect(answered == correlation)
                return response.unsafeLoad(as: UInt8.self)
            }
        }
    }

    @Test("ring sides, publishers, subscribers, servers and clients work from a class's lets, and give their seats back with it")
    func handlesInAClass() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            var pair: RingPair? = try RingPair(region)
            for i: UInt64 in 0..<10_000 { #expect(try pair!.roundTrip(i) == i) }
            pair = nil
            // The seats went with the class: both sides attach again.
            let again = try RingPair(region)
            #expect(try again.roundTrip(7) == 7)
            try region.remove()
        }
        try Names.with(.posix) { name in
            try Names.with(.memfd) { typedName in
                let bytes = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 8, subscribers: 1, queueDepth: 4))
                try PublishSubscribe.format(bytes, maxPayload: 8, subscribers: 1, queueDepth: 4)
                let typed = try SharedMemory.create(typedName, size: PublishSubscribe.size(of: UInt64.self, subscribers: 1, queueDepth: 4))
                try PublishSubscribe.format(typed, sampleType: UInt64.self, subscribers: 1, queueDepth: 4)
                var service: Service? = try Service(bytes: bytes, typed: typed)
                for i: UInt64 in 0..<10_000 {
                    let (plain, doubled) = try service!.roundTrip(i)
                    #expect(plain == i && doubled == i &* 2)
                }
                service = nil
                // The one subscriber slot and the publisher's seat went with the class.
                let again = try Service(bytes: bytes, typed: typed)
                #expect(try again.roundTrip(3) == (3, 6))
                try bytes.remove()
            }
        }
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: RequestResponse.size(maxRequest: 8, maxResponse: 8, clients: 1, depth: 2))
            try RequestResponse.format(region, maxRequest: 8, maxResponse: 8, clients: 1, depth: 2)
            var calls: Calls? = try Calls(region)
            for i in 0..<1000 { #expect(try calls!.call(UInt8(truncatingIfNeeded: i)) == UInt8(truncatingIfNeeded: i &+ 1)) }
            calls = nil
            let again = try Calls(region)
            #expect(try again.call(41) == 42)
            try region.remove()
        }
    }
}
