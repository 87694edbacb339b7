import Foundation
import Testing
@testable import SharedMemory

/// Objects made in a region (locks, events, atomics, ring sides) hold its mapping: nothing that points into a region
/// outlives the memory it points at, whatever becomes of the region's handle.
@Suite("Objects made in a region hold its mapping")
struct MappingTests {
    @Test("a mutex, an event and an atomic keep working from another thread after the handle is detached", arguments: Backend.attachable)
    func objectsOutliveTheHandle(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let mutex = try ProcessMutex.initialize(in: region, at: 0)
            let event = try ProcessEvent.initialize(in: region, at: 64)
            let counter = try region.atomic(UInt64.self, at: 128)
            let other = try attachAgain(region)
            let before = try other.info().attachCount
            try region.detach()
            // The objects' mapping is still there: the kernel (or /proc) still counts it.
            #expect(try other.info().attachCount == before)
            let worker = Thread {
                guard (try? mutex.lock()) != nil else { return }
                counter.wrappingIncrement(by: 41, ordering: .relaxed)
                try? mutex.unlock()
                event.signal()
            }
            worker.start()
            try event.wait(timeout: .seconds(10))
            counter.wrappingIncrement(ordering: .relaxed)
            // Written through the objects' mapping, read through another attachment: the same memory.
            #expect(try other.get(UInt64.self, at: 128) == 42)
            withExtendedLifetime((mutex, event, counter)) {}
        }
    }

    @Test("the mapping goes when the last object made in it goes", arguments: Backend.attachable)
    func lastObjectUnmaps(backend: Backend) throws {
        try Names.with(backend) { name in
            let other = try SharedMemory.create(name, size: 4096)
            let alone = try other.info().attachCount
            do {
                let region = try attachAgain(other)
                let counter = try region.atomic(UInt64.self, at: 0)
                try region.detach()
                #expect(try other.info().attachCount == alone.map { $0 + 1 })
                counter.store(7, ordering: .relaxed)
            }
            #expect(try other.info().attachCount == alone)
            #expect(try other.get(UInt64.self, at: 0) == 7)
        }
    }

    @Test("resize and remap are busy while objects hold the mapping, and work once they are gone", arguments: [Backend.posix, .file, .memfd])
    func resizeWaitsForObjects(backend: Backend) throws {
        try Names.with(backend) { name in
            var region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region)
            do {
                let mutex = try ProcessMutex.initialize(in: region, at: MessageRing.size(capacity: 4096) - 64)
                expectError(.busy) { try region.resize(to: 1 << 20) }
                expectError(.busy) { try region.remap() }
                withExtendedLifetime(mutex) {}
            }
            do {
                let sender = try RingSender(region)
                expectError(.busy) { try region.resize(to: 1 << 20) }
                sender.close()
            }
            do {
                let counter = try region.atomic(UInt32.self, at: 0)
                expectError(.busy) { try region.resize(to: 1 << 20) }
                _ = counter.load(ordering: .relaxed)
            }
            try region.resize(to: 1 << 20)
            #expect(region.size == 1 << 20)
            #expect(try region.remap() == 1 << 20)
        }
    }

    @Test("one region holds two rings, one each way, and they outlive the handle")
    func twoRings() throws {
        try Names.with(.memfd) { name in
            let ringSize = MessageRing.size(capacity: 4096)
            let region = try SharedMemory.create(name, size: 2 * ringSize)
            try MessageRing.format(region, at: 0, capacity: 4096)
            try MessageRing.format(region, at: ringSize, capacity: 4096)
            let requests = try RingSender(region, at: 0), requestsIn = try RingReceiver(region, at: 0)
            let replies = try RingSender(region, at: ringSize), repliesIn = try RingReceiver(region, at: ringSize)
            try region.detach()
            try requests.send([1, 2, 3])
            #expect(try requestsIn.receive(timeout: .seconds(5)) == [1, 2, 3])
            try replies.send(count: 16) { room in room.append(4) }
            #expect(try repliesIn.receive(timeout: .seconds(5)) { $0.byteCount } == 1)
            requests.close()
            replies.close()
            requestsIn.close()
            repliesIn.close()
        }
    }

    @Test("a body that keeps the mutable span it was lent stops the process before the span can be used")
    func keptSpanStops() async {
        await #expect(processExitsWith: .failure) {
            var region = try AnonymousRegion.create(size: 4096)
            var kept = MutableRawSpan()
            try region.withMutableBytes { (bytes: inout MutableRawSpan) in
                kept = bytes
                bytes = MutableRawSpan()
            }
            _ = kept.byteCount
            try region.resize(to: 8192)
        }
    }

    @Test("a zero-copy send whose body keeps the room it was lent stops the process before the room can be used")
    func keptRoomStops() async {
        await #expect(processExitsWith: .failure) {
            let region = try AnonymousRegion.create(size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region)
            let sender = try RingSender(region)
            var kept = OutputRawSpan()
            try sender.send(count: 8) { (room: inout OutputRawSpan) in
                kept = room
                room = OutputRawSpan()
            }
            kept.append(1)
        }
    }
}
