import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// Publish/subscribe (Docs/PublishSubscribe.md) and the seqlock cell: fan-out, overflow policies, history, deaths
/// of each role, hostile headers.
@Suite("Publish/subscribe")
struct PublishSubscribeTests {
    typealias P = PublishSubscribe

    static func makeService(_ name: RegionName, maxPayload: Int = 4096, subscribers: Int = 4, queueDepth: Int = 8, history: Int = 0) throws -> AnyRegion {
        let size = P.size(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history)
        let region = try SharedMemory.create(name, size: size)
        try P.format(region, maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history)
        return region
    }

    /// Publishes `count` samples of the probes' pattern.
    static func publish(_ publisher: inout Publisher, _ count: Int) throws {
        for _ in 0..<count {
            let next = publisher.lastSequence + 1
            let size = min(publisher.maxPayload, [8, 64, 1000, publisher.maxPayload][Int(next % 4)])
            try publisher.publish(count: size) { output in
                for j in 0..<size {
                    output.append(j < 8 ? UInt8(truncatingIfNeeded: next >> (8 * UInt64(j))) : UInt8((Int(next % 251) + j) % 251))
                }
            }
        }
    }

    /// Receives one sample: its sequence, and whether its bytes are the pattern's.
    static func receive(_ subscriber: inout Subscriber, timeout: Duration? = .seconds(5)) throws -> (sequence: UInt64, good: Bool)? {
        let limit = subscriber.maxPayload
        return try subscriber.receive(timeout: timeout) { (bytes: RawSpan, info: SampleInfo) in
            let size = min(limit, [8, 64, 1000, limit][Int(info.sequence % 4)])
            var good = bytes.byteCount == size
            for j in 0..<min(size, bytes.byteCount) where good {
                let expected = j < 8 ? UInt8(truncatingIfNeeded: info.sequence >> (8 * UInt64(j))) : UInt8((Int(info.sequence % 251) + j) % 251)
                good = bytes.unsafeLoad(fromByteOffset: j, as: UInt8.self) == expected
            }
            return (info.sequence, good)
        }
    }

    /// How many chunks no one holds, read from the region as another process would.
    static func freeChunks(_ region: borrowing AnyRegion) throws -> Int {
        let view = try ServiceView(region, at: 0, timeout: .zero)
        return (0..<view.layout.chunkCount).count { view.holders($0).load(ordering: .acquiring) == 0 }
    }

    /// How many chunks the service has.
    static func chunkCount(_ region: borrowing AnyRegion) throws -> Int {
        try ServiceView(region, at: 0, timeout: .zero).layout.chunkCount
    }

    @Test("sizes of configurations too large to format are Int.max, never an overflow, and creating that much says so")
    func impossibleSizes() throws {
        #expect(PublishSubscribe.size(maxPayload: Int.max, subscribers: 1, queueDepth: 1) == Int.max)
        #expect(PublishSubscribe.size(maxPayload: 64, subscribers: Int.max, queueDepth: Int.max, history: Int.max) == Int.max)
        #expect(PublishSubscribe.size(maxPayload: 1 << 36, subscribers: 1, queueDepth: 1) < Int.max)  // the largest allowed
        #expect(RequestResponse.size(maxRequest: Int.max, maxResponse: 0, clients: 1, depth: 1) == Int.max)
        #expect(RequestResponse.size(maxRequest: 64, maxResponse: 64, clients: Int.max, depth: Int.max) == Int.max)
        #expect(MessageRing.size(capacity: Int.max) == Int.max && MessageRing.size(capacity: 4096) == 4096 + 256)
        try Names.with(.posix) { name in
            let error = expectError(of: [.invalidArgument, .limitExceeded, .noSpace]) { _ = try SharedMemory.create(name, size: MessageRing.size(capacity: Int.max)) }
            #expect(error != nil)
        }
    }

    @Test("an offset anywhere in Int, for everything made in a region, is an error, never an overflow")
    func extremeOffsets() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 1 << 16)
            for offset in [Int.min, Int.min + 1, -64, -1, 1 << 16 + 64, Int.max - 255, Int.max] {
                expectError(of: [.invalidArgument, .outOfBounds]) { try MessageRing.format(region, at: offset) }
                expectError(of: [.invalidArgument, .outOfBounds]) { try MessageRing.format(region, at: offset, capacity: 4096) }
                expectError(of: [.invalidArgument, .outOfBounds]) { _ = try RingSender(region, at: offset) }
                expectError(of: [.invalidArgument, .outOfBounds]) { try PublishSubscribe.format(region, at: offset, maxPayload: 64, subscribers: 1, queueDepth: 4) }
                expectError(of: [.invalidArgument, .outOfBounds]) { _ = try Subscriber(region, at: offset) }
                expectError(of: [.invalidArgument, .outOfBounds]) { _ = try Publisher(region, at: offset) }
                expectError(of: [.invalidArgument, .outOfBounds]) { try RequestResponse.format(region, at: offset, maxRequest: 64, maxResponse: 64, clients: 1, depth: 1) }
                expectError(of: [.invalidArgument, .outOfBounds]) { _ = try SeqlockCell<UInt64>.format(in: region, at: offset) }
                expectError(of: [.invalidArgument, .outOfBounds]) { _ = try ProcessMutex.initialize(in: region, at: offset) }
                expectError(of: [.invalidArgument, .outOfBounds]) { _ = try region.atomic(UInt64.self, at: offset) }
                expectError(of: [.invalidArgument, .outOfBounds]) { _ = try region.get(UInt64.self, at: offset) }
            }
            for offset in [Int.min, -64, Int.max - 63, Int.max] {
                expectError(.invalidArgument) { _ = try SharedHeap(formatting: try SharedMemory.create(.anonymous, size: 1 << 16), at: offset) }
            }
        }
    }

    @Test("a sample published as a copy of an array arrives whole; too large is refused")
    func copyingPublish() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 16, subscribers: 1, queueDepth: 4))
            try PublishSubscribe.format(region, maxPayload: 16, subscribers: 1, queueDepth: 4)
            let publisher = try Publisher(region)
            let subscriber = try Subscriber(region)
            let sequence = try publisher.publish([5, 6, 7] as [UInt8])
            let got = try subscriber.receive(timeout: .seconds(5)) { bytes, info in (bytes.withUnsafeBytes { Array($0) }, info.sequence) }
            #expect(got?.0 == [5, 6, 7] && got?.1 == sequence)
            expectError(.invalidArgument) { _ = try publisher.publish([UInt8](repeating: 1, count: 17)) }
            subscriber.close()
            publisher.finish()
        }
    }

    @Test("every subscriber gets every sample, in order, in place", arguments: Backend.attachable)
    func fanOut(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try Self.makeService(name, subscribers: 3)
            var first = try Subscriber(try attachAgain(region))
            var second = try Subscriber(try attachAgain(region))
            var third = try Subscriber(try attachAgain(region))
            var publisher = try Publisher(try attachAgain(region))
            #expect(publisher.subscriberCount == 3)
            func drain(_ subscriber: inout Subscriber, round: Int) throws {
                for k in 1...5 {
                    let got = try #require(try Self.receive(&subscriber))
                    #expect(got.sequence == UInt64(round * 5 + k) && got.good)
                }
            }
            for round in 0..<20 {
                try Self.publish(&publisher, 5)
                try drain(&first, round: round)
                try drain(&second, round: round)
                try drain(&third, round: round)
            }
            #expect(first.lost == 0 && second.lost == 0 && third.lost == 0)
            publisher.finish()
            #expect(try Self.receive(&first) == nil)
            #expect(try Self.receive(&second) == nil)
            #expect(try Self.receive(&third) == nil)
            // Nothing is held once every sample was read.
            #expect(try Self.freeChunks(region) == P.Layout(maxPayload: 4096, subscribers: 3, queueDepth: 8, history: 0).chunkCount)
        }
    }

    @Test("an overwriting subscriber loses the oldest and counts them; a blocking one holds the publisher back, then times out")
    func overflow() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, subscribers: 2, queueDepth: 4)
            var dropping = try Subscriber(try SharedMemory.open(name), overflow: .overwriteOldest)
            var publisher = try Publisher(try SharedMemory.open(name), blockTimeout: .milliseconds(100))
            try Self.publish(&publisher, 10)
            for expected in 7...10 { #expect(try Self.receive(&dropping)?.sequence == UInt64(expected)) }
            #expect(dropping.lost == 6)
            dropping.close()

            var blocking = try Subscriber(try SharedMemory.open(name), queueDepth: 2, overflow: .blockPublisher)
            try Self.publish(&publisher, 2)
            let started = ContinuousClock.now
            let error = expectError(.timedOut) { try Self.publish(&publisher, 1) }
            #expect(ContinuousClock.now - started >= .milliseconds(100))
            #expect(error?.reason.contains("\(getpid())") == true)
            #expect(blocking.lost == 1)
            #expect(try Self.receive(&blocking)?.sequence == 11)
            #expect(try Self.receive(&blocking)?.sequence == 12)
            // Room again: the next publish goes through without waiting.
            try Self.publish(&publisher, 1)
            #expect(try Self.receive(&blocking)?.sequence == 14)
            // Everything read: no chunk keeps a mark, not even the one the blocking subscriber missed; only the
            // publisher's loan for its next sample, taken after the last publish, which it gives back when it goes.
            #expect(try Self.freeChunks(region) == Self.chunkCount(region) - 1)
            publisher.finish()
            #expect(try Self.freeChunks(region) == Self.chunkCount(region))
        }
    }

    @Test("a blocking subscriber in another process holds the publisher back until it reads, and misses nothing")
    func backpressureAcrossProcesses() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, subscribers: 1, queueDepth: 2)
            var publisher = try Publisher(try SharedMemory.open(name), blockTimeout: .seconds(10))
            let slow = try Probe.start(["ps-subscribe", name.description, "0", "slow"])
            #expect(slow.line() == "ok connected")
            try Self.publish(&publisher, 200)
            publisher.finish()
            // It read a sample a millisecond and missed none: the publisher waited for it.
            #expect(slow.finish().lastLine == "ok 200 0")
            _ = region
        }
    }

    @Test("a late subscriber asks for the history and gets the last samples first, then the new ones")
    func history() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, subscribers: 2, queueDepth: 8, history: 4)
            var publisher = try Publisher(try SharedMemory.open(name))
            try Self.publish(&publisher, 10)
            var late = try Subscriber(try SharedMemory.open(name), history: 3)
            var none = try Subscriber(try SharedMemory.open(name))
            try publisher.update()
            for expected in 8...10 { #expect(try Self.receive(&late)?.sequence == UInt64(expected)) }
            try Self.publish(&publisher, 1)
            #expect(try Self.receive(&late)?.sequence == 11)
            #expect(try Self.receive(&none)?.sequence == 11)
            expectError(.invalidArgument) { try Subscriber(try SharedMemory.open(name), history: 5) }
            _ = region
        }
    }

    @Test("a SIGKILLed subscriber's chunks and slot are reclaimed; a dead publisher is peerDied after the last sample")
    func deaths() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxPayload: 1024, subscribers: 2, queueDepth: 4)
            var publisher = try Publisher(try SharedMemory.open(name))
            // A subscriber that dies inside a receive, holding a sample.
            let holder = try Probe.start(["ps-subscribe", name.description, "0", "hold"])
            #expect(holder.line() == "ok connected")
            try Self.publish(&publisher, 1)
            #expect(holder.line() == "ok holding")
            holder.kill()
            var live = try Subscriber(try SharedMemory.open(name))
            // Far more samples than there are chunks: the dead one's are found and taken back.
            for _ in 0..<100 {
                try Self.publish(&publisher, 1)
                #expect(try Self.receive(&live)?.good == true)
            }
            // Both slots taken by live subscribers: a third is refused; the dead one's slot was freed for this one.
            let second = try Subscriber(try SharedMemory.open(name))
            expectError(.limitExceeded) { try Subscriber(try SharedMemory.open(name)) }
            second.close()
            live.close()
            // Every chunk is free but the publisher's loan for its next sample, given back when it goes.
            #expect(try Self.freeChunks(region) == P.Layout(maxPayload: 1024, subscribers: 2, queueDepth: 4, history: 0).chunkCount - 1)
            publisher.finish()
            #expect(try Self.freeChunks(region) == P.Layout(maxPayload: 1024, subscribers: 2, queueDepth: 4, history: 0).chunkCount)
        }
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxPayload: 1024, subscribers: 2, queueDepth: 64)
            var subscriber = try Subscriber(try SharedMemory.open(name))
            let publisher = try Probe.start(["ps-publish", name.description, "0", "1"])
            #expect(publisher.line() == "ok publishing")
            expectError(.busy) { try Publisher(try SharedMemory.open(name)) }
            var received = 0
            while received < 20, let got = try Self.receive(&subscriber) {
                #expect(got.good && got.sequence == UInt64(received + 1))
                received += 1
            }
            publisher.kill()
            // What it published is read first; then the death.
            var error: SharedMemoryError? = nil
            do {
                while let got = try Self.receive(&subscriber) {
                    #expect(got.good)
                    received += 1
                }
            } catch let caught as SharedMemoryError {
                error = caught
            }
            #expect(error?.code == .peerDied)
            // Another publisher takes the dead one's place, and the stream goes on.
            var next = try Publisher(try SharedMemory.open(name))
            try Self.publish(&next, 1)
            #expect(try Self.receive(&subscriber)?.good == true)
            next.finish()
            _ = region
        }
    }

    /// A subscriber that goes away without close() gives its slot back at once; nothing ends for anyone else. Before,
    /// the slot stayed taken for the life of the process: a one-slot service refused every later subscriber, and a
    /// dropped blocking subscriber made every publish wait out its block timeout, then throw timedOut.
    @Test("a subscriber dropped without close() gives its slot back at once, in this process and in another that lives on")
    func droppedSubscriberGivesBack() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 1)
            var publisher = try Publisher(region, blockTimeout: .seconds(1))
            do {
                let dropped = try Subscriber(region, overflow: .blockPublisher)
                _ = dropped.maxPayload
            }
            // Its slot is free: a new subscriber connects; and no publish waits for the dropped blocking one.
            var subscriber = try Subscriber(region)
            try Self.publish(&publisher, 3)  // would throw timedOut after 1 s per sample for a blocking one still there
            #expect(try Self.receive(&subscriber, timeout: .seconds(1))?.sequence == 3)
            subscriber.close()

            // Another process drops its blocking subscriber and lives on: the slot is free, and publishes do not wait.
            let other = try Probe.start(["ps-subscribe-drop", name.description])
            defer { other.kill() }
            #expect(other.line() == "ok dropped")
            var next = try Subscriber(region)
            try Self.publish(&publisher, 2)  // a queue of one, overwriting: the newer stays, the older is lost
            let got = try Self.receive(&next, timeout: .seconds(1))
            #expect(got?.sequence == 5 && next.lost == 1, "\(String(describing: got)), lost \(next.lost)")
            next.close()
            publisher.finish()
        }
    }

    /// A subscriber copied into a child by fork names its parent's slot: the child closing (or dropping) its copy
    /// must leave the parent subscribed. (The first form of giving slots back on deinit freed the parent's slot:
    /// `shm bench`'s publish/subscribe round trip, which subscribes before it forks, then hung for ever.)
    @Test("a forked child that closes its inherited copy of a subscriber leaves the parent subscribed")
    func forkedCopyLeavesParentSubscribed() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 4)
            var publisher = try Publisher(region)
            let probe = try Probe.start(["ps-subscribe-fork", name.description])
            #expect(probe.line() == "ok forked")
            #expect(publisher.subscriberCount == 1)
            try Self.publish(&publisher, 1)
            #expect(probe.finish().lastLine == "ok 1")
            publisher.finish()
        }
    }

    /// The sentences Interop/python/tests/test_pubsub.py's SENTENCES expects of the C header and the Python package:
    /// each error says the same in every language.
    @Test("errors' sentences, as the C header and the Python package say them too")
    func sameSentences() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 4, history: 3)
            #expect(expectError(.invalidArgument) { try Subscriber(region, history: 4) }?.reason == "this service keeps a history of 3 samples; 4 cannot be asked for")
            #expect(expectError(.invalidArgument) { try Subscriber(region, queueDepth: 9) }?.reason == "a subscriber's queue holds 1 to 4 samples on this service; 9 is not")
            let subscriber = try Subscriber(region)
            #expect(expectError(.limitExceeded) { try Subscriber(region) }?.reason == "all 1 subscriber slots of the service are taken by live processes")
            let publisher = try Publisher(region)
            #expect(expectError(.invalidArgument) { try publisher.publish(count: 65) { _ in } }?.reason == "a sample of 65 bytes does not fit this service: at most 64")
            #expect(expectError(.timedOut) { try subscriber.receive(timeout: .milliseconds(50)) { _, _ in () } }?.reason == "no sample arrived within 0.05 seconds")
            subscriber.close()
            publisher.finish()
        }
    }

    /// Docs/PublishSubscribe.md, "When a process dies": the publisher counts a sample in `lastSequence` before it waits
    /// for room in a blocking subscriber's full queue; killed in that wait, the others have the sample and the full
    /// one never gets it (issue: "header 3 056; subscribers ended at 3 055 and 3 056").
    @Test("a publisher killed while it waits for a full blocking queue: the others read that sample, the full one ends a sample short")
    func publisherKilledWhileBlocked() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxPayload: 64, subscribers: 2, queueDepth: 4)
            var overwriting = try Subscriber(try SharedMemory.open(name))
            var blocking = try Subscriber(try SharedMemory.open(name), queueDepth: 1, overflow: .blockPublisher)
            let publisher = try Probe.start(["ps-publish", name.description, "2"])
            #expect(publisher.line() == "ok publishing")
            // Sample 2 is counted (the header's word at 40) once the publisher waits for the blocking queue.
            let deadline = ContinuousClock.now + .seconds(5)
            while try region.get(UInt64.self, at: 40) < 2, ContinuousClock.now < deadline { usleep(100) }
            publisher.kill()
            #expect(try Self.receive(&overwriting)?.sequence == 1)
            #expect(try Self.receive(&overwriting)?.sequence == 2)
            let first = expectError(.peerDied) { try Self.receive(&overwriting) }
            #expect(first?.reason.contains("died after sample 2") == true, "\(String(describing: first))")
            #expect(try Self.receive(&blocking)?.sequence == 1)
            let second = expectError(.peerDied) { try Self.receive(&blocking) }
            #expect(second?.reason.contains("reached only some subscribers") == true)
            // Killed in its wait: not lost. (Had the 1 s wait timed out first, the publisher would have counted it.)
            #expect(blocking.lost <= 1)
            overwriting.close()
            blocking.close()
        }
    }

    @Test("each role SIGKILLed at random moments, 100 times: no hang, no chunk leaked, counts exact afterwards")
    func killedAtRandom() throws {
        try Names.with(.posix) { name in
            let layout = P.Layout(maxPayload: 1024, subscribers: 3, queueDepth: 4, history: 2)
            let region = try Self.makeService(name, maxPayload: 1024, subscribers: 3, queueDepth: 4, history: 2)
            for round in 0..<100 {
                let publisher = try Probe.start(["ps-publish", name.description, "0"])
                let subscribers = try (0..<2).map { _ in try Probe.start(["ps-subscribe", name.description, "0"]) }
                #expect(publisher.line() == "ok publishing")
                for subscriber in subscribers { #expect(subscriber.line() == "ok connected") }
                usleep(UInt32.random(in: 0...5000))
                var order = [publisher] + subscribers
                order.shuffle()
                for process in order {
                    process.kill()
                    usleep(UInt32.random(in: 0...500))
                }
                // The survivors' leftovers: a new publisher and subscriber take over, and count exactly.
                var next = try Publisher(try SharedMemory.open(name))
                var subscriber = try Subscriber(try SharedMemory.open(name), queueDepth: 4)
                let first = next.lastSequence + 1
                try Self.publish(&next, 3)
                for k in 0..<3 {
                    let got = try #require(try Self.receive(&subscriber), "round \(round)")
                    #expect(got.good && got.sequence == first + UInt64(k), "round \(round)")
                }
                subscriber.close()
                try next.update()  // reclaims the killed subscribers
                next.finish()
                // Everything not in the history is free again.
                #expect(try Self.freeChunks(region) == layout.chunkCount - layout.history, "round \(round)")
            }
        }
    }

    @Test("a header or queue another process wrote over is foreign, never a crash or a read outside the service")
    func foreign() throws {
        try Names.with(.posix) { name in
            let region = try Self.makeService(name, maxPayload: 64, subscribers: 1, queueDepth: 4)
            var publisher = try Publisher(try SharedMemory.open(name))
            var subscriber = try Subscriber(try SharedMemory.open(name))
            let layout = P.Layout(maxPayload: 64, subscribers: 1, queueDepth: 4, history: 0)
            try Self.publish(&publisher, 1)
            // A chunk index past the last chunk.
            try region.set(UInt32(9999), at: layout.slotsAt + SubscriberSlot.entries.offset)
            expectError(.foreign) { try Self.receive(&subscriber) }
            // A write position a whole queue ahead of the read position.
            try region.set(UInt64(100), at: layout.slotsAt + SubscriberSlot.write.offset)
            expectError(.foreign) { try Self.receive(&subscriber) }
            // All but the first sample's, which the subscriber never took, and the publisher's loan for the next one.
            let free = try Self.freeChunks(region)
            #expect(free == (try Self.chunkCount(region)) - 2)
            expectError(.foreign) { try Self.publish(&publisher, 1) }
            // The refused publish, which used that loan, left no mark and gave the loan back.
            #expect(try Self.freeChunks(region) == free + 1)
            try region.set(UInt64(0), at: layout.slotsAt + SubscriberSlot.write.offset)
            try region.set(UInt64(0), at: layout.slotsAt + SubscriberSlot.read.offset)
            // A length past the largest payload.
            try Self.publish(&publisher, 1)
            let entry = Int(try region.get(UInt32.self, at: layout.slotsAt + SubscriberSlot.entries.offset))
            try region.set(UInt64(1 << 40), at: layout.chunksAt + entry * layout.chunkStride + Chunk.length.offset)
            expectError(.foreign) { try Self.receive(&subscriber) }
            // A header with another magic number, another version, an impossible configuration.
            try Names.with(.posix) { other in
                let bad = try SharedMemory.create(other, size: 1 << 16)
                try bad.set(UInt64(0x1234), at: 0)
                expectError(.foreign) { try Subscriber(try SharedMemory.open(other)) }
                try bad.set(P.magic, at: 0)
                try bad.set(UInt16(9), at: ServiceHeader.major.offset)
                expectError(.foreign) { try Publisher(try SharedMemory.open(other)) }
                try bad.set(UInt16(1), at: ServiceHeader.major.offset)
                try bad.set(UInt32(0), at: ServiceHeader.subscribers.offset)
                expectError(.foreign) { try Subscriber(try SharedMemory.open(other)) }
                try bad.set(UInt32(2), at: ServiceHeader.subscribers.offset)
                try bad.set(UInt64(1 << 30), at: ServiceHeader.maxPayload.offset)
                try bad.set(UInt32(4), at: ServiceHeader.queueDepth.offset)
                expectError(.foreign) { try Subscriber(try SharedMemory.open(other)) }
            }
            _ = region
        }
    }

    @Test("format refuses bad configurations and memory in use; attach waits for a format, bounded")
    func formatAndAttach() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 1 << 20)
            expectError(.invalidArgument) { try P.format(region, maxPayload: 64, subscribers: 0, queueDepth: 4) }
            expectError(.invalidArgument) { try P.format(region, maxPayload: 64, subscribers: 63, queueDepth: 4) }
            expectError(.invalidArgument) { try P.format(region, maxPayload: 64, subscribers: 1, queueDepth: 0) }
            expectError(.outOfBounds) { try P.format(region, maxPayload: 1 << 20, subscribers: 4, queueDepth: 4) }
            let started = ContinuousClock.now
            expectError(.timedOut) { try Subscriber(try SharedMemory.open(name), timeout: .milliseconds(50)) }
            #expect(ContinuousClock.now - started >= .milliseconds(50))
            let formatter = Thread {
                usleep(20_000)
                if let later = try? SharedMemory.open(name) { try? P.format(later, maxPayload: 64, subscribers: 1, queueDepth: 4) }
            }
            formatter.start()
            let subscriber = try Subscriber(try SharedMemory.open(name), timeout: .seconds(5))
            #expect(subscriber.maxPayload == 64)
            expectError(.alreadyExists) { try P.format(region, maxPayload: 64, subscribers: 1, queueDepth: 4) }
            subscriber.close()
        }
    }

    @Test("a seqlock cell: a writer and readers in other processes, 64-byte values never torn; one writer at a time")
    func seqlock() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let cell = try SeqlockCell<SeqlockValue>.format(in: region, at: 0)
            #expect(SeqlockCell<SeqlockValue>.size == 24 + 64)
            #expect(cell.version == 0)
            let writer = try Probe.start(["seqlock-write", name.description, "2000000"])
            let reader = try Probe.start(["seqlock-read", name.description, "1000000"])
            var torn = 0, reads = 0
            while writer.isRunning {
                if !(try cell.read().agrees) { torn += 1 }
                reads += 1
            }
            #expect(writer.finish().lastLine == "ok")
            #expect(reader.finish().lastLine == "ok 0")
            #expect(torn == 0)
            #expect(try cell.read().words.0 == 2_000_000)
            #expect(cell.version == 2 * 2_000_000)  // twice the writes completed, even when none is in progress
            // One writer: a second is busy while the first lives; a dead one's seat is taken over.
            let first = try SeqlockCell<SeqlockValue>.Writer(in: region, at: 0)
            #expect(try ChildProcess.run(Probe.path, ["seqlock-write", name.description, "1"]).lastLine.hasPrefix("error busy"))
            first.write(SeqlockValue(7))
            #expect(cell.version == 2 * 2_000_001)
            first.close()
            #expect(try ChildProcess.run(Probe.path, ["seqlock-write", name.description, "3"]).lastLine == "ok")
            #expect(try cell.read().words.7 == 3)
            print("seqlock: \(reads) reads in this process while another wrote, none torn")
        }
    }
}

struct SeqlockValue: BitwiseCopyable {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    init(_ value: UInt64) { words = (value, value, value, value, value, value, value, value) }
    var agrees: Bool {
        let w = words
        return w.0 == w.1 && w.1 == w.2 && w.2 == w.3 && w.3 == w.4 && w.4 == w.5 && w.5 == w.6 && w.6 == w.7
    }
}
