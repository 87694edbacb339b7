import Atomics
import CSharedMemory
import Glibc
import SystemPackage

/// An eventfd that a waiter thread signals whenever a shared word moves: what ``RingReceiver/readinessDescriptor()``
/// and ``Subscriber/readinessDescriptor()`` hand to an event loop. It holds the region's mapping (the word stays
/// mapped while it is watched) and, going away, stops the watch and closes the eventfd.
final class Readiness: @unchecked Sendable {
    let descriptor: Int32
    private let watch: FutexWaiters.Waiter
    private let mapping: RegionMapping

    /// Raises `flag` (so that the other side wakes `word` on each message), watches `word`, and signals at once if
    /// `ready` (something is there already).
    init(word: UnsafeMutableRawPointer, flag: UnsafeAtomic<UInt32>, mapping: RegionMapping, ready: () -> Bool) throws(SharedMemoryError) {
        let descriptor = csm_eventfd()
        guard descriptor >= 0 else { throw SharedMemoryError(errno: Errno(rawValue: errno), call: "eventfd", region: mapping.name) }
        self.descriptor = descriptor
        self.mapping = mapping
        flag.store(1, ordering: .sequentiallyConsistent)
        let seen = UnsafeAtomic<UInt32>(at: word.assumingMemoryBound(to: UInt32.AtomicRepresentation.self)).load(ordering: .sequentiallyConsistent)
        watch = FutexWaiters.shared.watch(word, expected: seen, signalling: descriptor)
        if ready() { signal() }
    }

    func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(descriptor, &one, 8)
    }

    deinit {
        FutexWaiters.shared.unwatch(watch)
        Glibc.close(descriptor)
    }
}

extension RingReceiver {
    /// A descriptor for an event loop (epoll, poll, a swift-nio or libuv loop): an eventfd, non-blocking, that
    /// becomes readable when a message may be waiting. The usual loop: wait until it is readable, read its 8-byte
    /// counter (which makes it unreadable again), then take every message there with ``tryReceive()`` until it
    /// returns nil. A readable descriptor with nothing to receive is possible (a message taken before the counter
    /// was read); a message that came is never missed.
    ///
    /// The receiver owns the descriptor: it is the same one on each call and is closed when the receiver goes
    /// away. While it exists, the sender wakes this side (a `futex` wake, about a microsecond) after every
    /// message, since a waiter thread watches the ring for it.
    public func readinessDescriptor() throws(SharedMemoryError) -> FileDescriptor {
        if let readiness { return FileDescriptor(rawValue: readiness.descriptor) }
        let head = ring.head, tail = ring.tail, finished = ring.finished
        let readiness = try Readiness(word: ring.base + RingHeader.dataSignal.offset, flag: ring.receiverWaiting, mapping: ring.mapping) {
            head.load(ordering: .sequentiallyConsistent) != tail.load(ordering: .relaxed) || finished.load(ordering: .acquiring) != 0
        }
        self.readiness = readiness
        return FileDescriptor(rawValue: readiness.descriptor)
    }
}

extension Subscriber {
    /// A descriptor for an event loop, as ``RingReceiver/readinessDescriptor()`` is for a ring: an eventfd that
    /// becomes readable when a sample may be queued for this subscriber (or the publisher finished). Read its
    /// 8-byte counter, then take samples with ``receive(timeout:_:)`` and a zero timeout until it throws
    /// ``SharedMemoryError/Code/timedOut``. The subscriber owns it and closes it when it goes away; while it
    /// exists, the publisher wakes this subscriber after every sample.
    public func readinessDescriptor() throws(SharedMemoryError) -> FileDescriptor {
        if let readiness { return FileDescriptor(rawValue: readiness.descriptor) }
        let service = self.service, slotAt = service.slot(index)
        let readiness = try Readiness(
            word: service.base + slotAt + SubscriberSlot.write.offset,
            flag: service.atomic(slotAt + SubscriberSlot.subscriberSleeps.offset, UInt32.self), mapping: service.mapping
        ) {
            service.atomic(slotAt + SubscriberSlot.write.offset, UInt64.self).load(ordering: .sequentiallyConsistent)
                != service.atomic(slotAt + SubscriberSlot.read.offset, UInt64.self).load(ordering: .relaxed)
        }
        self.readiness = readiness
        return FileDescriptor(rawValue: readiness.descriptor)
    }
}
