import Foundation
import Glibc
import SharedMemory

/// The peers experiment (`shm bench --experiments peers`): what a user would pick instead of a ring, measured in the
/// same run beside it. For 64 B, 4 KiB and 64 KiB messages, round trips and streaming through two message rings
/// (Swift, spinning then sleeping) against POSIX message queues, System V message queues, Unix datagram sockets
/// (C, Sources/CShmBench) and Boost.Interprocess's `message_queue` (C++ compiled at run time); and the lifecycle of
/// a region against Python's `multiprocessing.shared_memory`. A peer the machine cannot run is a row that says why.
extension Bench {
    static let peerQueues = [("POSIX mq", "posixmq"), ("System V mq", "sysvmq"), ("Unix datagram socket", "unixdgram")]

    func peersExperiment(_ c: CBench) throws -> [Measurement] {
        let rounds = quick ? 2_000 : 20_000, repeats = quick ? 1 : 3
        let boost = BoostPeer.prepare()
        defer { if case .success(let peer) = boost { peer.cleanUp() } }
        var rows: [Measurement] = []

        func row(_ name: String, unit: String, ring: Summary, peer: Result<Summary, BenchError>, label: String) {
            var m = Measurement(experiment: "peers", name: name, unit: unit, swift: ring, c: nil)
            switch peer {
            case .success(let summary):
                m.c = summary
                m.note = "C: \(label), this run; Swift: the ring"
            case .failure(let reason):
                m.skipped = "\(label): \(reason)"
            }
            rows.append(m)
        }

        var lastProbe: Summary? = nil  // a size's last probe is the next one's first: nothing runs between them
        for size in [64, 4096, 65536] {
            // Enough messages to amortise the ring's first touch of its 4 MiB; no more than the kernel's queues take
            // in a few seconds at 64 B.
            let total = min(quick ? 128 << 20 : 1 << 30, size * (quick ? 200_000 : 2_000_000))
            let label = size >= 1024 ? "\(size >> 10) KiB" : "\(size) B"
            // Times, not rates: a throughput's p99 is its slowest run's (Summary over times, then mapped).
            var pingPong: [Double] = [], pingPongMedians: [Double] = [], streamTimes: [Double] = []
            // The placement before the ring, after it, and after its peers: a move between them is a verdict.
            let first = rows.count
            var probes: [Summary] = []
            func probe() { if let placement = try? Machine.placement(c) { probes.append(placement) } }
            if let lastProbe { probes.append(lastProbe) } else { probe() }
            for _ in 0..<repeats {
                let samples = try SwiftBench.pingPong("ring", strategy: .default, rounds: rounds, size: size)
                pingPong += samples
                pingPongMedians.append(Summary(samples).median)
                streamTimes.append(try SwiftBench.stream("anonymous", total: total, message: size))
            }
            let ringRoundTrip = Summary(pingPong), ringStream = Summary(streamTimes).map { Double(total) / $0 }
            // The ring's own rounds (a full run has three): rounds that disagree are a verdict, as in every experiment.
            let ringSpread = (pingPong: LoadWatch.spreadVerdict(pingPongMedians, what: "the ring's rounds"),
                              streaming: LoadWatch.spreadVerdict(streamTimes, what: "the ring's rounds"))
            probe()
            for (name, kind) in Self.peerQueues {
                row("ping-pong \(label): ring vs \(name)", unit: "ns", ring: ringRoundTrip,
                    peer: try c.measurePeer(["queue-pingpong", kind, "\(size)", "\(rounds)"], repeats: repeats), label: name)
                row("streaming \(label): ring vs \(name)", unit: "GB/s", ring: ringStream,
                    peer: try c.measurePeer(["queue-stream", kind, "\(size)", "\(total)"], repeats: repeats)
                        .map { $0.map { Double(total) / $0 } }, label: name)
            }
            let boostLabel = "Boost.Interprocess message_queue"
            switch boost {
            case .success(let peer):
                var roundTrips: [Summary] = [], boostStreamTimes: [Double] = []
                for _ in 0..<repeats {
                    let fields = try peer.measure(["mq-pingpong", "\(size)", "\(rounds)"])
                    roundTrips.append(Summary(median: fields[0], p99: fields.count > 1 ? fields[1] : fields[0], samples: rounds))
                    boostStreamTimes.append(try peer.measure(["mq-stream", "\(size)", "\(total)"])[0])
                }
                let middle = roundTrips.sorted { $0.median < $1.median }[roundTrips.count / 2]
                row("ping-pong \(label): ring vs \(boostLabel)", unit: "ns", ring: ringRoundTrip, peer: .success(middle), label: boostLabel)
                row("streaming \(label): ring vs \(boostLabel)", unit: "GB/s", ring: ringStream, peer: .success(Summary(boostStreamTimes).map { Double(total) / $0 }), label: boostLabel)
            case .failure(let reason):
                row("ping-pong \(label): ring vs \(boostLabel)", unit: "ns", ring: ringRoundTrip, peer: .failure(reason), label: boostLabel)
                row("streaming \(label): ring vs \(boostLabel)", unit: "GB/s", ring: ringStream, peer: .failure(reason), label: boostLabel)
            }
            probe()
            lastProbe = probes.last
            let moved = LoadWatch.placementVerdict(probes.map(\.median))
            for index in first..<rows.count where rows[index].skipped == nil {
                rows[index].placement = probes.last
                let spread = rows[index].name.hasPrefix("ping-pong") ? ringSpread.pingPong : ringSpread.streaming
                let reasons = [rows[index].unstable, spread, moved].compactMap { $0 }
                if !reasons.isEmpty { rows[index].unstable = reasons.joined(separator: "; ") }
            }
        }

        let iterations = quick ? 300 : 3000
        var lifecycle: [Double] = []
        for _ in 0..<repeats { lifecycle += try SwiftBench.lifecycle(.posix, iterations: iterations / repeats, lifetime: .persistent) }
        row("lifecycle posix: SharedMemory vs Python multiprocessing.shared_memory", unit: "µs",
            ring: Summary(lifecycle).map { $0 / 1000 },
            peer: PythonPeer.lifecycle(iterations: iterations).map { $0.map { $0 / 1000 } },
            label: "Python multiprocessing.shared_memory")
        rows[rows.count - 1].note = rows[rows.count - 1].skipped == nil ? "C: Python's multiprocessing.shared_memory (create, write a byte, close, unlink), this run; Swift: SharedMemory.create (posix, persistent as Python's), touch, remove, detach" : nil
        return rows
    }
}

extension CBench {
    /// Runs a peer's C experiment `repeats` times: the median run's summary (times in nanoseconds), or why the
    /// machine cannot run it (its "skip REASON").
    func measurePeer(_ arguments: [String], repeats: Int) throws -> Result<Summary, BenchError> {
        var summaries: [Summary] = []
        for _ in 0..<repeats {
            let result = try run(binary, ["c-bench"] + arguments)
            let output = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            if output.hasPrefix("skip ") { return .failure(BenchError(String(output.dropFirst(5)))) }
            let fields = output.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
            guard result.status == 0, fields.count >= 2 else {
                throw BenchError("the C benchmark \(arguments.joined(separator: " ")) failed: \(result.error)")
            }
            summaries.append(Summary(median: fields[0], p99: fields[1], samples: Int(fields.count > 2 ? fields[2] : 0)))
        }
        return .success(summaries.count == 1 ? summaries[0] : Summary(summaries.map(\.median)))
    }
}

/// Python's `multiprocessing.shared_memory`, run by the system's python3 (skipped with the reason if there is none),
/// and the ring from Python through Interop/python's `sharedmemory_ring`, run by `SHM_BENCH_PYTHON` (a Python that has
/// the package; the system's python3 without it).
enum PythonPeer {
    static let streamScript = """
        import os, sys, time
        from sharedmemory_ring import Region, RingReceiver, RingSender, format_ring, ring_size
        total, message = int(sys.argv[1]), int(sys.argv[2])
        region = Region.anonymous(ring_size(4 << 20))
        format_ring(region, capacity=4 << 20)
        child = os.fork()
        if child == 0:
            receiver, received = RingReceiver(region), 0
            while (data := receiver.receive()) is not None:
                received += len(data)
            os._exit(0 if received == total else 1)
        sender, data, sent = RingSender(region), bytes(message), 0
        start = time.monotonic_ns()
        while sent < total:
            sender.send(data)
            sent += message
        sender.close()
        status = os.waitpid(child, 0)[1]
        elapsed = time.monotonic_ns() - start
        sys.exit("the receiving process failed") if status != 0 else print(elapsed, elapsed, 1)
        """

    /// `total` bytes in `message`-byte messages through a 4 MiB ring in anonymous memory, a Python sender to a forked
    /// Python receiver that takes a copy of each (as C's stream-smring does); nanoseconds for the whole transfer.
    static func stream(total: Int, message: Int) -> Result<Summary, BenchError> {
        guard let python = ProcessInfo.processInfo.environment["SHM_BENCH_PYTHON"] ?? systemPython else {
            return .failure(BenchError("no python3 in /usr/bin or /usr/local/bin, and SHM_BENCH_PYTHON is not set"))
        }
        return measure(python, streamScript, ["\(total)", "\(message)"]) { error in
            error.contains("No module named 'sharedmemory_ring'")
                ? "\(python) has no sharedmemory_ring: pip install ./Interop/python, or name a Python that has it in SHM_BENCH_PYTHON" : nil
        }
    }

    static let systemPython = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Runs `script` with `arguments` in `python`, which prints "median p99 samples" (nanoseconds); `explain` may
    /// turn its standard error into the reason the case is skipped.
    static func measure(_ python: String, _ script: String, _ arguments: [String], explain: (String) -> String? = { _ in nil }) -> Result<Summary, BenchError> {
        do {
            let result = try run(python, ["-c", script] + arguments)
            if let reason = explain(result.error) { return .failure(BenchError(reason)) }
            let fields = result.output.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
            guard result.status == 0, fields.count == 3 else {
                return .failure(BenchError("\(python) failed (status \(result.status)): \(result.error.suffix(300))"))
            }
            return .success(Summary(median: fields[0], p99: fields[1], samples: Int(fields[2])))
        } catch {
            return .failure(BenchError("\(python) could not run: \(error)"))
        }
    }

    static let lifecycleScript = """
        import os, sys, time
        from multiprocessing import shared_memory
        n = int(sys.argv[1])
        samples = []
        for i in range(n):
            start = time.monotonic_ns()
            region = shared_memory.SharedMemory(name=f"shmbench-py-{os.getpid()}-{i}", create=True, size=4096)
            region.buf[0] = 1
            region.close()
            region.unlink()
            samples.append(time.monotonic_ns() - start)
        samples.sort()
        print(samples[len(samples) // 2], samples[int((len(samples) - 1) * 0.99)], len(samples))
        """

    /// create, write a byte, close, unlink: `iterations` times; nanoseconds each (median, p99).
    static func lifecycle(iterations: Int) -> Result<Summary, BenchError> {
        guard let python = systemPython else { return .failure(BenchError("no python3 in /usr/bin or /usr/local/bin")) }
        return measure(python, lifecycleScript, ["\(iterations)"])
    }
}
