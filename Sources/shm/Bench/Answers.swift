import Foundation

/// The report's opening: for each question a user brings to `shm bench` ("which one should I use?"), the winner on
/// this machine, by how much, and the row it comes from; then whether the machine was quiet enough to believe it.
/// "N× better" always means how many times better the first is, whatever the unit (for times, the other's time over
/// its time; for throughput, its throughput over the other's).
extension Report {
    func answers() -> [String] {
        var lines: [String] = []
        let measured = results.filter { $0.skipped == nil && $0.swift != nil }
        // The questions are a quiet machine's: `--loaded` rows answer another (Docs/Benchmarks.md shows both).
        let quiet = measured.filter { !$0.name.contains(BusyLoad.rowMark) }
        if let line = latencyAnswer(quiet) { lines.append(line) }
        if let line = throughputAnswer(quiet) { lines.append(line) }
        if let line = creationAnswer(quiet) { lines.append(line) }
        if let line = fanOutAnswer(quiet) { lines.append(line) }
        if let line = heapAnswer(quiet) { lines.append(line) }
        let unstable = measured.filter { $0.unstable != nil }
        if measured.isEmpty {
            lines.append("Nothing was measured.")
        } else if unstable.isEmpty {
            lines.append("The machine was quiet: no case was unstable, so these can be taken as this machine's results.")
        } else if unstable.contains(where: { LoadWatch.blamesTheMachine($0.unstable ?? "") }) {
            lines.append("The machine was busy: \(unstable.count) of \(measured.count) cases are UNSTABLE (marked ?), so their figures say more about the other work than about shared memory; run again on a quiet machine, or with --repeat 3.")
        } else {
            lines.append("The machine was quiet, but \(unstable.count) of \(measured.count) cases are UNSTABLE (marked ?): their rounds disagreed by more than \(Int(LoadWatch.spreadLimit * 100))%, or the CPUs' placement changed during them, so they are not results; run again, or with --repeat 3.")
        }
        return lines
    }

    /// A mechanism's figure in a row: who, how much, and the row's place ("experiment: case").
    struct Candidate {
        var who: String
        var value: Double
        var unit: String
        var row: String
        var unstable: Bool
        var isRing: Bool
    }

    private func candidate(_ m: Measurement, _ who: String, _ side: Summary?, ring: Bool) -> Candidate? {
        guard let side else { return nil }
        return Candidate(who: who, value: side.median, unit: m.unit, row: "\(m.experiment): \(m.name)", unstable: m.unstable != nil, isRing: ring)
    }

    /// "the ring (spinning), 170 ns: 50× better than the best other mechanism, a Unix datagram socket (8.6 µs)".
    private func sentence(_ question: String, _ candidates: [Candidate], higherIsBetter: Bool) -> String? {
        let ordered = candidates.sorted { higherIsBetter ? $0.value > $1.value : $0.value < $1.value }
        guard let winner = ordered.first else { return nil }
        var text = "\(question): \(winner.who), \(Self.show(winner.value, winner.unit))"
        if let other = ordered.first(where: { $0.isRing != winner.isRing }) ?? ordered.dropFirst().first {
            let times = higherIsBetter ? winner.value / other.value : other.value / winner.value
            text += ": \(Self.times(times)) better than \(winner.isRing == other.isRing ? "the next" : "the best \(winner.isRing ? "other mechanism" : "ring")"), \(other.who) (\(Self.show(other.value, other.unit)))"
        }
        text += ". [\(winner.row)]"
        if winner.unstable || ordered.dropFirst().first?.unstable == true { text += " (UNSTABLE)" }
        return text
    }

    private func latencyAnswer(_ rows: [Measurement]) -> String? {
        var candidates: [Candidate] = []
        for m in rows where m.experiment == "ping-pong 64 B" {
            let ring = m.name.hasPrefix("ring")
            let who = ring ? "the ring (\(m.name.dropFirst("ring, ".count)))" : "a \(m.name)"
            candidates += [candidate(m, who, m.swift, ring: ring)].compactMap { $0 }
        }
        candidates += peers(rows, "ping-pong 64 B: ring vs ")
        return sentence("Lowest round-trip latency (64 B, two processes)", candidates, higherIsBetter: false)
    }

    private func throughputAnswer(_ rows: [Measurement]) -> String? {
        var candidates: [Candidate] = []
        for m in rows where m.experiment == "streaming" && !m.name.contains("through") {
            let ring = m.name.hasPrefix("ring over")
            let who = ring ? "the ring over \(m.name.dropFirst("ring over ".count).prefix { $0 != "," }) memory" : "a " + m.name.prefix { $0 != "," }
            candidates += [candidate(m, who, m.swift, ring: ring)].compactMap { $0 }
        }
        candidates += peers(rows, "streaming 64 KiB: ring vs ")
        return sentence("Highest throughput (64 KiB messages)", candidates, higherIsBetter: true)
    }

    /// The peers experiment's rows for one case (`prefix`, e.g. "ping-pong 64 B: ring vs "): each mechanism, and the
    /// ring they were measured against (with the default wait; the same figure in every row, so taken once). Without
    /// the ring here, a run of the peers alone named a kernel queue the fastest beside a ring that beat it.
    private func peers(_ rows: [Measurement], _ prefix: String) -> [Candidate] {
        let cases = rows.filter { $0.experiment == "peers" && $0.name.hasPrefix(prefix) }
        var candidates = cases.compactMap { candidate($0, "a " + $0.name.dropFirst(prefix.count), $0.c, ring: false) }
        if let first = cases.first, let ring = candidate(first, "the ring (default wait)", first.swift, ring: true) { candidates.append(ring) }
        return candidates
    }

    private func creationAnswer(_ rows: [Measurement]) -> String? {
        let lifecycles = rows.filter { $0.experiment == "lifecycle" }
        guard !lifecycles.isEmpty else { return nil }
        let candidates = lifecycles.compactMap { candidate($0, $0.name, $0.swift, ring: false) }
        guard var text = sentence("Cheapest to create (create, attach, touch, remove, detach)", candidates, higherIsBetter: false) else { return nil }
        let named = candidates.filter { ["posix", "sysv", "file"].contains($0.who) }.min { $0.value < $1.value }
        if let named, let best = candidates.min(by: { $0.value < $1.value }), best.who != named.who {
            text += " With a name another process can open: \(named.who), \(Self.show(named.value, named.unit))."
        }
        return text
    }

    private func fanOutAnswer(_ rows: [Measurement]) -> String? {
        let fanOut = rows.filter { $0.experiment == "publish/subscribe" && $0.name.hasPrefix("one-way 64 B, ") && $0.name.contains("(spin, then sleep)") }
        guard let widest = fanOut.max(by: { Self.subscribers($0.name) < Self.subscribers($1.name) }), let latency = widest.swift else { return nil }
        var text = "Fan-out to many readers: one publish reaches \(Self.subscribers(widest.name)) subscribers in \(Self.show(latency.median, "ns")) one-way (64 B)"
        if let pipe = widest.c {
            text += ", " + Self.compare(latency.median, pipe.median, higherIsBetter: false, them: "half a pipe's round trip (\(Self.show(pipe.median, "ns")))")
        }
        if let one = fanOut.first(where: { Self.subscribers($0.name) == 1 })?.swift, Self.subscribers(widest.name) > 1 {
            text += "; 1 subscriber: \(Self.show(one.median, "ns"))"
        }
        return text + ". [\(widest.experiment): \(widest.name)]" + (widest.unstable != nil ? " (UNSTABLE)" : "")
    }

    private func heapAnswer(_ rows: [Measurement]) -> String? {
        guard let mixed = rows.first(where: { $0.experiment == "heap" && $0.name.hasPrefix("mixed") }), let heap = mixed.swift else { return nil }
        var text = "Structured data (a heap with named objects): \(Self.show(heap.median, "ns")) an allocation or free in a mixed workload"
        if let boost = mixed.c {
            text += ", " + Self.compare(heap.median, boost.median, higherIsBetter: false, them: "Boost.Interprocess's managed_shared_memory (\(Self.show(boost.median, "ns")))")
        }
        return text + ". [heap: \(mixed.name)]" + (mixed.unstable != nil ? " (UNSTABLE)" : "")
    }

    /// "3.2× better than X" when ours is better, "X is 2.1× better" when not: × is always how many times better the
    /// first named is.
    static func compare(_ ours: Double, _ theirs: Double, higherIsBetter: Bool, them: String) -> String {
        let better = higherIsBetter ? ours / theirs : theirs / ours
        return better >= 1 ? "\(times(better)) better than \(them)" : "\(them) is \(times(1 / better)) better"
    }

    static func subscribers(_ name: String) -> Int {
        Int(name.split(separator: ",").dropFirst().first?.trimmingCharacters(in: .whitespaces).prefix { $0.isNumber } ?? "") ?? 0
    }

    /// "50×", "1.3×", "0.45×".
    static func times(_ value: Double) -> String {
        value >= 10 ? "\(Int(value.rounded()))×" : String(format: value >= 1 ? "%.1f×" : "%.2f×", value)
    }

    /// A figure in its unit, times in the unit that reads best: "170 ns", "8.6 µs", "1.2 ms", "13.8 GB/s".
    static func show(_ value: Double, _ unit: String) -> String {
        // A no-break space between the figure and its unit: a wrapped line never starts with the unit.
        let text: String = switch unit {
        case "ns", "ns/op":
            value < 1000 ? "\(Int(value.rounded())) ns" : value < 1_000_000 ? String(format: "%.1f µs", value / 1000) : String(format: "%.1f ms", value / 1_000_000)
        case "µs":
            value < 1000 ? String(format: value < 10 ? "%.1f µs" : "%.0f µs", value) : String(format: "%.1f ms", value / 1000)
        case "GB/s": String(format: value < 1 ? "%.2f GB/s" : "%.1f GB/s", value)
        default: "\(format(value)) \(unit)"
        }
        return text.replacingOccurrences(of: " ", with: "\u{00A0}")
    }
}
