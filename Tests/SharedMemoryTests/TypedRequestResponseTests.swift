import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// Typed request/response (Channel/TypedRequestResponse.swift): requests and responses of one type each, recorded in
/// the header and checked on attach.
@Suite("Typed request/response")
struct TypedRequestResponseTests {
    struct Lookup: BitwiseCopyable { var key: UInt64 }
    struct Price: BitwiseCopyable, Equatable { var value: Double }
    struct Other: BitwiseCopyable { var word: UInt64 }

    static func service(_ body: (borrowing AnyRegion) throws -> Void) throws {
        let region = try SharedMemory.create(.anonymous, size: RequestResponse.size(requestType: Lookup.self, responseType: Price.self, clients: 2, depth: 2))
        try RequestResponse.format(region, requestType: Lookup.self, responseType: Price.self, clients: 2, depth: 2)
        try body(region)
    }

    @Test("a request goes in as a value and its response comes back as one, with its correlation id")
    func roundTrip() throws {
        try Self.service { region in
            let server = try TypedServer<Lookup, Price>(region)
            let client = try TypedClient<Lookup, Price>(region)
            let correlation = try client.send(Lookup(key: 10))
            try server.handle(timeout: .seconds(1)) { lookup, info in
                #expect(info.correlation == correlation)
                return Price(value: Double(lookup.key) * 1.5)
            }
            let answer = try client.receive(timeout: .seconds(1))
            #expect(answer.response == Price(value: 15) && answer.correlation == correlation)
        }
    }

    @Test("other types, or a service of bytes, are typeMismatch; a handler that throws answers with nothing, which the client is told")
    func mismatchesAndFailures() throws {
        try Self.service { region in
            let wrong = expectError(.typeMismatch) { try TypedClient<Other, Price>(region) }
            #expect(wrong?.reason.contains("requests are another type (size 8, alignment 8), not") == true)
            expectError(.typeMismatch) { try TypedServer<Lookup, Other>(region) }
            let server = try TypedServer<Lookup, Price>(region)
            let client = try TypedClient<Lookup, Price>(region)
            struct Refused: Error {}
            try client.send(Lookup(key: 1))
            #expect(throws: Refused.self) { try server.handle(timeout: .seconds(1)) { _, _ in throw Refused() } }
            #expect(expectError(.foreign) { try client.receive(timeout: .seconds(1)) }?.reason.contains("its handler threw") == true)
            // A byte client on the typed service: its request of another length is foreign to the server.
            let bytes = try Client(region)
            try bytes.send([1, 2, 3] as [UInt8])
            expectError(.foreign) { try server.handle(timeout: .seconds(1)) { _, _ in Price(value: 0) } }
            #expect(try bytes.receive(timeout: .seconds(1)) { response, _ in response.byteCount } == 0)
        }
        let plain = try SharedMemory.create(.anonymous, size: RequestResponse.size(maxRequest: 8, maxResponse: 8, clients: 1, depth: 1))
        try RequestResponse.format(plain, maxRequest: 8, maxResponse: 8, clients: 1, depth: 1)
        #expect(expectError(.typeMismatch) { try TypedClient<Lookup, Price>(plain) }?.reason.contains("bytes") == true)
    }

    @Test("a header whose types and cell sizes disagree is foreign, never a value written past a cell")
    func forgedHeader() throws {
        try Self.service { region in
            try region.set(UInt64(4), at: RequestResponseHeader.maxResponse.offset)  // a peer's word: smaller than a Price
            #expect(expectError(.foreign) { try TypedServer<Lookup, Price>(region) }?.reason.contains("and 8 and 4 by size") == true)
            expectError(.foreign) { try TypedClient<Lookup, Price>(region) }
        }
    }

    @Test("by name, across processes: the server in a second process answers each request")
    func twoProcesses() throws {
        try Names.with(.posix) { name in
            let server = try Probe.start(["typed-serve", name.description, "20"])
            #expect(server.line() == "ok created")
            expectError(.typeMismatch) { try TypedClient<Lookup, Price>.open(name, timeout: .seconds(5)) }  // another module's types
            expectError(.typeMismatch) { try TypedServer<Lookup, Price>.openOrCreate(name, clients: 2) }
            let client = try Probe.start(["typed-request", name.description, "20"])
            #expect(client.finish().lastLine == "ok 20")
            #expect(server.finish().lastLine == "ok served")
        }
    }
}
