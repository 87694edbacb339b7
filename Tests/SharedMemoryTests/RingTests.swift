import Atomics
import Foundation
import SystemPackage
import TestSupport
import Testing
@testable import SharedMemory

/// The message ring, between real processes, over every backend.
@Suite("Message ring")
struct RingTests {
    /// Starts a probe as sender or receiver of the ring in `region`: by name, or (memfd) by passing the region.
    static func startProbe(_ operation: [String], _ region: borrowing some SharedRegion & ~Copyable) throws -> ChildProcess {
        guard region.backend == .memfd else { return try Probe.start(operation) }
        let (mine, theirs) = try socketPair()
        defer { try? mine.close(); try? theirs.close() }
        let probe = try Probe.start(operation, input: theirs)
        try region.send(over: mine)
        return probe
    }

    /// The sentences Interop/python/tests/test_ring.py expects of the C header and the Python package.
    @Test("errors' sentences, as the C header and the Python package say them too")
    func sameSentences() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            let sender = try RingSender(region)
            #expect(expectError(.invalidArgument) { try sender.send([UInt8](repeating: 0, count: 2045)) }?.reason == "a message of 2045 bytes does not fit this ring: at most 2044 (half its capacity)")
            #expect(expectError(.busy) { try RingSender(try attachAgain(region)) }?.reason == "process \(getpid()) is already this ring's sender; a ring has one of each")
            sender.close()
        }
    }

    @Test("messages cross between two processes complete and in order, over every named or passable backend", arguments: Backend.attachable)
    func betweenProcesses(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 16))
            try MessageRing.format(region)
            let receiver = try Self.startProbe(["ring-receive", name.description], region)
            let sender = try Self.startProbe(["ring-send", name.description, "\(16 << 20)"], region)
            let sent = sender.finish().lastLine
            let received = receiver.finish().lastLine
            #expect(sent.hasPrefix("ok "))
            #expect(received == sent, "the receiver saw \(received), the sender sent \(sent)")
        }
    }

    @Test("1 GiB through a 4 MiB ring between two processes arrives complete and in order, every message checked")
    func oneGigabyte() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4 << 20))
            try MessageRing.format(region)
            let receiver = try Probe.start(["ring-receive", name.description])
            let sender = try Probe.start(["ring-send", name.description, "\(1 << 30)"])
            let sent = sender.finish().lastLine
            let received = receiver.finish().lastLine
            let fields = sent.split(separator: " ")
            #expect(fields.count == 3 && Int(fields[2])! >= 1 << 30, "\(sent)")
            #expect(received == sent)
        }
    }

    @Test("anonymous memory: a ring shared with a forked child")
    func acrossFork() async {
        await #expect(processExitsWith: .success) {
            let region = try SharedMemory.create(.anonymous, size: MessageRing.size(capacity: 1 << 14))
            try MessageRing.format(region)
            let child = fork()
            if child == 0 {
                // The child sends 10 000 numbered messages through the memory it inherited.
                do {
                    let sender = try RingSender(region)
                    for i in 0..<10_000 {
                        var value = UInt64(i)
                        try withUnsafeBytes(of: &value) { (bytes) throws(SharedMemoryError) in try sender.send(bytes) }
                    }
                    sender.finish()
                } catch {
                    _exit(3)
                }
                _exit(0)
            }
            let receiver = try RingReceiver(region)
            var expected: UInt64 = 0
            while let value = try receiver.receive({ $0.unsafeLoadUnaligned(as: UInt64.self) }) {
                if value != expected { exit(1) }
                expected += 1
            }
            var status: Int32 = 0
            waitpid(child, &status, 0)
            exit(expected == 10_000 && status == 0 ? 0 : 2)
        }
    }

    @Test("a sender killed mid-stream is detected by the receiver, after it has read everything sent")
    func senderDies() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 16))
            try MessageRing.format(region)
            let sender = try Probe.start(["ring-send", name.description, "0"])
            let receiver = try RingReceiver(try attachAgain(region))
            for _ in 0..<1000 { #expect(try receiver.receive() != nil) }
            sender.kill()
            let started = ContinuousClock.now
            let error = expectError(.peerDied) { while try receiver.receive() != nil {} }
            #expect(error?.reason.contains("sending process died") == true)
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test("a receiver killed mid-stream is detected by the sender once the ring is full")
    func receiverDies() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 14))
            try MessageRing.format(region)
            let receiver = try Probe.start(["ring-receive", name.description])
            let sender = try RingSender(try attachAgain(region))
            usleep(200_000)  // the probe attaches
            receiver.kill()
            let error = expectError(.peerDied) {
                while true { try sender.send(Array(repeating: 7, count: 1000), timeout: .seconds(10)) }
            }
            #expect(error?.reason.contains("receiving process died") == true)
        }
    }

    @Test("a ring header written by another version, or not a ring at all, is refused")
    func foreignHeader() throws {
        let region = try SharedMemory.create(.memfd("foreign-ring"), size: MessageRing.size(capacity: 8192))
        expectError(.foreign) { try RingReceiver(try attachAgain(region)) }  // never formatted
        try MessageRing.format(region)
        try region.set(UInt16(2), at: RingHeader.major.offset)
        let error = expectError(.foreign) { try RingSender(try attachAgain(region)) }
        #expect(error?.reason.contains("version 2.0") == true)
        // A later minor version of the same major is read (Docs/WireFormat.md).
        try MessageRing.format(region)
        try region.set(UInt16(7), at: RingHeader.minor.offset)
        do {
            let sender = try RingSender(try attachAgain(region)), receiver = try RingReceiver(try attachAgain(region))
            try sender.send([42])
            #expect(try receiver.receive(timeout: .seconds(5)) == [42])
            sender.close()
            receiver.close()
        }
        try MessageRing.format(region)
        try region.set(UInt64(1 << 40), at: RingHeader.capacity.offset)
        expectError(.foreign) { try RingReceiver(try attachAgain(region)) }
        // Positions that are not 8-byte slots (the fuzzer's second find: a misaligned read), or more than a ring apart.
        for (head, tail) in [(UInt64(0), UInt64(0x0002_0202_0202_0202)), (3, 0), (1 << 20, 0)] {
            try MessageRing.format(region)
            try region.set(head, at: RingHeader.head.offset)
            try region.set(tail, at: RingHeader.tail.offset)
            let error = expectError(.foreign) { try RingReceiver(try attachAgain(region)) }
            #expect(error?.reason.contains("position") == true)
            expectError(.foreign) { try RingSender(try attachAgain(region)) }
            // Refused, each side gave its seat back.
            #expect(try region.get(Int32.self, at: RingHeader.senderPID.offset) == 0)
            #expect(try region.get(Int32.self, at: RingHeader.receiverPID.offset) == 0)
        }
        // A corrupt message length (what Fuzz/FuzzRingHeader found) is refused, never read past the ring.
        try MessageRing.format(region)
        do {
            let sender = try RingSender(try attachAgain(region))
            let receiver = try RingReceiver(try attachAgain(region))
            try sender.send([1, 2, 3])
            try region.set(UInt32(0x7171_7171), at: MessageRing.headerSize)
            let corrupt = expectError(.foreign) { try receiver.tryReceive() }
            #expect(corrupt?.reason.contains("corrupt") == true)
            try region.set(UInt32(3), at: MessageRing.headerSize)
            #expect(try receiver.tryReceive() == [1, 2, 3])
            try region.set(UInt64(1 << 40), at: RingHeader.head.offset)  // more published than the ring holds
            expectError(.foreign) { try receiver.tryReceive() }
        }
        expectError(.invalidArgument) { try MessageRing.format(region, capacity: 5000) }
        let tooBig = expectError(.invalidArgument) { try MessageRing.format(region, capacity: 1 << 20) }  // does not fit
        #expect(tooBig?.reason.contains("needs MessageRing.size(capacity: 1048576) = 1048832 bytes") == true, "\(String(describing: tooBig))")
        expectError(.invalidArgument) { try MessageRing.format(region, at: 4) }  // not 64-byte aligned
    }

    /// The probe to run `ring-serve` with: the debug build beside the tests, or (CI) a release build, where the
    /// optimiser ends a handle's lifetime after its last use.
    static let servingProbe = ProcessInfo.processInfo.environment["SHM_RELEASE_PROBE"] ?? Probe.path

    @Test("a sender that serves forever never ends the stream; killed, it is peerDied within a second")
    func serveForever() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            let server = try ChildProcess(Self.servingProbe, ["ring-serve", name.description])
            defer { if server.isRunning { server.kill() } }
            #expect(server.line() == "ok sent")
            let receiver = try RingReceiver(try attachAgain(region))
            #expect(try receiver.receive(timeout: .seconds(10)) == Array("hello".utf8))
            expectError(.timedOut) { try receiver.receive(timeout: .milliseconds(1500)) }  // not nil: not finished
            let finished = receiver.isFinished
            #expect(!finished)

            server.kill()
            let killed = ContinuousClock.now
            expectError(.peerDied) { try receiver.receive(timeout: .seconds(5)) }
            #expect(ContinuousClock.now - killed < .seconds(1))
        }
    }

    @Test("a dropped handle ends nothing and frees its process to attach again; close() gives the seat to others")
    func droppedHandle() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            let receiver = try RingReceiver(try attachAgain(region))
            do {
                let sender = try RingSender(try attachAgain(region))
                try sender.send([1])
            }
            #expect(try receiver.tryReceive() == [1])
            let finished = receiver.isFinished
            #expect(!finished)
            let again = try RingSender(try attachAgain(region))  // this process, no live handle: allowed
            expectError(.busy) { try RingSender(try attachAgain(region)) }  // a live one: busy
            try again.send([2])
            again.close()
            #expect(try receiver.receive(timeout: .seconds(1)) == [2])
            #expect(try receiver.receive(timeout: .seconds(1)) == nil)  // close() finished it
            #expect(try Probe.run(["ring-send", name.description, "8"]).hasPrefix("ok"))  // the seat is free for others
        }
    }

    @Test("a receiver that starts first waits for the ring to be formatted; no ring in time is timedOut, something else foreign")
    func waitsForFormat() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            let waiter = try Probe.start(["ring-wait", name.description, "10000"])
            usleep(300_000)
            let started = ContinuousClock.now
            try MessageRing.format(region, capacity: 4096)
            let sender = try RingSender(try attachAgain(region))
            try sender.send(Array("ready".utf8))
            #expect(waiter.finish().lastLine == "ok ready")
            #expect(ContinuousClock.now - started < .seconds(5))

            let empty = try SharedMemory.create(.anonymous, size: 8192)
            let timedOut = expectError(.timedOut) { try MessageRing.waitUntilFormatted(empty, timeout: .milliseconds(50)) }
            #expect(timedOut?.reason.contains("no message ring has been formatted") == true)
            expectError(.timedOut) { try RingSender(empty, timeout: .milliseconds(50)) }  // as a service's subscriber is
            try empty.set(UInt64(0x1234), at: 0)
            expectError(.foreign) { try MessageRing.waitUntilFormatted(empty, timeout: .milliseconds(50)) }
            // A ring of another layout version is foreign at once, not after the time is up.
            try MessageRing.format(empty, capacity: 4096)
            try empty.set(UInt16(2), at: RingHeader.major.offset)
            let asked = ContinuousClock.now
            expectError(.foreign) { try MessageRing.waitUntilFormatted(empty, timeout: .seconds(10)) }
            #expect(ContinuousClock.now - asked < .seconds(1))
        }
    }

    @Test("positions run free: a ring keeps working where they wrap around 2^64")
    func positionsWrap() throws {
        let region = try SharedMemory.create(.memfd("ring-wraps"), size: MessageRing.size(capacity: 4096))
        try MessageRing.format(region)
        let start = UInt64.max - 8191  // two rings' worth before the wrap
        try region.set(start, at: RingHeader.head.offset)
        try region.set(start, at: RingHeader.tail.offset)
        let sender = try RingSender(try attachAgain(region))
        let receiver = try RingReceiver(try attachAgain(region))
        for round in 0..<100 {
            let message = Array(repeating: UInt8(truncatingIfNeeded: round), count: 1 + round * 13 % 700)
            try sender.send(message)
            #expect(try receiver.tryReceive() == message)
        }
        #expect(try region.get(UInt64.self, at: RingHeader.head.offset) < start)  // it did wrap
        // A read position that is ahead of the write position is not a receiver's: the sender refuses it.
        try region.set(try region.get(UInt64.self, at: RingHeader.head.offset) &+ 64, at: RingHeader.tail.offset)
        let error = expectError(.foreign) { while true { try sender.send(Array(repeating: 1, count: 1000)) } }
        #expect(error?.reason.contains("read position") == true)
    }

    @Test("one sender and one receiver; empty, full, timed, finished, zero-copy, too large")
    func operations() throws {
        let region = try SharedMemory.create(.memfd("ring-ops"), size: MessageRing.size(capacity: 4096))
        #expect(try MessageRing.format(region) == 4096)
        let sender = try RingSender(try attachAgain(region))
        let receiver = try RingReceiver(try attachAgain(region))
        expectError(.busy) { try RingSender(try attachAgain(region)) }  // this process already sends; one sender
        #expect(try receiver.tryReceive() == nil)
        expectError(.timedOut) { try receiver.receive(timeout: .milliseconds(20)) }
        expectError(.invalidArgument) { try sender.send(Array(repeating: 0, count: sender.maxMessage + 1)) }

        try sender.send(count: 16) { for byte in "hello".utf8 { $0.append(byte) } }  // room for 16, 5 written
        #expect(try receiver.receive { $0.withUnsafeBytes { String(decoding: $0, as: UTF8.self) } } == "hello")
        try sender.sendUnsafe(count: 3) { $0.copyBytes(from: [1, 2, 3]) }
        #expect(try receiver.receiveUnsafe { Array($0) } == [1, 2, 3])
        // Fill it: messages wrap around the end and stay whole.
        var sent = 0
        while try [UInt8](repeating: UInt8(sent & 0xff), count: 300).withUnsafeBytes({ try sender.trySend($0) }) { sent += 1 }
        #expect(sent >= 4096 / 312 - 1)
        expectError(.timedOut) { try sender.send([UInt8](repeating: 0, count: 300), timeout: .milliseconds(20)) }
        for i in 0..<sent { #expect(try receiver.receive() == [UInt8](repeating: UInt8(i & 0xff), count: 300)) }
        try sender.send([])
        #expect(try receiver.receive() == [])
        sender.finish()
        #expect(try receiver.receive() == nil)
        let finished = receiver.isFinished
        #expect(finished)
    }

    @Test("receive(into:) copies each message into the caller's buffer; one too long for it stays in the ring")
    func receiveIntoBuffer() throws {
        let region = try SharedMemory.create(.memfd("ring-into"), size: MessageRing.size(capacity: 4096))
        try MessageRing.format(region)
        let sender = try RingSender(try attachAgain(region))
        let receiver = try RingReceiver(try attachAgain(region))
        var storage = [UInt8](repeating: 0xEE, count: 8)
        do {
            var buffer = storage.mutableSpan
            var bytes = buffer.mutableBytes
            expectError(.timedOut) { try receiver.receive(into: &bytes, timeout: .milliseconds(20)) }
            try sender.send([1, 2, 3])
            #expect(try receiver.receive(into: &bytes) == 3)
            try sender.send(Array(10..<22))  // 12 bytes: more than the 8 the buffer holds
            try sender.send([9])
            let error = expectError(.invalidArgument) { try receiver.receive(into: &bytes) }
            #expect(error?.reason.contains("12 bytes") == true)
            #expect(error?.reason.contains("holds 8") == true)
        }
        #expect(storage == [1, 2, 3, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE])  // only the message's bytes were written
        // The long message was not taken: it comes next, whole, into a buffer that holds it.
        let large = UnsafeMutableRawBufferPointer.allocate(byteCount: receiver.maxMessage, alignment: 8)
        defer { large.deallocate() }
        #expect(try receiver.receiveUnsafe(into: large) == 12)
        #expect(Array(large.prefix(12)) == Array(10..<22))
        #expect(try receiver.receiveUnsafe(into: large) == 1)
        #expect(large[0] == 9)
        // Messages wrap around the end of the ring and still arrive whole; an empty message is 0; the end is nil.
        for round in 0..<40 {
            let message = [UInt8](repeating: UInt8(round), count: 300)
            try sender.send(message)
            #expect(try receiver.receiveUnsafe(into: large) == 300)
            #expect(Array(large.prefix(300)) == message)
        }
        try sender.send([])
        #expect(try receiver.receiveUnsafe(into: UnsafeMutableRawBufferPointer(start: nil, count: 0)) == 0)
        sender.finish()
        #expect(try receiver.receiveUnsafe(into: large) == nil)
    }
}
