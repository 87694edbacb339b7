import Foundation
import TestSupport
import Testing
@testable @_spi(Tools) import SharedMemory

/// The seat kit (Kit/Seat.swift) under every role that has one: a handle that goes away without `close()` or
/// `finish()` vacates its seat (another process may take it at once, though the dropper lives) and ends nothing
/// (its process's death is still heard by the peers that wait on it).
@Suite("Seats: handles give back what they hold")
struct SeatTests {
    enum Role: String, CaseIterable, CustomTestStringConvertible {
        case sender, receiver, publisher, server, writer
        var testDescription: String { rawValue }
    }

    struct Value: BitwiseCopyable { var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) }

    /// A region with `role`'s structure formatted at 0.
    static func make(_ role: Role, _ name: RegionName) throws -> AnyRegion {
        switch role {
        case .sender, .receiver:
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            return region
        case .publisher: return try PublishSubscribeTests.makeService(name, maxPayload: 64, subscribers: 2, queueDepth: 2)
        case .server: return try RequestResponseTests.makeService(name, maxRequest: 64, maxResponse: 64, clients: 2, depth: 2)
        case .writer:
            let region = try SharedMemory.create(name, size: 4096)
            _ = try SeqlockCell<Value>.format(in: region, at: 0)
            return region
        }
    }

    /// Takes `role`'s seat in this process and runs `body` while the handle lives; the handle goes at the end.
    static func take(_ role: Role, _ region: borrowing AnyRegion, while body: () throws -> Void = {}) throws {
        switch role {
        case .sender: let held = try RingSender(region); try body(); _ = held.maxMessage
        case .receiver: let held = try RingReceiver(region); try body(); _ = held.maxMessage
        case .publisher: let held = try Publisher(region); try body(); _ = held.maxPayload
        case .server: let held = try Server(region); try body(); _ = held.maxResponse
        case .writer: let held = try SeqlockCell<Value>.Writer(in: region, at: 0); try body(); _ = consume held
        }
    }

    @Test("in one process: a live handle keeps its seat (busy), a dropped one frees it", arguments: Role.allCases)
    func inProcess(role: Role) throws {
        try Names.with(.posix) { name in
            let region = try Self.make(role, name)
            try Self.take(role, region) {
                expectError(.busy) { try Self.take(role, region) }
            }
            try Self.take(role, region)  // the first went away: its seat is free again
            try Self.take(role, region)
        }
    }

    @Test("a handle dropped in a process that lives on: another process takes the seat at once", arguments: Role.allCases)
    func secondProcess(role: Role) throws {
        try Names.with(.posix) { name in
            let region = try Self.make(role, name)
            let dropper = try Probe.start(["seat-drop", name.description, role.rawValue])
            defer { dropper.kill() }
            #expect(dropper.line() == "ok dropped")
            let look = region.withUnsafeBytes { Inspection.inspect($0, at: 0, as: role == .writer ? .seqlock : nil) }
            let seat = look.participants.first { $0.role == role.rawValue }
            #expect(seat?.state == "vacated" && seat?.alive == true, "\(look.participants)")
            // Before the seat kit: busy, for as long as the dropper lived.
            try Self.take(role, region)
            #expect(dropper.isRunning)
        }
    }

    @Test("a dropped handle ends nothing: the peer waits on, and hears of the dropper's death", arguments: [Role.sender, .publisher, .server])
    func deathStillHeard(role: Role) throws {
        try Names.with(.posix) { name in
            let region = try Self.make(role, name)
            let dropper = try Probe.start(["seat-drop", name.description, role.rawValue])
            defer { if dropper.isRunning { dropper.kill() } }
            #expect(dropper.line() == "ok dropped")
            var killed = ContinuousClock.now
            let wait: () throws -> Void
            switch role {
            case .sender:
                let receiver = try RingReceiver(region)
                expectError(.timedOut) { try receiver.receive(timeout: .milliseconds(300)) }  // not nil: not finished
                wait = { _ = try receiver.receive(timeout: .seconds(5)) }
                dropper.kill(); killed = .now
                expectError(.peerDied) { try wait() }
            case .publisher:
                let subscriber = try Subscriber(region)
                expectError(.timedOut) { _ = try subscriber.receive(timeout: .milliseconds(300)) { (_: RawSpan, _: SampleInfo) in 0 } }
                dropper.kill(); killed = .now
                expectError(.peerDied) { _ = try subscriber.receive(timeout: .seconds(5)) { (_: RawSpan, _: SampleInfo) in 0 } }
            default:
                let client = try Client(region)
                _ = try client.send([1, 2] as [UInt8])
                expectError(.timedOut) { try client.receive(timeout: .milliseconds(300)) { _, _ in 0 } }
                dropper.kill(); killed = .now
                let error = #expect(throws: SharedMemoryError.self) { try client.receive(timeout: .seconds(5)) { _, _ in 0 } }
                #expect(error?.code == .peerDied)
            }
            #expect(ContinuousClock.now - killed < .seconds(2))
        }
    }

    @Test("a seat is given back only by its holder; a vacated one names its holder until taken; pid 1 with start 0 holds nothing")
    func kit() throws {
        let words = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
        defer { words.deallocate() }
        words.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
        let seat = Seat(words, pid: 0, start: 8, vacated: 4)
        #expect(seat.occupant == nil && !seat.isHeldByLiveProcess)
        #expect(try seat.claim(region: nil) { "\($0)" } == nil)
        #expect(seat.isMine && seat.isHeldByLiveProcess && !seat.isVacated)
        expectError(.busy) { try seat.claim(region: nil) { "\($0)" } }
        seat.vacate()
        #expect(seat.isVacated && seat.occupant?.pid == getpid())
        #expect(try seat.claim(region: nil) { "\($0)" } == nil)  // a vacated seat is taken over; the holder lived
        #expect(!seat.isVacated)
        #expect(seat.release() && seat.occupant == nil && !seat.release())

        // Another process's seat: not given back by this one; with start 0, never believed alive.
        seat.pid.store(1, ordering: .releasing)
        words.storeBytes(of: 0, toByteOffset: 8, as: UInt64.self)
        #expect(!seat.release() && seat.occupant?.pid == 1)
        #expect(!seat.isHeldByLiveProcess)
        #expect(try seat.claim(region: nil) { "\($0)" }?.pid == 1)  // taken over from the "dead" holder, returned
        #expect(seat.isMine)
    }
}
