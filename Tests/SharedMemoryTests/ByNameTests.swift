import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// One call to a working service (Channel/ByName.swift): `create` makes, sizes and formats the region and takes the
/// creating side; `open` waits for the name and the format and takes the other side, in any order.
@Suite("Services by name, in one call")
struct ByNameTests {
    @Test("a ring: the receiver opens before the name exists, the sender creates it, one call each")
    func ring() throws {
        try Names.with(.posix) { name in
            let receiver = try Probe.start(["byname-receive", name.description])
            usleep(200_000)  // the receiver is looking for the name by now (or soon: the order does not matter)
            let sender = try RingSender.create(name, capacity: 4096)
            try sender.send(Array("hello".utf8))
            #expect(receiver.finish().lastLine == "ok hello")
            expectError(.alreadyExists) { try RingReceiver.create(name, capacity: 4096) }
        }
    }

    @Test("publish/subscribe: Publisher.create, Subscriber.open here and in a second process")
    func publishSubscribe() throws {
        try Names.with(.posix) { name in
            var publisher = try Publisher.create(name, maxPayload: 64, subscribers: 2, queueDepth: 4)
            var here = try Subscriber.open(name)
            let there = try Probe.start(["byname-subscribe", name.description])
            #expect(there.line() == "ok connected")
            try publisher.publish(Array("quote".utf8))
            #expect(try here.receive(timeout: .seconds(5)) { (bytes: RawSpan, info: SampleInfo) in [UInt64(bytes.byteCount), info.sequence] } == [5, 1])
            #expect(there.finish().lastLine == "ok quote")
        }
    }

    @Test("request/response and the heap by name")
    func requestResponseAndHeap() throws {
        try Names.with(.posix) { name in
            var server = try Server.create(name, maxRequest: 64, maxResponse: 64, clients: 2)
            var client = try Client.open(name, timeout: .seconds(1))
            _ = try client.send([1, 2, 3] as [UInt8])
            try server.handle(timeout: .seconds(5)) { request, response, _ in response.append(UInt8(request.byteCount)) }
            #expect(try client.receive(timeout: .seconds(5)) { response, _ in response.unsafeLoad(as: UInt8.self) } == 3)
        }
        try Names.with(.posix) { name in
            var heap = try SharedHeap.create(name, size: 1 << 20)
            _ = try heap.allocate(byteCount: 64)
            var other = try SharedHeap.open(name, timeout: .seconds(1))
            #expect(try other.statistics().allocatedBlocks == 1)
            #expect(try heap.statistics() == other.statistics())
        }
    }

    @Test("a configuration the structure refuses leaves no region behind; no name in time is notFound")
    func failures() throws {
        try Names.with(.posix) { name in
            expectError(.invalidArgument) { try RingSender.create(name, capacity: 5000) }  // not a power of two
            expectError(.invalidArgument) { try Publisher.create(name, maxPayload: 64, subscribers: 0) }
            expectError(.invalidArgument) { try Server.create(name, maxRequest: 64, maxResponse: 64, clients: 0) }
            expectError(.notFound) { try SharedMemory.open(name) }  // nothing was left behind
            let started = ContinuousClock.now
            expectError(.notFound) { try Subscriber.open(name, timeout: .milliseconds(50)) }
            #expect(ContinuousClock.now - started >= .milliseconds(50))
            expectError(.notFound) { try RingReceiver.open(name) }
        }
    }
}
