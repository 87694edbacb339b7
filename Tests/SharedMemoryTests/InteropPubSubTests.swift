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
