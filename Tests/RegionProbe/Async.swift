import Glibc
import SharedMemory

// The async face, for the tests (see AsyncTests):
//
//   ring-senders NAME COUNT SPACING
//                   take the sender's seat of COUNT rings, at offsets 0, SPACING, 2 SPACING...; print `ok senders`
//                   and stay until killed
//   mutex-hold-ms NAME MILLISECONDS
//                   lock the mutex at 0, print `ok locked`, hold it MILLISECONDS, unlock; print `ok`
//   async-cancel NAME COUNT
//                   COUNT times: a task waits (in turn: receiving from the empty ring at 0, sending into the full ring
//                   after it, waiting for an event), is cancelled, and must end with CancellationError; print
//                   `ok MEDIAN MAX`, the microseconds from cancel() to the task's end
//   async-receive NAME
//                   receive from the ring at 0 through `messages` (async) until the stream ends, checking each
//                   message as ring-receive does; print `ok COUNT BYTES` (run with SHM_ASYNC_POLL=1 for the
//                   threads' polling mode)

func asyncProbe(_ operation: String, _ name: RegionName, _ rest: [String]) throws -> String? {
    switch operation {
    case "ring-senders":
        let region = try SharedMemory.open(name)
        final class Held { let sender: RingSender; init(_ sender: consuming RingSender) { self.sender = sender } }
        var senders: [Held] = []
        for i in 0..<Int(rest[0])! {
            senders.append(Held(try RingSender(region, at: i * Int(rest[1])!)))
        }
        holdUntilKilled(region, saying: "ok senders \(senders.count)")
    case "mutex-hold-ms":
        let region = try SharedMemory.open(name)
        let mutex = try ProcessMutex.existing(in: region, at: 0)
        _ = try mutex.lock()
        print("ok locked")
        fflush(nil)
        usleep(UInt32(rest[0])! * 1000)
        try mutex.unlock()
        return ""
    case "async-cancel":
        let region = try SharedMemory.open(name)
        let second = MessageRing.size(capacity: 4096)
        let receiver = Shared(try RingReceiver(region))
        let sender = Shared(try RingSender(region, at: second))
        while try sender.value.trySend(UnsafeRawBufferPointer(start: nil, count: 0)) {}
        let event = try ProcessEvent.initialize(in: region, at: second + 64)
        let count = Int(rest[0])!
        return try runBlocking { () async throws -> String in
            var latencies: [Int64] = []
            for i in 0..<count {
                let task = Task {
                    switch i % 3 {
                    case 0: _ = try await receiver.value.receiveAsync()
                    case 1: try await sender.value.sendAsync([1, 2, 3])
                    default: try await event.waitAsync()
                    }
                }
                try await Task.sleep(for: .milliseconds(5))  // long enough to be waiting in the waiter thread
                let start = ContinuousClock.now
                task.cancel()
                let result = await task.result
                let took = (ContinuousClock.now - start).components
                latencies.append(took.seconds * 1_000_000 + took.attoseconds / 1_000_000_000_000)
                guard case .failure(let error) = result, error is CancellationError else { return "not cancelled: \(result)" }
            }
            latencies.sort()
            return "\(latencies[latencies.count / 2]) \(latencies.last!)"
        }
    case "async-receive":
        let region = try SharedMemory.open(name)
        let receiver = try RingReceiver(region)
        let limit = receiver.maxMessage
        let messages = receiver.messages
        return try runBlocking { () async throws -> String in
            var index = 0, received = 0
            for try await message in messages {
                let ok = message.withUnsafeBytes { RingMessages.check($0, index: index, limit: limit) }
                guard ok else { return "bad message \(index)" }
                received += message.count
                index += 1
            }
            return "\(index) \(received)"
        }
    default:
        return nil
    }
}

/// Runs `body` in a task and blocks this (main, not a pool) thread until it ends.
func runBlocking<R: Sendable>(_ body: @escaping @Sendable () async throws -> R) throws -> R {
    let outcome = BlockingOutcome<R>()
    sem_init(&outcome.semaphore, 0, 0)
    Task {
        do { outcome.result = .success(try await body()) } catch { outcome.result = .failure(error) }
        sem_post(&outcome.semaphore)
    }
    while sem_wait(&outcome.semaphore) != 0 {}
    return try outcome.result!.get()
}

final class BlockingOutcome<R>: @unchecked Sendable {
    var result: Result<R, any Error>?
    var semaphore = sem_t()
}

/// A noncopyable handle in a class, so that tasks can share it.
final class Shared<Value: ~Copyable>: @unchecked Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}
