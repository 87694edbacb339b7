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
            let publisher = try Publisher.create(name, maxPayload: 64, subscribers: 2, queueDepth: 4)
            let here = try Subscriber.open(name)
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
            let server = try Server.create(name, maxRequest: 64, maxResponse: 64, clients: 2)
            let client = try Client.open(name, timeout: .seconds(1))
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

    @Test("openOrCreate: two processes start in either order and meet on one ring", arguments: [0, 1_000, 20_000, 300_000])
    func ringEitherOrder(delay: UInt32) throws {
        try Names.with(.posix) { name in
            let there = try Probe.start(["byname-either-send", name.description, "from there"])
            usleep(delay)
            let receiver = try RingReceiver.openOrCreate(name, capacity: 4096, timeout: .seconds(10))
            #expect(try receiver.receive(timeout: .seconds(10)) == Array("from there".utf8))
            #expect(try receiver.receive(timeout: .seconds(10)) == nil)  // finished
            #expect(there.finish().lastLine == "ok sent")
        }
    }

    @Test("openOrCreate: a ring or a service there with another configuration is typeMismatch naming the difference")
    func openOrCreateMismatch() throws {
        try Names.with(.posix) { name in
            let receiver = try RingReceiver.openOrCreate(name, capacity: 8192)
            #expect(expectError(.typeMismatch) { try RingSender.openOrCreate(name, capacity: 4096) }?.reason.contains("capacity 8192, not 4096") == true)
            #expect(expectError(.typeMismatch) { try RingSender.openOrCreate(name, capacity: 16384) }?.reason.contains("capacity 8192, not 16384") == true)
            let sender = try RingSender.openOrCreate(name, capacity: 8192)
            try sender.send([1, 2])
            #expect(try receiver.receive(timeout: .seconds(5)) == [1, 2])
        }
        try Names.with(.posix) { name in
            let publisher = try Publisher.openOrCreate(name, maxPayload: 64, subscribers: 2, queueDepth: 4)
            let mismatch = expectError(.typeMismatch) { try Publisher.openOrCreate(name, maxPayload: 32, subscribers: 3, queueDepth: 4) }
            #expect(mismatch?.reason.contains("maxPayload 64, not 32, subscribers 2, not 3") == true)
            expectError(.busy) { try Publisher.openOrCreate(name, maxPayload: 64, subscribers: 2, queueDepth: 4) }  // it lives
            _ = publisher.maxPayload
        }
        try Names.with(.posix) { name in
            _ = try Server.openOrCreate(name, maxRequest: 64, maxResponse: 64, clients: 2)
            #expect(expectError(.typeMismatch) { try Server.openOrCreate(name, maxRequest: 64, maxResponse: 64, clients: 2, depth: 8) }?.reason.contains("depth 4, not 8") == true)
        }
        try Names.with(.posix) { name in
            _ = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))  // zeroes: no ring is ever formatted there
            expectError(.timedOut) { try RingSender.openOrCreate(name, capacity: 4096, timeout: .milliseconds(50)) }
        }
    }

    @Test("openOrCreate: a publisher or server that restarts takes its seat back, its peers and their data kept")
    func openOrCreateRestart() throws {
        try Names.with(.posix) { name in
            var publisher: Publisher? = try Publisher.openOrCreate(name, maxPayload: 64, subscribers: 2, queueDepth: 4)
            let subscriber = try Subscriber.open(name)
            try publisher?.publish([1] as [UInt8])
            publisher = nil  // gives its seat back, ends nothing
            let again = try Publisher.openOrCreate(name, maxPayload: 64, subscribers: 2, queueDepth: 4)
            #expect(try again.publish([2] as [UInt8]) == 2)
            for expected: UInt8 in [1, 2] {
                #expect(try subscriber.receive(timeout: .seconds(5)) { (bytes: RawSpan, _: SampleInfo) in bytes.unsafeLoad(as: UInt8.self) } == expected)
            }
        }
        try Names.with(.posix) { name in
            var server: Server? = try Server.openOrCreate(name, maxRequest: 16, maxResponse: 16, clients: 1)
            let client = try Client.open(name)
            _ = try client.send([7] as [UInt8])
            server = nil
            let again = try Server.openOrCreate(name, maxRequest: 16, maxResponse: 16, clients: 1)
            try again.handle(timeout: .seconds(5)) { request, response, _ in response.append(request.unsafeLoad(as: UInt8.self) + 1) }
            #expect(try client.receive(timeout: .seconds(5)) { response, _ in response.unsafeLoad(as: UInt8.self) } == 8)
        }
        try Names.with(.posix) { name in
            var heap = try SharedHeap.openOrCreate(name, size: 1 << 20)
            _ = try heap.allocate(byteCount: 64)
            var other = try SharedHeap.openOrCreate(name, size: 1 << 20)
            #expect(try other.statistics().allocatedBlocks == 1)
        }
    }
}
