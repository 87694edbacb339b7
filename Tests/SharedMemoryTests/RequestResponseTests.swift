import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// Request/response (Docs/PublishSubscribe.md): many clients, one server, correlation ids, deaths of each role.
@Suite("Request/response")
struct RequestResponseTests {
    typealias R = RequestResponse

    static func makeService(_ name: RegionName, maxRequest: Int = 1024, maxResponse: Int = 1024, clients: Int = 4, depth: Int = 4) throws -> AnyRegion {
        let region = try SharedMemory.create(name, size: R.size(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth))
        try R.format(region, maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth)
        return region
    }

    @Test("a request sent as a copy (bytes or an array) arrives as the span form's does; too large is refused")
    func copyingSend() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxRequest: 16)
            let server = try Server(try attachAgain(region))
            let client = try Client(try attachAgain(region))
            let a = try client.send([1, 2, 3] as [UInt8])
            let bytes: [UInt8] = [9, 8, 7, 6]
            let b = try bytes.withUnsafeBytes { try client.send(UnsafeRawBufferPointer(rebasing: $0[0..<4])) }
            var requests: [UInt64: [UInt8]] = [:]
            for _ in 0..<2 {
                try server.handle(timeout: .seconds(5)) { request, response, info in
                    requests[info.correlation] = request.withUnsafeBytes { Array($0) }
                }
            }
            #expect(requests[a] == [1, 2, 3])
            #expect(requests[b]?.count == 4)
            expectError(.invalidArgument) { try client.send([UInt8](repeating: 0, count: 17)) }
        }
    }

    @Test("a request's response comes back to the client that sent it, with its correlation id", arguments: Backend.attachable)
    func roundTrip(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try Self.makeService(name)
            let server = try Server(try attachAgain(region))
            let client = try Client(try attachAgain(region))
            let other = try Client(try attachAgain(region))
            // Two requests outstanding from one client, one from another; the server answers each in turn.
            let a = try client.send(count: 3) { for byte: UInt8 in [1, 2, 3] { $0.append(byte) } }
            let b = try client.send(count: 1) { $0.append(9 as UInt8) }
            let c = try other.send(count: 2) { $0.append(7 as UInt8); $0.append(8 as UInt8) }
            #expect(a != b)
            var seen: [UInt64] = []
            for _ in 0..<3 {
                try server.handle(timeout: .seconds(5)) { request, response, info in
                    seen.append(info.correlation)
                    #expect(info.clientPID == getpid())
                    response.append(UInt8(request.byteCount))
                }
            }
            #expect(Set(seen) == [a, b, c])
            #expect(try client.receive(timeout: .seconds(5)) { response, id in (id, response.unsafeLoad(as: UInt8.self)) } == (a, 3))
            #expect(try client.receive(timeout: .seconds(5)) { response, id in (id, response.unsafeLoad(as: UInt8.self)) } == (b, 1))
            #expect(try other.receive(timeout: .seconds(5)) { response, id in (id, response.byteCount) } == (c, 1))
            // At most `depth` outstanding: the next send is busy until a response is read.
            for _ in 0..<4 { try client.send(count: 0) { _ in } }
            expectError(.busy) { try client.send(count: 0) { _ in } }
            expectError(.invalidArgument) { try client.send(count: 2000) { _ in } }
            // A server that throws still answers, with an empty response.
            struct Refused: Error {}
            #expect(throws: Refused.self) { try server.handle(timeout: .seconds(5)) { _, _, _ in throw Refused() } }
            #expect(try client.receive(timeout: .seconds(5)) { response, _ in response.byteCount } == 0)
            // Waiting for a response to nothing sent is an error; to a request the server has not handled, a timeout.
            expectError(.invalidArgument) { try other.receive(timeout: .milliseconds(20)) { _, _ in () } }
            try other.send(count: 0) { _ in }
            expectError(.timedOut) { try other.receive(timeout: .milliseconds(20)) { _, _ in () } }
            client.close()
            other.close()
            server.finish()
        }
    }

    @Test("four client processes and a server process: every request answered, in order, bytes checked")
    func processes() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, clients: 4)
            let server = try Probe.start(["rr-serve", name.description, "\(4 * 500)"])
            #expect(server.line() == "ok serving")
            let clients = try (0..<4).map { _ in try Probe.start(["rr-client", name.description, "500"]) }
            for client in clients { #expect(client.finish().lastLine == "ok 500") }
            #expect(server.finish().lastLine == "ok 2000")
            _ = region
        }
    }

    @Test("a dead server is peerDied to a waiting client; a dead client's slot is reclaimed")
    func deaths() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, clients: 1)
            let server = try Probe.start(["rr-serve", name.description, "1"])
            #expect(server.line() == "ok serving")
            let client = try Client(try SharedMemory.open(name))
            #expect(try client.request(count: 2, { $0.append(1 as UInt8); $0.append(2 as UInt8) }) { $0.unsafeLoad(as: UInt8.self) } == 2)
            #expect(server.finish().lastLine == "ok 1")  // it answered one and left without finishing: dead
            let started = ContinuousClock.now
            expectError(.peerDied) { try client.request(count: 0, { _ in }) { _ in () } }
            #expect(ContinuousClock.now - started < .seconds(2))
            client.close()

            // A client that dies holding the only slot: the next client takes it over.
            let dying = try Probe.start(["rr-client", name.description, "1000000"])
            #expect(dying.line() == "ok connected")
            dying.kill()
            let next = try Client(try SharedMemory.open(name))
            let serverNow = try Server(try SharedMemory.open(name))
            try next.send(count: 1) { $0.append(5 as UInt8) }
            try serverNow.handle(timeout: .seconds(5)) { request, response, _ in response.append(request.unsafeLoad(as: UInt8.self) + 1) }
            #expect(try next.receive(timeout: .seconds(5)) { response, _ in response.unsafeLoad(as: UInt8.self) } == 6)
            expectError(.limitExceeded) { try Client(try SharedMemory.open(name)) }
            next.close()
            serverNow.finish()
            _ = region
        }
    }

    @Test("a client dropped without close() gives its slot back at once; the server serves the next one")
    func droppedClientGivesBack() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, clients: 1)
            let server = try Server(region)
            do {
                let dropped = try Client(region)
                try dropped.send(count: 1) { $0.append(1 as UInt8) }  // a request it will never read the answer to
            }
            let client = try Client(region)  // before: limitExceeded, the slot held for the life of this process
            let correlation = try client.send(count: 1) { $0.append(2 as UInt8) }
            try server.handle(timeout: .seconds(5)) { request, response, info in
                #expect(info.correlation == correlation)
                response.append(request.unsafeLoad(as: UInt8.self) + 1)
            }
            #expect(try client.receive(timeout: .seconds(5)) { response, _ in response.unsafeLoad(as: UInt8.self) } == 3)
            client.close()
            server.finish()
        }
    }

    @Test("a new client's first send to a service whose server was killed is peerDied, with no correlation id")
    func sendToDeadServer() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, clients: 2)
            let server = try Probe.start(["rr-serve", name.description, "1000000"])
            #expect(server.line() == "ok serving")
            server.kill()
            let client = try Client(try SharedMemory.open(name))
            let error = expectError(.peerDied) { try client.send(count: 1) { $0.append(1 as UInt8) } }
            #expect(error?.reason.contains("died") == true)
            // Still gone on the next call; a new server makes sends work again.
            expectError(.peerDied) { try client.send(count: 0) { _ in } }
            let serverNow = try Server(try SharedMemory.open(name))
            let correlation = try client.send(count: 0) { _ in }
            try serverNow.handle(timeout: .seconds(5)) { _, _, info in #expect(info.correlation == correlation) }
            client.close()
            serverNow.finish()
            _ = region
        }
    }

    @Test("the server and two clients SIGKILLed at random moments, 50 times: no hang, and a new pair counts exactly after")
    func killedAtRandom() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxRequest: 1024, maxResponse: 1024, clients: 3, depth: 2)
            for round in 0..<50 {
                let server = try Probe.start(["rr-serve", name.description, "0"])
                #expect(server.line() == "ok serving", "round \(round)")
                let clients = try (0..<2).map { _ in try Probe.start(["rr-client", name.description, "1000000"]) }
                for client in clients { #expect(client.line() == "ok connected", "round \(round)") }
                usleep(UInt32.random(in: 0...5000))
                var order = [server] + clients
                order.shuffle()
                for process in order {
                    process.kill()
                    usleep(UInt32.random(in: 0...500))
                }
                // A new server and client: the dead clients' slots are reclaimed, and every answer is the right one.
                let next = try Server(try SharedMemory.open(name))
                let client = try Client(try SharedMemory.open(name))
                for i in 0..<5 {
                    try client.send(count: 1) { $0.append(UInt8(i)) }
                    try next.handle(timeout: .seconds(5)) { request, response, _ in response.append(request.unsafeLoad(as: UInt8.self) &+ 100) }
                    #expect(try client.receive(timeout: .seconds(5)) { response, _ in response.unsafeLoad(as: UInt8.self) } == UInt8(i) + 100, "round \(round)")
                }
                client.close()
                next.finish()
            }
            _ = region
        }
    }

    @Test("headers and positions another process wrote over are foreign; bad configurations are refused")
    func foreign() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, clients: 1, depth: 2)
            let server = try Server(try SharedMemory.open(name))
            let client = try Client(try SharedMemory.open(name))
            let layout = R.Layout(maxRequest: 1024, maxResponse: 1024, clients: 1, depth: 2)
            try client.send(count: 1) { $0.append(1 as UInt8) }
            try region.set(UInt64(1 << 40), at: RequestResponseHeader.slots.offset + ClientSlot.entries.offset + 8)  // the request's length
            expectError(.foreign) { try server.handle(timeout: .seconds(1)) { _, _, _ in } }
            try region.set(UInt64(50), at: RequestResponseHeader.slots.offset + ClientSlot.requestWrite.offset)
            expectError(.foreign) { try server.handle(timeout: .seconds(1)) { _, _, _ in } }
            try region.set(UInt64(50), at: RequestResponseHeader.slots.offset + ClientSlot.responseWrite.offset)
            expectError(.foreign) { try client.receive(timeout: .seconds(1)) { _, _ in () } }
            _ = layout
            expectError(.invalidArgument) { try R.format(region, maxRequest: 8, maxResponse: 8, clients: 0, depth: 1) }
            expectError(.alreadyExists) { try R.format(region, maxRequest: 8, maxResponse: 8, clients: 1, depth: 1) }
            try region.set(UInt16(7), at: RequestResponseHeader.major.offset)
            expectError(.foreign) { try Client(try SharedMemory.open(name)) }
        }
    }
}
