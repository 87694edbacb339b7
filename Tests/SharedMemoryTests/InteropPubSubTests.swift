import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// The publish/subscribe service as a wire format (Docs/WireFormat.md): a C process built against
/// Interop/c/smpubsub.h on either side of a Swift one, and the committed test images. (The Python package's tests
/// run under pytest in .ci/run.)
@Suite("The publish/subscribe service's wire format, in Swift and C")
struct InteropPubSubTests {
    typealias P = PublishSubscribe

    /// Builds Interop/c/smpubsub_peer.c, also with AddressSanitizer and UBSan (the second binary).
    static func peers(in directory: String) throws -> (plain: String, checked: String) {
        let plain = try InteropRingTests.compile("smpubsub_peer.c", in: directory)
        let checked = directory + "/smpubsub_peer_checked"
        let build = try ChildProcess.run("/usr/bin/cc", ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-fsanitize=address,undefined",
                                                         "-fno-sanitize-recover=all", "-o", checked, InteropRingTests.interop + "/c/smpubsub_peer.c", "-lrt"])
        try #require(build.status == 0, "\(build.error)")
        return (plain, checked)
    }

    /// What service-expected.txt says of each image: its name, `ok` or `foreign`, and the samples (sequence, bytes).
    static func vectors() throws -> [(name: String, verdict: String, samples: [(UInt64, [UInt8])])] {
        try String(contentsOfFile: InteropRingTests.interop + "/vectors/service-expected.txt", encoding: .utf8).split(separator: "\n").map { line in
            let fields = line.split(separator: " ").map(String.init)
            let samples = fields.dropFirst(2).map { field -> (UInt64, [UInt8]) in
                let parts = field.split(separator: ":", omittingEmptySubsequences: false)
                var bytes: [UInt8] = []
                var rest = parts[1]
                while !rest.isEmpty {
                    bytes.append(UInt8(rest.prefix(2), radix: 16)!)
                    rest = rest.dropFirst(2)
                }
                return (UInt64(parts[0])!, bytes)
            }
            return (fields[0], fields[1], samples)
        }
    }

    /// What a reader makes of a service image, as Docs/WireFormat.md says: subscribe asking for the whole history,
    /// take the publisher's seat, update, receive everything there is, publish "end", receive everything again.
    static func read(_ image: Data) throws -> (String, [(UInt64, [UInt8])]) {
        let region = try SharedMemory.create(.anonymous, size: image.count)
        try region.set(bytes: image, at: 0)
        var received: [(UInt64, [UInt8])] = []
        func drain(_ subscriber: inout Subscriber) throws {
            while true {
                do {
                    guard let sample = try subscriber.receive(timeout: .zero, { bytes, info in (info.sequence, bytes.withUnsafeBytes { Array($0) }) }) else { return }
                    received.append(sample)
                } catch let error as SharedMemoryError where error.code == .timedOut {
                    return
                }
            }
        }
        do {
            let history = Int(image.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: ServiceHeader.history.offset, as: UInt32.self) })
            var subscriber = try Subscriber(region, history: history)
            let publisher = try Publisher(region)
            try publisher.update()
            try drain(&subscriber)
            try publisher.publish(count: 3) { for byte in "end".utf8 { $0.append(byte) } }
            try drain(&subscriber)
            return ("ok", received)
        } catch let error as SharedMemoryError where error.code == .foreign {
            return ("foreign", received)
        }
    }

    @Test("every service image reads as service-expected.txt says (Swift; the C header too, also under AddressSanitizer and UBSan)")
    func wireVectors() throws {
        let vectors = try Self.vectors()
        #expect(vectors.count >= 17)
        for vector in vectors {
            let image = try Data(contentsOf: URL(fileURLWithPath: InteropRingTests.interop + "/vectors/\(vector.name).pubsub"))
            let (verdict, received) = try Self.read(image)
            #expect(verdict == vector.verdict, "\(vector.name)")
            if vector.verdict != "foreign" {
                #expect(received.map(\.0) == vector.samples.map(\.0) && received.map(\.1) == vector.samples.map(\.1), "\(vector.name)")
            }
        }
        try InteropRingTests.runCImageTest("test_smpubsub.c")
    }

    @Test("20 000 samples each way between a Swift process and a C one, every byte checked, none lost to a blocking subscriber")
    func streams() throws {
        try InteropRingTests.withDirectory { directory in
            let (peer, checked) = try Self.peers(in: directory)
            try Names.with(.posix) { name in
                guard case .posix(let object) = name.location else { return }
                let region = try PublishSubscribeTests.makeService(name, maxPayload: 4096, subscribers: 3, queueDepth: 8, history: 2)
                // Swift publishes (a process of its own); a C subscriber and a sanitised one, both blocking, read.
                let cSubscriber = try ChildProcess(peer, ["subscribe", object, "0", "block"])
                let cChecked = try ChildProcess(checked, ["subscribe", object, "0", "block"])
                #expect(cSubscriber.line() == "ok connected")
                #expect(cChecked.line() == "ok connected")
                let published = try Probe.run(["ps-publish", name.description, "20000"])
                #expect(published.hasSuffix("ok 20000"), "\(published)")
                #expect(cSubscriber.finish().lastLine == "ok 20000 0")
                let sanitised = cChecked.finish()
                #expect(sanitised.status == 0 && sanitised.lastLine == "ok 20000 0", "\(sanitised.output)\(sanitised.error)")
                _ = region
            }
            // C publishes; a Swift subscriber in another process and one in this one read. (A new service: the
            // first one's stream has ended, which a subscriber connecting now would see at once.)
            try Names.with(.posix) { name in
                guard case .posix(let object) = name.location else { return }
                let region = try PublishSubscribeTests.makeService(name, maxPayload: 4096, subscribers: 3, queueDepth: 8, history: 2)
                let swiftSubscriber = try Probe.start(["ps-subscribe", name.description, "0", "block"])
                #expect(swiftSubscriber.line() == "ok connected")
                var here = try Subscriber(try SharedMemory.open(name), overflow: .blockPublisher)
                let cPublisher = try ChildProcess(peer, ["publish", object, "20000"])
                #expect(cPublisher.line() == "ok publishing")
                var received: UInt64 = 0
                while let (sequence, good) = try PublishSubscribeTests.receive(&here, timeout: .seconds(10)) {
                    #expect(good && sequence == received + 1)
                    received += 1
                }
                #expect(received == 20000 && here.lost == 0)
                #expect(cPublisher.finish().lastLine == "ok 20000")
                #expect(swiftSubscriber.finish().lastLine == "ok 20000 0")
                _ = region
            }
        }
    }

    @Test("a C subscriber sees the Swift publisher's death, and a Swift subscriber the C publisher's, after reading what was published")
    func publisherDeath() throws {
        try InteropRingTests.withDirectory { directory in
            let (peer, _) = try Self.peers(in: directory)
            try Names.with(.posix) { name in
                guard case .posix(let object) = name.location else { return }
                let region = try PublishSubscribeTests.makeService(name, maxPayload: 1024, subscribers: 2, queueDepth: 64)
                let cSubscriber = try ChildProcess(peer, ["subscribe", object, "0", "block"])
                #expect(cSubscriber.line() == "ok connected")
                let swiftPublisher = try Probe.start(["ps-publish", name.description, "0", "1"])
                #expect(swiftPublisher.line() == "ok publishing")
                usleep(100_000)
                swiftPublisher.kill()
                let killed = ContinuousClock.now
                let result = cSubscriber.finish()
                #expect(result.status == 3 && result.lastLine.hasPrefix("peerDied "), "\(result.output)")
                #expect(ContinuousClock.now - killed < .seconds(2))

                var subscriber = try Subscriber(try SharedMemory.open(name), overflow: .blockPublisher)
                let cPublisher = try ChildProcess(peer, ["publish", object, "0"])
                #expect(cPublisher.line() == "ok publishing")
                for _ in 0..<100 { #expect(try PublishSubscribeTests.receive(&subscriber)?.good == true) }
                cPublisher.kill()
                let error = #expect(throws: SharedMemoryError.self) {
                    while try PublishSubscribeTests.receive(&subscriber) != nil {}
                }
                #expect(error?.code == .peerDied)
                _ = region
            }
        }
    }

    @Test("a C subscriber killed holding a sample: the Swift publisher takes back its chunks and its slot")
    func subscriberDeath() throws {
        try InteropRingTests.withDirectory { directory in
            let (peer, _) = try Self.peers(in: directory)
            try Names.with(.posix) { name in
                guard case .posix(let object) = name.location else { return }
                let region = try PublishSubscribeTests.makeService(name, maxPayload: 1024, subscribers: 1, queueDepth: 4)
                var publisher = try Publisher(try SharedMemory.open(name))
                let cSubscriber = try ChildProcess(peer, ["subscribe", object, "1"])
                #expect(cSubscriber.line() == "ok connected")
                try PublishSubscribeTests.publish(&publisher, 3)
                cSubscriber.kill()
                // More samples than the service has chunks: the dead subscriber's are found and taken back, and its
                // slot (the only one) is free for the next subscriber.
                for _ in 0..<50 { try PublishSubscribeTests.publish(&publisher, 1) }
                var next = try Subscriber(try SharedMemory.open(name))
                try PublishSubscribeTests.publish(&publisher, 1)
                #expect(try PublishSubscribeTests.receive(&next)?.sequence == 54)
                _ = region
            }
        }
    }
}
