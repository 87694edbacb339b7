import Foundation
import Glibc
import SharedMemory

/// The machine a run was measured on, recorded with the results.
struct Machine: Codable {
    var cpu: String
    var cores: Int
    var kernel: String
    var transparentHugePagesShmem: String?
    var hugePagesReserved: Int?
    /// Spin ping-pong round trip between two processes (ns), before and after the run: 90–250 ns when the two
    /// CPUs share a cache, 310–700 ns when they do not (``nearLimit``). Two-process figures move by up to 5× between
    /// the two.
    var placementBefore: Summary?
    var placementAfter: Summary?

    static func describe() -> Machine {
        var name = utsname()
        uname(&name)
        let kernel = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown"
        let limits = try? SharedMemory.limits()
        return Machine(cpu: model, cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), kernel: kernel,
                       transparentHugePagesShmem: limits?.transparentHugePagesForShmem,
                       hugePagesReserved: limits?.hugePagesTotal)
    }

    static func placement(_ c: CBench) throws -> Summary {
        try c.measure(["placement", "20000"])
    }

    /// Round trips below this are "near": the two CPUs share a cache. Measured on the 2-vCPU EPYC VM the figures in
    /// Docs/Benchmarks.md come from: near 90–130 ns quiet, 120–271 ns with a busy loop on each CPU; far 311–441 ns
    /// (2026-12-07: six quick peers runs, each beside a cache line's round trip between the two CPUs of 50–59 ns or
    /// 318–323 ns), and about 700 ns in earlier runs. The line was 500 ns, which called those far probes near.
    static let nearLimit = 300.0

    static func describe(_ placement: Summary?) -> String {
        guard let placement else { return "not measured" }
        let kind = placement.median < nearLimit ? "near (the processes share a cache)" : "far (they do not share a cache)"
        return "\(Int(placement.median)) ns round trip: \(kind)"
    }
}

struct Report: Codable {
    var machine: Machine
    var results: [Measurement]
    /// Seconds each experiment took (all sweeps), by its `--experiments` name.
    var seconds: [String: Double]? = nil

    func csv() -> String {
        var text = "experiment,case,unit,swift_median,swift_p99,c_median,c_p99,swift_over_c,placement_ns,skipped,unstable\n"
        for m in results {
            let fields = [m.experiment, m.name, m.unit, format(m.swift?.median), format(m.swift?.p99),
                          format(m.c?.median), format(m.c?.p99), m.ratio.map { String(format: "%.3f", $0) } ?? "",
                          format(m.placement?.median), m.skipped ?? "", m.unstable ?? ""]
            text += fields.map { $0.contains(",") ? "\"\($0)\"" : $0 }.joined(separator: ",") + "\n"
        }
        return text
    }

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// One horizontal bar chart per experiment: a Swift bar and a C bar for each case, each labelled with its value and
    /// unit; the cases sorted by Swift/C ratio, Swift's best first; an unstable case drawn pale, with the word
    /// UNSTABLE; a skipped one as a grey line with its reason.
    func svg() -> String {
        let order = results.map(\.experiment).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let width = 980.0, label = 330.0, bar = 14.0
        var y = 58.0
        var body = ""
        body += "<text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">shm bench — \(escape(machine.cpu)), \(machine.cores) cores, Linux \(escape(machine.kernel))</text>\n"
        body += "<text x=\"10\" y=\"40\" font-size=\"12\">placement before: \(escape(Machine.describe(machine.placementBefore))); after: \(escape(Machine.describe(machine.placementAfter))). Swift <tspan fill=\"#f05138\">■</tspan>, C or the peer <tspan fill=\"#5a6d8c\">■</tspan>; pale: UNSTABLE, not a result</text>\n"
        for experiment in order {
            let all = results.filter { $0.experiment == experiment }
            let measured = all.filter { $0.skipped == nil }
            let units = measured.map(\.unit).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            let better = units.map { "\($0): \($0 == "GB/s" ? "higher" : "lower") is better" }.joined(separator: "; ")
            body += "<text x=\"10\" y=\"\(y + 14)\" font-size=\"14\" font-weight=\"bold\">\(escape(experiment)) <tspan font-weight=\"normal\" font-size=\"12\">(\(escape(better)))</tspan></text>\n"
            y += 24
            // Best for Swift first: the lowest ratio for times, the highest for throughputs; no ratio last.
            let sorted = measured.sorted { a, b in
                guard let ra = a.ratio else { return false }
                guard let rb = b.ratio else { return true }
                return a.higherIsBetter ? ra > rb : ra < rb
            }
            for m in sorted {
                // Bars are scaled within a unit, so that bytes and nanoseconds do not share an axis.
                let scale = measured.filter { $0.unit == m.unit }.flatMap { [$0.swift?.median ?? 0, $0.c?.median ?? 0] }.filter(\.isFinite).max() ?? 1
                let pale = m.unstable != nil
                var caption = escape(m.name)
                if m.ratio != nil { caption += " — Swift × better: " + betterText(m) }
                body += "<text x=\"10\" y=\"\(y + 2 * bar - 4)\" font-size=\"12\"\(pale ? " fill=\"#999\"" : "")>\(caption)</text>\n"
                for (i, (who, value, color)) in [("Swift", m.swift?.median, "#f05138"), ("C", m.c?.median, "#5a6d8c")].enumerated() {
                    guard let value, value.isFinite else { continue }
                    let length = max(1, (width - label - 170) * value / max(scale, 1e-9))
                    let rowTop = y + Double(i) * (bar + 2)
                    body += "<rect x=\"\(label)\" y=\"\(rowTop)\" width=\"\(length)\" height=\"\(bar)\" fill=\"\(color)\"\(pale ? " fill-opacity=\"0.3\"" : "")/>\n"
                    body += "<text x=\"\(label + length + 4)\" y=\"\(rowTop + bar - 3)\" font-size=\"11\">\(who) \(format(value)) \(escape(m.unit))\(pale && i == 0 ? " — UNSTABLE" : "")</text>\n"
                }
                y += 2 * bar + 10
            }
            for m in all where m.skipped != nil {
                body += "<text x=\"10\" y=\"\(y + 10)\" font-size=\"11\" fill=\"#999\">\(escape(m.name)): skipped (\(escape(m.skipped!)))</text>\n"
                y += 16
            }
            y += 16
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(y + 10))" font-family="sans-serif">
            <rect width="100%" height="100%" fill="white"/>
            \(body)</svg>

            """
    }
}

func format(_ value: Double?) -> String {
    guard let value, value.isFinite else { return "-" }
    if value >= 100 { return String(format: "%.0f", value) }
    if value >= 10 { return String(format: "%.1f", value) }
    return String(format: "%.2f", value)
}

private func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

func alignedTable(_ header: [String], _ rows: [[String]]) -> String {
    table(header, rows, rightAligned: Set(3..<header.count - 1))
}
