import ArgumentParser
import Foundation
import Glibc
import SharedMemory

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the same experiments on every mechanism, in Swift and in C, side by side.",
        discussion: """
            Every Swift number has the same loop written in C (Sources/CShmBench/shmbench.c, linked into shm) \
            measured in the same run beside it, and a Swift/C ratio; the heap's C column is Boost.Interprocess \
            (compiled at run time against the system's libboost-dev). Medians and 99th percentiles: the \
            machine is noisy, compare within one run.
            """)

    enum Experiment: String, ExpressibleByArgument, CaseIterable {
        case lifecycle
        case firstTouch = "first-touch"
        case streaming
        case pingPong = "ping-pong"
        case heap
        case publishSubscribe = "publish-subscribe"
        case async
        case peers
    }

    @Flag(help: "A short run (about 20 seconds on a quiet 2-core machine; the full run takes about 2.5 minutes).")
    var quick = false

    @Option(parsing: .upToNextOption, help: "Backends to measure (default: all).")
    var backends: [String] = Backend.allCases.map(\.rawValue)

    @Option(parsing: .upToNextOption, help: "Experiments to run: lifecycle, first-touch, streaming, ping-pong, heap, publish-subscribe, async, peers (default: all).")
    var experiments: [Experiment] = Experiment.allCases

    @Flag(help: "Count instructions instead of timing: the single-process paths (get/set, the ring in one process, the lifecycle), Swift and C, under valgrind's callgrind. Deterministic: the figures to put goals on.")
    var instructions = false

    @Option(help: "Run the whole sweep this many times and report, for each case, the median of the sweeps' medians and their range.")
    var `repeat` = 1

    @Flag(help: "Run the two-process experiments (ping-pong, peers) a second time with a busy loop on every CPU, started and stopped by the bench; those rows are labelled loaded.")
    var loaded = false

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Flag(help: "Print CSV instead of a table.")
    var csv = false

    @Option(help: "Also draw the results as bar charts into this SVG file.")
    var svg: String?

    @Option(help: "Measure nothing: print a run saved with --json (as a table, --csv, --json or --svg).")
    var from: String?

    func validate() throws {
        for backend in backends where Backend(rawValue: backend) == nil {
            throw ValidationError("`\(backend)` is not a backend: use sysv, posix, file, anonymous, memfd")
        }
        guard !(json && csv) else { throw ValidationError("choose one of --json and --csv") }
        guard `repeat` >= 1 else { throw ValidationError("--repeat takes a number of sweeps, 1 or more") }
    }

    func run() throws {
        if let from {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: from)) } catch { throw ValidationError("cannot read \(from): \(error.localizedDescription)") }
            guard let report = try? JSONDecoder().decode(Report.self, from: data) else {
                throw ValidationError("\(from) is not a run saved with shm bench --json")
            }
            try output(report)
            return
        }
        let chosen = backends.compactMap(Backend.init(rawValue:))
        let c = try CBench()
        defer { c.cleanUp() }
        var machine = Machine.describe()
        machine.placementBefore = try? Machine.placement(c)
        if instructions {
            let report = Report(machine: machine, results: try InstructionCount.measure())
            print(json ? try report.json() : csv ? report.csv() : report.table(), terminator: csv ? "" : "\n")
            return
        }
        var sweeps: [[Measurement]] = []
        announce(chosen)
        let loadedCount = loaded ? experiments.filter { Self.loadedExperiments.contains($0) }.count : 0
        let progress = Progress(total: `repeat` * (experiments.count + loadedCount) * (chosen.count + 3))
        var seconds: [String: Double] = [:]
        for _ in 0..<`repeat` {
            sweeps.append(try sweep(chosen, c, progress, seconds: &seconds))
        }
        progress.finish()
        machine.placementAfter = try? Machine.placement(c)
        var report = Report(machine: machine, results: Measurement.combine(sweeps))
        report.seconds = seconds
        try output(report)
    }

    func output(_ report: Report) throws {
        if json {
            print(try report.json())
        } else if csv {
            print(report.csv(), terminator: "")
        } else {
            print(report.table())
        }
        if let svg { try report.svg().write(toFile: svg, atomically: true, encoding: .utf8) }
    }

    /// Seconds each experiment took in a release build on a quiet 2-vCPU AMD EPYC VM, quick and full (one sweep, every
    /// backend), from the runs' own `seconds` (Docs/Benchmarks.md): what the estimate before a run is made of.
    static let typicalSeconds: [Experiment: (quick: Double, full: Double)] = [
        .lifecycle: (1.1, 2.5), .firstTouch: (2.0, 31), .streaming: (3.9, 16), .pingPong: (0.9, 12.8), .heap: (4.1, 7.5),
        .publishSubscribe: (0.2, 0.7), .async: (0.3, 2.4), .peers: (6.8, 60),
    ]

    /// Says on standard error how long the run will take, before it starts (the figures are a quiet machine's; a debug
    /// build, fewer CPUs or a busy machine take longer).
    func announce(_ chosen: [Backend]) {
        let perBackend: Set<Experiment> = [.lifecycle, .firstTouch, .streaming]
        let total = experiments.reduce(0.0) { sum, experiment in
            let typical = Self.typicalSeconds[experiment] ?? (10, 60)
            let share = perBackend.contains(experiment) ? Double(chosen.count + 1) / Double(Backend.allCases.count + 1) : 1
            let passes = loaded && Self.loadedExperiments.contains(experiment) ? 2.0 : 1.0
            return sum + (quick ? typical.quick : typical.full) * share * passes
        } * Double(`repeat`)
        let minutes = total < 90 ? "about \(max(10, Int((total / 10).rounded()) * 10)) seconds" : "about \(Int((total / 60).rounded())) minutes"
        FileHandle.standardError.write(Data("shm bench\(quick ? " --quick" : ""): \(experiments.count) experiment\(experiments.count == 1 ? "" : "s"), \(minutes) on a quiet 2-core machine (release build)\n".utf8))
    }

    /// Every chosen experiment once; each case marked unstable if the machine was busy with other work while its
    /// experiment ran, or its rounds disagree.
    func sweep(_ chosen: [Backend], _ c: CBench, _ progress: Progress, seconds: inout [String: Double]) throws -> [Measurement] {
        var results: [Measurement] = []
        for experiment in experiments {
            let watch = LoadWatch(), first = results.count, started = nanoseconds()
            defer {
                seconds[experiment.rawValue, default: 0] += Double(nanoseconds() - started) / 1e9
                if let busy = watch.verdict() {
                    for index in first..<results.count where results[index].skipped == nil {
                        // The machine's load first: it is the cause when the rounds disagree too.
                        results[index].unstable = [busy, results[index].unstable].compactMap { $0 }.joined(separator: "; ")
                    }
                }
            }
            results += try measure(experiment, chosen, c, progress)
        }
        if loaded {
            // The same cases again with every CPU busy: rows labelled loaded, not unstable (the load is the point).
            let load = try BusyLoad()
            defer { load.stop() }
            for experiment in experiments where Self.loadedExperiments.contains(experiment) {
                let started = nanoseconds()
                for var m in try measure(experiment, chosen, c, progress) {
                    m.name += "\(BusyLoad.rowMark)\(load.loops) busy loops)"
                    results.append(m)
                }
                seconds[experiment.rawValue + " loaded", default: 0] += Double(nanoseconds() - started) / 1e9
            }
        }
        return results
    }

    /// The experiments `--loaded` runs a second time under load: the two-process waits.
    static let loadedExperiments: Set<Experiment> = [.pingPong, .peers]

    /// One experiment's cases.
    func measure(_ experiment: Experiment, _ chosen: [Backend], _ c: CBench, _ progress: Progress) throws -> [Measurement] {
        var results: [Measurement] = []
        switch experiment {
        case .lifecycle:
            let iterations = quick ? 300 : 3000
            for backend in chosen {
                progress.step("lifecycle \(backend)")
                results.append(try compare("lifecycle", "\(backend)", unit: "µs", rounds: 3) {
                    try SwiftBench.lifecycle(backend, iterations: iterations / 3)
                } c: {
                    try c.measure(["lifecycle", backend.rawValue, "\(iterations / 3)"])
                })
            }
        case .firstTouch:
            let bytes = (quick ? 64 : 256) << 20
            for backend in chosen where backend != .file {
                progress.step("first touch \(backend)")
                for mode in ["plain", "prefault", "huge"] {
                    let label = "\(backend) \(mode) \(bytes >> 20) MiB"
                    if mode == "huge" {
                        if let reason = hugePagesMissing(backend, bytes: bytes) {
                            results.append(Measurement(experiment: "first touch", name: label, unit: "GB/s", skipped: reason))
                            continue
                        }
                    }
                    let toGBs = { (ns: Double) in Double(bytes) / ns }
                    var m = try compare("first touch", label, unit: "GB/s", rounds: quick ? 1 : 3) {
                        try SwiftBench.firstTouch(backend, mode: mode, bytes: bytes, repeats: quick ? 3 : 5)
                    } c: {
                        try c.measure(["firsttouch", backend.rawValue, mode, "\(bytes)", quick ? "3" : "5"])
                    }
                    // Times to throughput: the slow tail (p99 of time) is the low end of GB/s.
                    m.swift = m.swift.map { Summary(median: toGBs($0.median), p99: toGBs($0.p99), samples: $0.samples) }
                    m.c = m.c.map { Summary(median: toGBs($0.median), p99: toGBs($0.p99), samples: $0.samples) }
                    results.append(m)
                }
            }
        case .streaming:
            let bytes = (quick ? 256 : 1024) << 20, message = 64 << 10
            for kind in chosen.map(\.rawValue) + ["pipe", "pipe1m", "socketpair"] {
                progress.step("streaming \(kind)")
                let label = (Backend(rawValue: kind) != nil ? "ring over \(kind)" : kind == "pipe1m" ? "pipe, 1 MiB buffer" : kind) + ", \(bytes >> 20) MiB in 64 KiB"
                var m = try compare("streaming", label, unit: "GB/s", rounds: quick ? 3 : 5) {
                    [try SwiftBench.stream(kind, total: bytes, message: message)]
                } c: {
                    try c.measure(["stream", kind, "\(bytes)", "\(message)"])
                }
                m.swift = m.swift.map { $0.map { Double(bytes) / $0 } }
                m.c = m.c.map { $0.map { Double(bytes) / $0 } }
                m.placement = try? Machine.placement(c)
                results.append(m)
            }
            // The ring's wire format in C (Interop/c/smring.h, with all its checks) against the same Swift
            // ring: what a C program on the other side of a Swift one gets.
            if let backend = chosen.first {
                progress.step("streaming \(backend), C through smring.h")
                let label = "ring over \(backend), C through smring.h, \(bytes >> 20) MiB in 64 KiB"
                var m = try compare("streaming", label, unit: "GB/s", rounds: quick ? 3 : 5) {
                    [try SwiftBench.stream(backend.rawValue, total: bytes, message: message)]
                } c: {
                    try c.measure(["stream-smring", backend.rawValue, "\(bytes)", "\(message)"])
                }
                m.swift = m.swift.map { $0.map { Double(bytes) / $0 } }
                m.c = m.c.map { $0.map { Double(bytes) / $0 } }
                m.placement = try? Machine.placement(c)
                results.append(m)
            }
            // The same ring from Python (Interop/python: the C header under ctypes, a copy per message received),
            // beside the Swift ring: what a Python worker on the other side costs.
            progress.step("streaming anonymous, Python through sharedmemory_ring")
            let label = "ring over anonymous, Python through sharedmemory_ring, \(bytes >> 20) MiB in 64 KiB"
            if case .failure(let reason) = PythonPeer.stream(total: 1 << 20, message: message) {
                results.append(Measurement(experiment: "streaming", name: label, unit: "GB/s", skipped: reason.description))
            } else {
                var m = try compare("streaming", label, unit: "GB/s", rounds: quick ? 3 : 5) {
                    [try SwiftBench.stream("anonymous", total: bytes, message: message)]
                } c: {
                    try PythonPeer.stream(total: bytes, message: message).get()
                }
                m.swift = m.swift.map { $0.map { Double(bytes) / $0 } }
                m.c = m.c.map { $0.map { Double(bytes) / $0 } }
                m.note = "C column: Python through sharedmemory_ring"
                m.placement = try? Machine.placement(c)
                results.append(m)
            }
        case .pingPong:
            let rounds = quick ? 5_000 : 50_000
            // The default (adaptive: a spin budget in time) beside the count it replaced (2 000 spins), whose C
            // twin the header's SMRING_SPINS is; the C side of the default row is that same count.
            let cases: [(String, String, String, WaitStrategy)] = [
                ("ring", "spin", "ring, spin", .spin), ("ring", "spinsleep", "ring, default (adaptive)", .default),
                ("ring", "spinsleep", "ring, spin then sleep", .spinThenSleep(spins: 2000)), ("ring", "sleep", "ring, sleep", .sleep),
                ("pipe", "-", "pipe", .sleep), ("socketpair", "-", "socketpair", .sleep),
            ]
            for (kind, strategy, label, wait) in cases {
                progress.step("ping-pong \(label)")
                var m = try compare("ping-pong 64 B", label, unit: "ns", rounds: quick ? 1 : 3) {
                    try SwiftBench.pingPong(kind, strategy: wait, rounds: rounds)
                } c: {
                    try c.measure(["pingpong", kind, strategy, "\(rounds)"])
                }
                m.placement = try? Machine.placement(c)
                results.append(m)
            }
            // What a waiting side costs while its peer is silent: it must sleep, not spin (#31: at most 1%).
            let waits: [(label: String, strategy: WaitStrategy)] = [
                (label: "default (adaptive)", strategy: WaitStrategy.default),
                (label: "spin then sleep", strategy: WaitStrategy.spinThenSleep(spins: 2000)),
                (label: "sleep", strategy: WaitStrategy.sleep),
            ]
            for (label, wait) in waits {
                progress.step("idle wait \(label)")
                let idleSeconds: Double = quick ? 0.5 : 1
                let used: Double = try SwiftBench.idleWaitCPU(strategy: wait, seconds: idleSeconds)
                var m = Measurement(experiment: "idle wait", name: "CPU of a receiver whose sender is silent, \(label)", unit: "% of a core",
                                    swift: Summary([used]), c: nil)
                m.note = "this thread's CPU time over \(quick ? "0.5" : "1") s of waiting"
                results.append(m)
            }
        case .heap:
            progress.step("heap against Boost.Interprocess")
            results += try heapExperiment()
        case .publishSubscribe:
            progress.step("publish/subscribe")
            results += try publishSubscribeExperiment(c)
        case .async:
            progress.step("async against blocking")
            results += try asyncExperiment(c)
        case .peers:
            progress.step("peers: the kernel's queues, Boost, Python")
            results += try peersExperiment(c)
        }
        return results
    }

    /// Runs the Swift and the C loop `rounds` times each, alternating so drift hits both alike, and pools the
    /// samples. Times are in nanoseconds and reported in `unit`.
    func compare(_ experiment: String, _ name: String, unit: String, rounds: Int,
                 swift: () throws -> [Double], c: () throws -> Summary) throws -> Measurement {
        var swiftSamples: [Double] = []
        var swiftMedians: [Double] = []
        var cSummaries: [Summary] = []
        for _ in 0..<rounds {
            let round = try swift()
            swiftSamples += round
            swiftMedians.append(Summary(round).median)
            cSummaries.append(try c())
        }
        let scale = unit == "µs" ? 1e-3 : 1
        // A C run of one sample (a whole transfer) pools like Swift's samples, so both p99s are the slow end;
        // from runs of many samples only each run's median and p99 come back: take the median of each.
        let cSummary = cSummaries.allSatisfy { $0.samples <= 1 }
            ? Summary(cSummaries.map(\.median))
            : Summary(median: cSummaries.map(\.median).sorted()[cSummaries.count / 2],
                      p99: cSummaries.map(\.p99).sorted()[cSummaries.count / 2],
                      samples: cSummaries.map(\.samples).reduce(0, +))
        var m = Measurement(
            experiment: experiment, name: name, unit: unit,
            swift: Summary(swiftSamples).map { $0 * scale },
            c: cSummary.map { $0 * scale })
        let disagreement = [LoadWatch.spreadVerdict(swiftMedians, what: "Swift's rounds"), LoadWatch.spreadVerdict(cSummaries.map(\.median), what: "C's rounds")].compactMap { $0 }
        if !disagreement.isEmpty { m.unstable = disagreement.joined(separator: "; ") }
        return m
    }

    /// The heap against Boost.Interprocess's managed_shared_memory: a mixed allocate/free workload in one process
    /// and in four, named construct, find and destroy, and the bytes each spends per block and per named object.
    /// Without Boost (or a C++ compiler), the Swift side alone, each row saying why.
    func heapExperiment() throws -> [Measurement] {
        let rounds = quick ? 1 : 3, operations = quick ? 50_000 : 200_000, names = quick ? 5_000 : 20_000
        let boost = BoostPeer.prepare()
        defer { if case .success(let peer) = boost { peer.cleanUp() } }
        let note: String
        switch boost {
        case .success: note = "C: Boost.Interprocess managed_shared_memory"
        case .failure(let reason): note = "C skipped: \(reason)"
        }
        /// Alternates the two sides `rounds` times; each returns one number per row.
        func rows(_ names: [(String, String)], swift: () throws -> [Double], boost run: [String]) throws -> [Measurement] {
            var swiftSamples = Array(repeating: [Double](), count: names.count)
            var boostSamples = Array(repeating: [Double](), count: names.count)
            for _ in 0..<rounds {
                for (index, value) in try swift().enumerated() { swiftSamples[index].append(value) }
                if case .success(let peer) = boost {
                    for (index, value) in try peer.measure(run).prefix(names.count).enumerated() { boostSamples[index].append(value) }
                }
            }
            return names.indices.map { index in
                var m = Measurement(experiment: "heap", name: names[index].0, unit: names[index].1, swift: Summary(swiftSamples[index]),
                                    c: boostSamples[index].isEmpty ? nil : Summary(boostSamples[index]))
                m.note = note
                return m
            }
        }
        var results: [Measurement] = []
        for processes in [1, 4] {
            results += try rows([("mixed 16 B-64 KiB, \(processes) process\(processes == 1 ? "" : "es")", "ns/op")],
                                swift: { [try HeapBench.mixed(processes: processes, operations: operations)] },
                                boost: ["mixed", "\(processes)", "\(operations)"])
        }
        results += try rows([("named construct, \(names) names", "ns/op"), ("named find", "ns/op"), ("named destroy", "ns/op")],
                            swift: { try HeapBench.named(count: names) }, boost: ["named", "\(names)"])
        results += try rows([("overhead per 64 B block", "bytes"), ("overhead per named object (8 B)", "bytes")],
                            swift: { try HeapBench.overhead(count: 10_000) }, boost: ["overhead", "10000"])
        return results
    }

    /// Publish/subscribe one-way latency (1 subscriber spinning, 64 B to 4 MiB; 1, 2 and 4 subscribers spinning then
    /// sleeping) and the publisher's cost per publish, beside half the ring's spin round trip and half a pipe's,
    /// measured in this run. "C" is the reference each row's note names.
    func publishSubscribeExperiment(_ c: CBench) throws -> [Measurement] {
        let samples = quick ? 2_000 : 20_000
        let halfRing = Summary(try SwiftBench.pingPong("ring", strategy: .spin, rounds: samples)).map { $0 / 2 }
        let halfPipe = Summary(try SwiftBench.pingPong("pipe", strategy: .sleep, rounds: samples / 4)).map { $0 / 2 }
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var rows: [Measurement] = []
        func row(_ name: String, _ swift: Summary, _ reference: Summary, _ note: String) {
            var m = Measurement(experiment: "publish/subscribe", name: name, unit: "ns", swift: swift, c: reference)
            m.note = note
            rows.append(m)
        }
        // Like for like with the ring: half a round trip through two services, as iceoryx2 measures its latency.
        let halfService = Summary(try PubSubBench.roundTrips(payload: 64, rounds: samples)).map { $0 / 2 }
        row("half a round trip 64 B, a service each way (spin)", halfService, halfRing, "C: half the ring's spin round trip, this run (goal: at most 1.2x)")
        rows[rows.count - 1].placement = try? Machine.placement(c)
        var first: Summary? = nil
        for (payload, label) in [(64, "64 B"), (64 << 10, "64 KiB"), (4 << 20, "4 MiB")] {
            let latency = Summary(try PubSubBench.run(payload: payload, subscribers: 1, samples: samples, strategy: .spin).latency)
            if let first {
                row("one-way \(label), 1 subscriber (spin)", latency, first, "C: the 64 B sample's (goal: flat, at most 2x)")
            } else {
                first = latency
                row("one-way \(label), 1 subscriber (spin)", latency, halfRing, "C: half the ring's spin round trip, this run (stamped at the end of the fill, read on receipt: two clock reads and the acknowledgement's traffic more than a round trip's half)")
            }
        }
        var single: Summary? = nil
        for subscribers in [1, 2, 4] {
            let run = try PubSubBench.run(payload: 64, subscribers: subscribers, samples: samples / 2, strategy: .default)
            let crowded = subscribers + 1 > cores ? "; \(subscribers + 1) processes on \(cores) cores" : ""
            row("one-way 64 B, \(subscribers) subscriber\(subscribers == 1 ? "" : "s") (spin, then sleep)", Summary(run.latency), halfPipe, "C: half a pipe's round trip, this run\(crowded)")
            let publish = Summary(run.publish)
            if let single {
                row("publisher's cost per publish, \(subscribers) subscribers", publish, single, "C: with 1 subscriber (goal for 4: at most 1.5x)")
            } else {
                single = publish
            }
        }
        return rows
    }

    /// 64 B round trips through two rings to a child that echoes with the blocking API: this side receiving with
    /// `receiveAsync` from a task against the blocking `receive`, with the same wait strategy, alternated in this run.
    /// Sleeping, the difference is the hop through the waiter thread: its futex_waitv wake-up and a continuation
    /// resumed on the cooperative pool, against a futex wake-up of the waiting thread itself.
    func asyncExperiment(_ c: CBench) throws -> [Measurement] {
        let rounds = quick ? 2_000 : 20_000, repeats = quick ? 1 : 3
        var rows: [Measurement] = []
        for (label, strategy) in [("sleep", WaitStrategy.sleep), ("default (adaptive)", WaitStrategy.default)] {
            var async: [Double] = [], blocking: [Double] = []
            for _ in 0..<repeats {
                blocking += try AsyncBench.roundTrips(async: false, strategy: strategy, rounds: rounds)
                async += try AsyncBench.roundTrips(async: true, strategy: strategy, rounds: rounds)
            }
            var m = Measurement(experiment: "async", name: "round trip 64 B, receiveAsync, \(label)", unit: "ns",
                                swift: Summary(async), c: Summary(blocking))
            m.note = "C: the blocking receive, same strategy, this run"
            m.placement = try? Machine.placement(c)
            rows.append(m)
        }
        var bare = Measurement(experiment: "async", name: "a continuation resumed from another thread, no shared memory", unit: "ns",
                               swift: Summary(try AsyncBench.bareResume(rounds: rounds)), c: nil)
        bare.note = "the floor under the hop: Swift's pool waking a thread for a resumed task"
        rows.append(bare)
        return rows
    }

    /// Why explicit 2 MiB pages cannot be measured here, or nil if they can.
    func hugePagesMissing(_ backend: Backend, bytes: Int) -> String? {
        guard backend.capabilities.contains(.hugePages) else { return "\(backend) regions cannot have huge pages" }
        let free = (try? SharedMemory.limits().hugePagesFree) ?? 0
        let needed = bytes / (2 << 20)
        return free >= needed ? nil : "needs \(needed) free 2 MiB huge pages, \(free) free (vm.nr_hugepages)"
    }
}

/// A progress line on standard error, when it is a terminal.
final class Progress {
    let total: Int
    var done = 0
    let visible = isatty(2) != 0

    init(total: Int) { self.total = total }

    func step(_ what: String) {
        done += 1
        guard visible else { return }
        FileHandle.standardError.write(Data("\r\u{1b}[K[\(done)/\(total)] \(what)".utf8))
    }

    func finish() {
        if visible { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
    }
}
