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

    /// Swift's median over C's; for times lower is better, for GB/s higher is.
    var ratio: Double? {
        guard let swift, let c, c.median > 0 else { return nil }
        return swift.median / c.median
    }

    var higherIsBetter: Bool { unit == "GB/s" }
}
