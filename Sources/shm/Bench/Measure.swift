import Foundation
import Glibc

/// A monotonic clock in nanoseconds (`clock_gettime(CLOCK_MONOTONIC)`).
func nanoseconds() -> Int {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// Samples summarised the way a noisy two-core machine needs: the median, and the 99th percentile.
struct Summary: Codable, Hashable {
    var median: Double
    var p99: Double
    var samples: Int

    init(_ values: [Double]) {
        let sorted = values.sorted()
        median = sorted.isEmpty ? .nan : sorted[sorted.count / 2]
        p99 = sorted.isEmpty ? .nan : sorted[Int((Double(sorted.count - 1) * 0.99).rounded())]
        samples = sorted.count
    }

    init(median: Double, p99: Double, samples: Int) {
        self.median = median
        self.p99 = p99
        self.samples = samples
    }

    func map(_ transform: (Double) -> Double) -> Summary {
        Summary(median: transform(median), p99: transform(p99), samples: samples)
    }
}

/// One line of the results: an experiment's case, measured in Swift and in C.
struct Measurement: Codable {
    var experiment: String
    var name: String
    /// "µs", "ns", "GB/s".
    var unit: String
    var swift: Summary?
    var c: Summary?
    /// Why a case was not measured, when it was not.
    var skipped: String?
    /// For two-process cases: the placement probe (spin round trip, ns) taken right after the case.
    var placement: Summary?
    /// What the reader should know about the row (the heap's: what its C column is).
    var note: String?
    /// Why the row is not to be believed (the machine was busy, or its rounds disagree), or nil.
    var unstable: String?
    /// With `--repeat`: the lowest and highest sweep's Swift/C ratio (the row's own is the median sweep's).
    var ratioRange: [Double]?
    /// With `--repeat`: how many sweeps the row combines.
    var sweeps: Int?

    /// Swift's median over C's; for times lower is better, for GB/s higher is.
    var ratio: Double? {
        guard let swift, let c, c.median > 0 else { return nil }
        return swift.median / c.median
    }

    var higherIsBetter: Bool { unit == "GB/s" }
}

extension Measurement {
    /// One row per case from `sweeps` runs of the same cases: the median sweep's figures (by Swift/C ratio; by
    /// Swift's median where there is no ratio), the range of the sweeps' ratios, and unstable if any sweep was, or if
    /// the sweeps' ratios disagree by more than the spread limit. A single sweep is returned as it is.
    static func combine(_ sweeps: [[Measurement]]) -> [Measurement] {
        guard sweeps.count > 1, let first = sweeps.first else { return sweeps.first ?? [] }
        return first.indices.map { index in
            let runs = sweeps.compactMap { $0.indices.contains(index) ? $0[index] : nil }
            guard runs[0].skipped == nil else { return runs[0] }
            let ratios = runs.compactMap(\.ratio)
            let ordered = ratios.count == runs.count
                ? runs.sorted { $0.ratio! < $1.ratio! }
                : runs.sorted { ($0.swift?.median ?? 0) < ($1.swift?.median ?? 0) }
            var m = ordered[ordered.count / 2]
            m.sweeps = runs.count
            if let low = ratios.min(), let high = ratios.max() { m.ratioRange = [low, high] }
            var reasons = runs.enumerated().compactMap { sweep, run in run.unstable.map { "sweep \(sweep + 1): \($0)" } }
            if let spread = LoadWatch.spreadVerdict(ratios, what: "the sweeps' ratios") { reasons.append(spread) }
            m.unstable = reasons.isEmpty ? nil : reasons.joined(separator: "; ")
            return m
        }
    }
}
