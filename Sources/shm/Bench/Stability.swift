import Foundation
import Glibc

/// Whether a run can be believed: how busy the machine was with work that is not the benchmark's while a case ran,
/// and how far a case's rounds disagree. A case that fails either test is marked unstable, with the reason, beside
/// its ratio instead of being presented as a result.
struct LoadWatch {
    /// Others' share of all CPUs above which a case is unstable.
    static let busyLimit = 0.25
    /// CPU time the hypervisor took (steal) above which a case is unstable.
    static let stealLimit = 0.05
    /// How far a case's rounds may disagree (the spread of their medians over the median).
    static let spreadLimit = 0.25

    struct Sample {
        var wall: Double
        /// Jiffies of all CPUs: busy (user, nice, system, irq, softirq, steal), steal, and in all.
        var busy: Double, steal: Double, total: Double
        /// CPU seconds of this process and its waited-for children.
        var ours: Double

        static func now() -> Sample {
            var busy = 0.0, steal = 0.0, total = 0.0
            if let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
               let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) {
                let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
                if fields.count >= 8 {
                    total = fields.prefix(8).reduce(0, +)
                    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
                    steal = fields[7]
                }
            }
            var me = rusage(), children = rusage()
            getrusage(RUSAGE_SELF.rawValue, &me)
            getrusage(RUSAGE_CHILDREN.rawValue, &children)
            func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
            let ours = seconds(me.ru_utime) + seconds(me.ru_stime) + seconds(children.ru_utime) + seconds(children.ru_stime)
            return Sample(wall: Double(nanoseconds()) / 1e9, busy: busy, steal: steal, total: total, ours: ours)
        }
    }

    let start = Sample.now()

    /// What the machine did meanwhile: others' share of the CPUs and the share stolen, or nil if /proc/stat says
    /// nothing.
    func load() -> (others: Double, steal: Double)? {
        let end = Sample.now()
        let jiffies = end.total - start.total
        guard jiffies > 0 else { return nil }
        let hertz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cores = Double(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let busySeconds = (end.busy - start.busy) / hertz
        let capacity = jiffies / hertz  // all CPUs' seconds
        let others = max(0, busySeconds - (end.ours - start.ours)) / max(capacity, (end.wall - start.wall) * cores)
        return (others, (end.steal - start.steal) / jiffies)
    }

    /// Why the cases measured since this watch started are not to be believed, or nil.
    func verdict() -> String? {
        guard let (others, steal) = load() else { return nil }
        var reasons: [String] = []
        if others > Self.busyLimit { reasons.append("machine busy: others used \(Int(others * 100))% of the CPUs (limit \(Int(Self.busyLimit * 100))%)") }
        if steal > Self.stealLimit { reasons.append("\(Int(steal * 100))% of CPU time stolen by the hypervisor (limit \(Int(Self.stealLimit * 100))%)") }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// How the case's own verdicts read (``spreadVerdict(_:what:)``, ``placementVerdict(_:)``), so that
    /// ``blamesTheMachine(_:)`` knows them.
    static let spreadMark = "disagree by", placementMark = "the CPUs' placement changed"

    /// Whether a row's reasons (`Measurement.unstable`: verdicts joined on semicolons) blame something other than the
    /// case itself (its rounds disagree, its CPUs moved): the machine's other work, the hypervisor (``verdict()``), or
    /// any other reason. What the report's summary says of the run; read back here, beside where they are written.
    static func blamesTheMachine(_ unstable: String) -> Bool {
        !unstable.split(separator: ";").allSatisfy { $0.contains(spreadMark) || $0.contains(placementMark) }
    }

    /// Why a two-process case whose placement probes (``Machine/placement(_:)``, spin round trips in ns, taken in
    /// order: before the ring, after it, after its peers) were `probes` is not to be believed, or nil: the CPUs were
    /// near (sharing a cache) for some and far for others. The hypervisor moves a VM's CPUs, and a 64 KiB round trip
    /// is 16–18 µs between near ones and 76–82 µs between far ones here (a cache line's round trip between the two
    /// CPUs: 57–73 ns against 315–362 ns): a ring and a peer measured on either side of such a move are not compared.
    static func placementVerdict(_ probes: [Double]) -> String? {
        let kinds = Set(probes.map { $0 < Machine.nearLimit })
        guard kinds.count > 1 else { return nil }
        let rounded = probes.map { String(Int($0)) }.joined(separator: ", ")
        // No semicolon: a row's reasons are joined, and read back, on semicolons.
        return "\(placementMark) during the case (spin round trips of \(rounded) ns, near being under \(Int(Machine.nearLimit)))"
    }

    /// Why rounds whose medians are `medians` disagree too much, or nil; `what` names them ("Swift's rounds").
    static func spreadVerdict(_ medians: [Double], what: String) -> String? {
        let finite = medians.filter(\.isFinite)
        guard finite.count >= 2, let low = finite.min(), let high = finite.max() else { return nil }
        let middle = finite.sorted()[finite.count / 2]
        guard middle > 0 else { return nil }
        let spread = (high - low) / middle
        return spread > spreadLimit ? "\(what) \(spreadMark) \(Int(spread * 100))% (limit \(Int(spreadLimit * 100))%)" : nil
    }
}
