import Foundation
import Synchronization
import Testing
@testable import SharedMemory

/// The format handshake (Kit/Handshake.swift), the same for every format: a process that attaches before the
/// formatter sleeps on a futex the formatter wakes. Counted, not timed: the waiting thread's voluntary context
/// switches over a 300 ms wait (one per sleep; polling every millisecond, as the services and the heap did before,
/// made about 300), which no other work on the machine can raise.
@Suite("One format handshake: a waiter sleeps until the formatter wakes it")
struct HandshakeTests {
    enum Format: String, CaseIterable, CustomStringConvertible {
        case ring, publishSubscribe, requestResponse, heap
        var description: String { rawValue }
    }

    /// This thread's voluntary context switches so far (/proc/thread-self/status).
    static func voluntarySwitches() -> Int {
        let status = (try? String(contentsOfFile: "/proc/thread-self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") } ?? ""
        return Int(line.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "") ?? -1
    }

    static func attach(_ format: Format, _ name: RegionName) throws {
        let region = try SharedMemory.open(name)
        switch format {
        case .ring: try MessageRing.waitUntilFormatted(region, timeout: .seconds(10))
        case .publishSubscribe: _ = try Subscriber(region, timeout: .seconds(10))
        case .requestResponse: _ = try Client(region, timeout: .seconds(10))
        case .heap: _ = try SharedHeap(attaching: region, timeout: .seconds(10))
        }
    }

    static func format(_ format: Format, _ name: RegionName) throws {
        let region = try SharedMemory.open(name)
        switch format {
        case .ring: try MessageRing.format(region, capacity: 4096)
        case .publishSubscribe: try PublishSubscribe.format(region, maxPayload: 64, subscribers: 2, queueDepth: 2)
        case .requestResponse: try RequestResponse.format(region, maxRequest: 64, maxResponse: 64, clients: 2, depth: 2)
        case .heap: _ = try SharedHeap(formatting: region)
        }
    }

    @Test("an attach that starts first sleeps until the format, then attaches", arguments: Format.allCases)
    func sleepsUntilFormatted(_ format: Format) throws {
        try Names.with(.posix) { name in
            _ = try SharedMemory.create(name, size: 1 << 20)
            let outcome = Mutex<(switches: Int, error: String?)?>(nil)
            let started = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
            let waiter = Thread {
                let before = Self.voluntarySwitches()
                started.signal()
                var failure: String? = nil
                do { try Self.attach(format, name) } catch { failure = "\(error)" }
                let switches = Self.voluntarySwitches() - before
                outcome.withLock { $0 = (switches, failure) }
                done.signal()
            }
            waiter.start()
            started.wait()
            usleep(300_000)
            try Self.format(format, name)
            #expect(done.wait(timeout: .now() + 10) == .success)
            let result = try #require(outcome.withLock { $0 })
            #expect(result.error == nil, "\(result.error ?? "")")
            // A few sleeps (each at most 100 ms) and the open's own; polling made about 300.
            #expect(result.switches <= 20, "\(result.switches) voluntary context switches while waiting 300 ms")
        }
    }

    @Test("something else already there is foreign at once, not after the timeout", arguments: Format.allCases)
    func foreignAtOnce(_ format: Format) throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 1 << 20)
            try region.set(UInt64(0x1234_5678_9abc_def0), at: 0)
            try region.set(UInt64(7), at: 16)  // the heap's format word: no state it knows
            let clock = ContinuousClock(), start = clock.now
            #expect(throws: SharedMemoryError.self) { try Self.attach(format, name) }
            #expect(clock.now - start < .seconds(5), "the timeout is 10 s")
        }
    }
}
