import Foundation
import Synchronization
import TestSupport
import Testing
@testable import SharedMemory

/// The publish takes no lock (Docs/WireFormat.md, "The lock, the publish epoch, and repair"): a slot being emptied
/// waits for the publishes in flight, never for a dead publisher's, and the next publisher repairs a dead one's.
@Suite("A publish without the lock")
struct PublishEpochTests {
    typealias P = PublishSubscribe

    @Test("subscribers leave and join again while a publisher publishes without pause: samples in order, no chunk keeps a mark")
    func leaveWhilePublishing() throws {
        try Names.with(.posix) { name in
            let region = try PublishSubscribeTests.makeService(name, maxPayload: 64, subscribers: 2, queueDepth: 4)
            let done = Atomic<Int>(0), published = Atomic<Int>(0), received = Atomic<Int>(0), wrong = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: 3) { worker in
                do {
                    let attachment = try SharedMemory.open(name)
                    if worker == 0 {
                        let publisher = try Publisher(attachment)
                        var n = 0
                        while done.load(ordering: .relaxed) < 2 {
                            try publisher.publish(count: 8) { for _ in 0..<8 { $0.append(7 as UInt8) } }
                            n += 1
                        }
                        published.store(n, ordering: .relaxed)
                        publisher.finish()
                        return
                    }
                    for _ in 0..<200 {
                        let subscriber = try Subscriber(attachment)
                        var last: UInt64 = 0
                        for _ in 0..<10 {
                            do {
                                guard let sequence = try subscriber.receive(timeout: .milliseconds(20), { _, info in info.sequence }) else { break }
                                if sequence <= last { wrong.add(1, ordering: .relaxed) }
                                last = sequence
                                received.add(1, ordering: .relaxed)
                            } catch let error as SharedMemoryError where error.code == .timedOut {
                                break
                            }
                        }
                        subscriber.close()
                    }
                    done.add(1, ordering: .relaxed)  // the publisher stops when both subscribers' loops end
                } catch {
                    Issue.record("worker \(worker): \(error)")
                    wrong.add(1_000_000, ordering: .relaxed)
                    if worker != 0 { done.add(1, ordering: .relaxed) }
                }
            }
            let (wrongCount, publishedCount, receivedCount) = (wrong.load(ordering: .relaxed), published.load(ordering: .relaxed), received.load(ordering: .relaxed))
            #expect(wrongCount == 0)
            #expect(publishedCount > 0 && receivedCount > 0)
            // Every subscriber left and the publisher finished: no chunk is held by anyone.
            #expect(try PublishSubscribeTests.freeChunks(region) == PublishSubscribeTests.chunkCount(region))
            #expect(try ServiceView(region, at: 0, timeout: .zero).publishEpoch.load(ordering: .relaxed) % 2 == 0)
        }
    }

    @Test("a subscriber leaving waits for a publish in flight to end, and only until it ends")
    func leavingWaitsForAPublish() throws {
        try Names.with(.posix) { name in
            let region = try PublishSubscribeTests.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 4)
            let publisher = try Publisher(region)
            let view = try ServiceView(region, at: 0, timeout: .zero)
            let connected = Atomic<Bool>(false), inPublish = Atomic<Bool>(false), left = Atomic<Bool>(false)
            let leaving = Thread {
                do {
                    let subscriber = try Subscriber(try SharedMemory.open(name))
                    connected.store(true, ordering: .releasing)
                    while !inPublish.load(ordering: .acquiring) { usleep(100) }
                    subscriber.close()
                    left.store(true, ordering: .releasing)
                } catch {
                    Issue.record("the subscriber: \(error)")
                    left.store(true, ordering: .releasing)
                }
            }
            leaving.start()
            while !connected.load(ordering: .acquiring) { usleep(100) }
            view.geometry.enterPublish()  // a publish that has read the slot's state, as far as the leaver can tell
            inPublish.store(true, ordering: .releasing)
            usleep(200_000)
            // However slow the machine, the leaver cannot be done: the publish it waits for has not ended.
            let leftEarly = left.load(ordering: .acquiring)
            #expect(!leftEarly, "the subscriber left while a publish was in flight")
            #expect(publisher.subscriberCount == 0, "marked as leaving (not connected) at once")
            view.geometry.leavePublish()
            let deadline = ContinuousClock.now + .seconds(10)
            while !left.load(ordering: .acquiring), ContinuousClock.now < deadline { usleep(1000) }
            let leftAfter = left.load(ordering: .acquiring)
            #expect(leftAfter, "the subscriber still waited after the publish ended")
            try publisher.publish(count: 1) { $0.append(1 as UInt8) }
            publisher.finish()
        }
    }

    @Test("a publisher that died in its publish: a subscriber leaving does not wait for it, and the next publisher repairs")
    func deadPublisherInItsPublish() throws {
        try Names.with(.posix) { name in
            let region = try PublishSubscribeTests.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 4)
            let view = try ServiceView(region, at: 0, timeout: .zero)
            // The publisher's seat names a process that has exited, and its epoch says it was publishing.
            let exited = try ChildProcess("/bin/true", [])
            let pid = exited.pid
            _ = exited.finish()
            ServiceHeader.publisherStart.store(UInt64(12_345), view.base)
            view.atomic(ServiceHeader.publisherPID.offset, Int32.self).store(pid, ordering: .releasing)
            view.atomic(ServiceHeader.publisherState.offset, UInt32.self).store(1, ordering: .releasing)
            view.geometry.enterPublish()
            let subscriber = try Subscriber(region)
            let started = ContinuousClock.now
            subscriber.close()  // waits a quiet slice at most, then sees the publisher dead
            #expect(ContinuousClock.now - started < .seconds(5))
            #expect(view.publishEpoch.load(ordering: .relaxed) % 2 == 1)
            let publisher = try Publisher(region)  // takes the dead one's seat: its epoch made even
            #expect(view.publishEpoch.load(ordering: .relaxed) % 2 == 0)
            let again = try Subscriber(region)
            try publisher.publish(count: 1) { $0.append(9 as UInt8) }
            #expect(try again.receive(timeout: .seconds(5)) { bytes, _ in bytes.unsafeLoad(fromByteOffset: 0, as: UInt8.self) } == 9)
            again.close()
            publisher.finish()
        }
    }
}
