import Atomics
import Foundation
import Glibc
import SharedMemory

/// The publish/subscribe experiment (`shm bench --experiments publish-subscribe`): one-way latency from a publisher
/// to 1, 2 and 4 subscribers in forked processes, for 64 B, 64 KiB and 4 MiB samples, and what a publish costs the
/// publisher; beside half the ring's and a pipe's round trip, measured in the same run.
enum PubSubBench {
    struct Run {
        /// Nanoseconds from the end of the publisher's fill to each subscriber's receipt, pooled over subscribers.
        var latency: [Double]
        /// Nanoseconds each `publish` call took, after its fill (delivery to every queue).
        var publish: [Double]
    }

    /// `samples` samples of `payload` bytes, one at a time: the publisher stamps each (CLOCK_MONOTONIC, the last thing
    /// its fill does: only the stamp is written, the rest of the payload is whatever the chunk held, since delivery
    /// copies nothing whatever the size) and waits until every subscriber has counted it before the next. Each
    /// subscriber records now − stamp on receipt, into an anonymous results region the parent reads after.
    static func run(payload: Int, subscribers: Int, samples: Int, strategy: WaitStrategy) throws -> Run {
        let size = PublishSubscribe.size(maxPayload: payload, subscribers: subscribers, queueDepth: 4)
        let service = try SharedMemory.create(.anonymous, size: size)
        try PublishSubscribe.format(service, maxPayload: payload, subscribers: subscribers, queueDepth: 4)
        // Results: [ready count][acknowledged count] then, per subscriber, `samples` latencies (Int64 ns).
        let results = try SharedMemory.create(.anonymous, size: 128 + subscribers * samples * 8)
        let ready = try results.atomic(Int.self, at: 0)
        let acknowledged = try results.atomic(Int.self, at: 64)
        var children: [pid_t] = []
        for index in 0..<subscribers {
            let child = fork()
            if child == 0 {
                do {
                    let subscriber = try Subscriber(service, strategy: strategy)
                    ready.wrappingIncrement(ordering: .releasing)
                    let mine = try results.withUnsafeMutableBytes { $0.baseAddress! } + 128 + index * samples * 8
                    for i in 0..<samples {
                        let stamp = try subscriber.receive { (sample: RawSpan, _: SampleInfo) in sample.unsafeLoad(as: Int.self) }
                        guard let stamp else { _exit(2) }
                        mine.storeBytes(of: nanoseconds() - stamp, toByteOffset: i * 8, as: Int.self)
                        acknowledged.wrappingIncrement(ordering: .releasing)
                    }
                } catch {
                    _exit(1)
                }
                _exit(0)
            }
            children.append(child)
        }
        // Every wait on the children looks, now and then, whether one has died: a dead subscriber never counts.
        var polls = 0
        while ready.load(ordering: .acquiring) < subscribers {
            polls &+= 1
            if polls & 1023 == 0 { try SwiftBench.checkChildren(&children) }
            sched_yield()
        }
        let publisher = try Publisher(service)
        var publishTimes: [Double] = []
        publishTimes.reserveCapacity(samples)
        for i in 0..<samples {
            var stamped = 0
            try publisher.publishUnsafe(count: payload) { chunk in
                stamped = nanoseconds()
                chunk.storeBytes(of: stamped, as: Int.self)
            }
            publishTimes.append(Double(nanoseconds() - stamped))
            while acknowledged.load(ordering: .acquiring) < (i + 1) * subscribers {
                polls &+= 1
                if polls & 4095 == 0 { try SwiftBench.checkChildren(&children) }
                if case .spin = strategy { continue }
                sched_yield()
            }
        }
        publisher.finish()
        for child in children { try SwiftBench.waitForChild(child) }
        var latency: [Double] = []
        latency.reserveCapacity(subscribers * samples)
        results.withUnsafeBytes { bytes in
            for i in 0..<subscribers * samples { latency.append(Double(bytes.load(fromByteOffset: 128 + i * 8, as: Int.self))) }
        }
        return Run(latency: latency, publish: publishTimes)
    }

    /// `payload`-byte round trips to a forked child and back through two services (one subscriber each, spinning),
    /// `rounds` times, nanoseconds each: the child receives each sample in place and publishes one back. Half of
    /// this is the one-way latency measured as iceoryx2 measures it (a service each way, busy-waiting subscribers)
    /// and as the ring's figure is taken (`SwiftBench.pingPong`), so the two compare like for like.
    static func roundTrips(payload: Int, rounds: Int) throws -> [Double] {
        let size = PublishSubscribe.size(maxPayload: payload, subscribers: 1, queueDepth: 4)
        let there = try SharedMemory.create(.anonymous, size: size)
        let back = try SharedMemory.create(.anonymous, size: size)
        try PublishSubscribe.format(there, maxPayload: payload, subscribers: 1, queueDepth: 4)
        try PublishSubscribe.format(back, maxPayload: payload, subscribers: 1, queueDepth: 4)
        let flags = try SharedMemory.create(.anonymous, size: 64)
        let ready = try flags.atomic(Int.self, at: 0)
        let answers = try Subscriber(back, strategy: .spin)  // before the fork: the child's first answer finds it
        let child = fork()
        if child == 0 {
            do {
                let requests = try Subscriber(there, strategy: .spin)
                let publisher = try Publisher(back)
                ready.store(1, ordering: .releasing)
                for _ in 0..<rounds {
                    let value = try requests.receive { (sample: RawSpan, _: SampleInfo) in sample.unsafeLoad(as: Int.self) }
                    guard let value else { _exit(2) }
                    _ = try publisher.publishUnsafe(count: payload) { $0.storeBytes(of: value, as: Int.self) }
                }
                publisher.finish()
                requests.close()
            } catch {
                _exit(1)
            }
            _exit(0)
        }
        var samples = [Double](repeating: 0, count: rounds)
        var reaped = false
        do {
            while ready.load(ordering: .acquiring) == 0 {
                reaped = waitpid(child, nil, WNOHANG) == child
                if reaped { throw BenchError("the publish/subscribe echo could not start") }
                sched_yield()
            }
            let publisher = try Publisher(there)
            for i in 0..<rounds {
                let start = nanoseconds()
                _ = try publisher.publishUnsafe(count: payload) { $0.storeBytes(of: i, as: Int.self) }
                let echoed = try answers.receive { (sample: RawSpan, _: SampleInfo) in sample.unsafeLoad(as: Int.self) }
                samples[i] = Double(nanoseconds() - start)
                guard echoed == i else { throw BenchError("the publish/subscribe echo answered \(String(describing: echoed)) to \(i)") }
            }
            publisher.finish()
        } catch {
            if !reaped {
                kill(child, SIGKILL)  // a spinning child would otherwise spin until it noticed this process gone
                _ = waitpid(child, nil, 0)
            }
            throw error
        }
        answers.close()
        try SwiftBench.waitForChild(child)
        return samples
    }
}
