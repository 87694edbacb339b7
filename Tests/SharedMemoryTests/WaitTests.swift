import CSharedMemory
import Foundation
import TestSupport
import Testing
@testable @_spi(Tools) import SharedMemory

/// The one wait machine (Kit/Wait.swift) under the waits that run on it: every strategy times out, sees the end of a
/// stream and hears of a peer's death, blocking and async alike.
@Suite("The wait machine")
struct WaitTests {
    static let strategies: [WaitStrategy] = [.spin, .sleep, .default]

    @Test("a receive times out under every strategy (a spinning one used to spin for ever)", arguments: strategies)
    func timesOut(strategy: WaitStrategy) throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096) + 64)
            try MessageRing.format(region, capacity: 4096)
            let receiver = try RingReceiver(region, strategy: strategy)
            let sender = try RingSender(region, strategy: strategy)
            expectError(.timedOut) { try receiver.receive(timeout: .milliseconds(50)) }
            let big = [UInt8](repeating: 7, count: receiver.maxMessage)
            try sender.send(big)
            try sender.send(big)
            expectError(.timedOut) { try sender.send(big, timeout: .milliseconds(50)) }  // full
            try Names.with(.posix) { serviceName in
                let service = try PublishSubscribeTests.makeService(serviceName, maxPayload: 64, subscribers: 1, queueDepth: 1)
                let subscriber = try Subscriber(service, strategy: strategy)
                expectError(.timedOut) { _ = try subscriber.receive(timeout: .milliseconds(50)) { (_: RawSpan, _: SampleInfo) in 0 } }
            }
            let event = try ProcessEvent.initialize(in: region, at: MessageRing.size(capacity: 4096))
            expectError(.timedOut) { try event.wait(timeout: .milliseconds(50), strategy: strategy) }
            sender.finish()
        }
    }

    @Test("a spinning subscriber sees the publisher finish, and a spinning receiver the sender's death")
    func spinningSeesTheEnd() throws {
        try Names.with(.posix) { name in
            let service = try PublishSubscribeTests.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 1)
            let publisher = try Publisher(service)
            let subscriber = try Subscriber(service, strategy: .spin)
            publisher.finish()
            #expect(try subscriber.receive(timeout: .seconds(10)) { (_: RawSpan, _: SampleInfo) in 0 } == nil)
        }
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            let server = try ChildProcess(Probe.path, ["ring-serve", name.description])
            defer { if server.isRunning { server.kill() } }
            #expect(server.line() == "ok sent")
            let receiver = try RingReceiver(region, strategy: .spin)
            #expect(try receiver.receive(timeout: .seconds(10)) == Array("hello".utf8))
            server.kill()
            expectError(.peerDied) { try receiver.receive(timeout: .seconds(10)) }
        }
    }

    @Test("async waits time out and are cancelled through the same machine")
    func asyncWaits() async throws {
        let name = Names.unique(.posix)
        defer { Names.cleanUp(name) }
        let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096) + 64)
        try MessageRing.format(region, capacity: 4096)
        let receiver = try RingReceiver(region, strategy: .spin)
        let error = await #expect(throws: SharedMemoryError.self) { _ = try await receiver.receiveAsync(timeout: .milliseconds(50)) }
        #expect(error?.code == .timedOut)
        let event = try ProcessEvent.initialize(in: region, at: MessageRing.size(capacity: 4096))
        let waiting = Task { try await event.waitAsync(timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }

    @Test("the adaptive policy: no spin on one CPU, three wake-ups' time, longer where waits just missed their answer")
    func policy() throws {
        #expect(WaitPolicy.spinBudget(cpus: 1, wakeUp: 20_000) == 0)
        #expect(WaitPolicy.spinBudget(cpus: 1, wakeUp: 20_000, learned: 100_000) == 0)
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: 8_000) == 24_000)
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: 1_500) == WaitPolicy.shortestSpin)
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: .max) == WaitPolicy.longestSpin)
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: 10) == WaitPolicy.shortestSpin)
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: 10_000_000) == WaitPolicy.longestSpin)
        // What waits taught counts when it is longer, up to the longest spin; never shorter than the measured base.
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: 3_000, learned: 42_500) == 42_500)
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: 3_000, learned: 10_000_000) == WaitPolicy.longestSpin)
        #expect(WaitPolicy.spinBudget(cpus: 2, wakeUp: 8_000, learned: 1_000) == 24_000)
        // A near miss (the answer came within the longest spin) grows the budget past it; a long silence shrinks it
        // by an eighth; in between it stays.
        #expect(WaitPolicy.adjusted(15_000, afterWaiting: 34_000) == 42_500)
        #expect(WaitPolicy.adjusted(45_000, afterWaiting: 34_000) == 45_000)
        #expect(WaitPolicy.adjusted(15_000, afterWaiting: WaitPolicy.longestSpin) == WaitPolicy.longestSpin)
        #expect(WaitPolicy.adjusted(40_000, afterWaiting: WaitPolicy.longestSpin + 1) == 40_000)
        #expect(WaitPolicy.adjusted(40_000, afterWaiting: 2 * WaitPolicy.longestSpin + 1) == 35_000)
        #expect(WaitPolicy.adjusted(40_000, afterWaiting: 100_000_000) == 35_000)
        // Measured, not assumed: a wake-up here costs something, and far less than a sleep slice.
        #expect(WaitPolicy.wakeUpCost > 0 && WaitPolicy.wakeUpCost < Wait.slice)
        // A process given one CPU does not spin at all; given two, it may.
        let one = try ChildProcess.run("/usr/bin/taskset", ["-c", "0", Probe.path, "wait-policy", "-"])
        let words = one.output.split(separator: " ")
        #expect(one.status == 0 && words.count == 4 && words[1] == "1" && words[3].hasPrefix("0"), "\(one.output)")
        if WaitPolicy.cpus > 1 {
            let two = try ChildProcess.run("/usr/bin/taskset", ["-c", "0,1", Probe.path, "wait-policy", "-"])
            #expect(two.output.split(separator: " ").dropFirst().first == "2", "\(two.output)")
        }
    }

    @Test("a wait yields first where its thread's last yield ran the peer, and forgets that when nothing came")
    func sharedCPU() {
        // A yield ran the peer here if it ran another thread and came back within twice the longest spin; a longer
        // one ran something else (a busy loop's slice), and one that ran nobody says nothing.
        #expect(WaitPolicy.peerRan(yieldTook: 3_000, switched: true))
        #expect(WaitPolicy.peerRan(yieldTook: 2 * WaitPolicy.longestSpin, switched: true))
        #expect(!WaitPolicy.peerRan(yieldTook: 2 * WaitPolicy.longestSpin + 1, switched: true))
        #expect(!WaitPolicy.peerRan(yieldTook: 4_000_000, switched: true))
        #expect(!WaitPolicy.peerRan(yieldTook: 3_000, switched: false))
        // One yield in movesPerShare that ran the peer again moves the thread, drawn from the clock: over any
        // movesPerShare consecutive 64 ns steps, exactly one.
        let draws = (0..<WaitPolicy.movesPerShare).map { WaitPolicy.movesAway(at: 1_000_000_000 + $0 * 64) }
        #expect(draws.filter { $0 }.count == 1)
        // The decisions, on this thread's word (a synchronous test stays on one thread): believed shared, a wait
        // yields at once; whatever that yield found, a look after it that finds nothing leaves nothing believed, and
        // the wait spins on. A wait that gives up and sleeps never leaves the belief behind.
        let before = WaitPolicy.sharesCPU
        defer { WaitPolicy.sharesCPU = before }
        if WaitPolicy.cpus > 1 {
            WaitPolicy.sharesCPU = true
            var wait = Wait(.adaptive, timeout: .seconds(1))
            let yieldedFirst = wait.spin(), spinsOn = wait.spin()
            #expect(yieldedFirst && spinsOn)
            #expect(!WaitPolicy.sharesCPU)
            while wait.spin() {}
            #expect(!WaitPolicy.sharesCPU)
        }
        // A wait that believed nothing and gave up leaves nothing believed (on one CPU it does not spin at all).
        WaitPolicy.sharesCPU = false
        var wait = Wait(.adaptive, timeout: .seconds(1))
        while wait.spin() {}
        #expect(!WaitPolicy.sharesCPU)
    }

    @Test("a thread moved off its CPU keeps every CPU it was allowed")
    func movingKeepsTheMask() {
        // csm_move_off_this_cpu takes this CPU out of the thread's mask only for the move: as many CPUs after as
        // before (csm_allowed_cpus counts this thread's mask). Whether it moved depends on the mask: a thread allowed
        // one CPU cannot.
        let before = csm_allowed_cpus()
        let moved = csm_move_off_this_cpu()
        #expect(csm_allowed_cpus() == before)
        #expect(moved == (before > 1 ? 1 : 0))
    }

    @Test("measuring the wake-up starts no thread: a wait may run in a forked child of a multithreaded process")
    func measuringStartsNoThread() throws {
        // strace lists every clone the probe makes; the probe itself starts none, so any is the measurement's.
        // (.ci/run installs strace.)
        let trace = "/tmp/smtest-strace-\(getpid())"
        defer { unlink(trace) }
        let run = try ChildProcess.run("/usr/bin/strace", ["-f", "-qq", "-e", "trace=clone,clone3", "-o", trace, Probe.path, "wait-policy", "-"])
        #expect(run.status == 0 && run.output.hasPrefix("ok "), "\(run.output) \(run.error)")
        let clones = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").filter { $0.contains("clone") }
        #expect(clones.isEmpty, "\(clones)")
    }
}
