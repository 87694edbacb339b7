import Foundation

/// The report as a person reads it, within 120 columns: the machine, the answers (Answers.swift), then a table per
/// experiment that says what its columns are, with "×" the times the SWIFT column is better than the other one.
extension Report {
    static let width = 120

    /// What an experiment's second column is, and a sentence saying what both are.
    static func columns(_ experiment: String) -> (other: String, meaning: String) {
        switch experiment {
        case "peers": ("PEER", "SWIFT: two message rings through SharedMemory; PEER: the mechanism the case names, in C or C++")
        case "heap": ("BOOST", "SWIFT: SharedHeap; BOOST: Boost.Interprocess's managed_shared_memory, compiled at run time")
        case "publish/subscribe": ("REF", "SWIFT: the publish/subscribe service; REF: the reference the row's note names, measured in this run")
        case "async": ("BLOCKING", "SWIFT: receiveAsync in a task; BLOCKING: the blocking receive with the same wait strategy")
        case "instructions": ("C", "SWIFT: through SharedMemory; C: the same operation in C; instructions per operation, under callgrind")
        default: ("C", "SWIFT: through SharedMemory; C: the same loop in plain C, making the same system calls")
        }
    }

    func table() -> String {
        var lines: [String] = []
        lines += wrap("machine: \(machine.cpu), \(machine.cores) cores, Linux \(machine.kernel), THP for shmem: \(machine.transparentHugePagesShmem ?? "?"), huge pages reserved: \(machine.hugePagesReserved.map(String.init) ?? "?")")
        lines += wrap("placement before: \(Machine.describe(machine.placementBefore)); after: \(Machine.describe(machine.placementAfter))")
        let answers = answers()
        if !answers.isEmpty {
            lines.append("")
            lines.append("Which one? (on this machine, in this run)")
            for answer in answers { lines += wrap("- " + answer, indent: "  ") }
        }
        let order = results.map(\.experiment).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        for experiment in order {
            let (other, meaning) = Self.columns(experiment)
            let rows = results.filter { $0.experiment == experiment }
            lines.append("")
            lines += wrap("\(experiment.uppercased()). \(meaning). \(Self.units(rows)) × BETTER: how many times better SWIFT is than \(other) (below 1: worse).")
            var notes: [String] = []
            func mark(_ text: String) -> String {
                if let index = notes.firstIndex(of: text) { return "[\(index + 1)]" }
                notes.append(text)
                return "[\(notes.count)]"
            }
            let cells = rows.map { m -> [String] in
                if let skipped = m.skipped { return [m.name, m.unit, "-", "-", "-", "-", "-", mark("skipped: \(skipped)")] }
                var note: [String] = []
                if let placement = m.placement { note.append(placement.median < Machine.nearLimit ? "near" : "far") }
                if let unstable = m.unstable { note.append(mark("UNSTABLE: \(unstable)")) }
                if let text = m.note, !Self.redundant(text, m) {
                    note.append(mark(text.hasPrefix("C: ") ? "\(other): " + text.dropFirst(3) : text))
                }
                return [m.name, m.unit, format(m.swift?.median), format(m.swift?.p99), format(m.c?.median), format(m.c?.p99),
                        betterText(m), note.joined(separator: " ")]
            }
            lines += Self.render(["CASE", "UNIT", "SWIFT", "p99", other, "p99", "× BETTER", "NOTE"], cells)
            for (index, note) in notes.enumerated() { lines += wrap("[\(index + 1)] \(note)", indent: "    ") }
        }
        lines.append("")
        lines += wrap("Each figure is a median; p99 is the slow end (for GB/s, the 99th percentile of the time, as a throughput). near/far: whether the two processes ran on CPUs that share a cache (a spin round trip under \(Int(Machine.nearLimit)) ns); compare two-process rows only at the same placement. A row marked UNSTABLE is not a result: the machine was busy with other work (more than \(Int(LoadWatch.busyLimit * 100))% of its CPUs), the hypervisor stole time, its rounds disagreed by more than \(Int(LoadWatch.spreadLimit * 100))%, or the CPUs' placement changed between the ring's and its peers' measurements.")
        if let sweeps = results.compactMap(\.sweeps).max() {
            lines += wrap("Each row is the median of \(sweeps) sweeps (by ratio); [low–high] is the range of the sweeps' × BETTER.")
        }
        return lines.joined(separator: "\n")
    }

    /// Whether a row's note only says what the experiment's heading says already (a peer the case names, Boost).
    static func redundant(_ note: String, _ m: Measurement) -> Bool {
        switch m.experiment {
        case "peers": note.hasPrefix("C: " + (m.name.split(separator: " vs ").last ?? ""))
        case "heap": note == "C: Boost.Interprocess managed_shared_memory"
        default: false
        }
    }

    static func units(_ rows: [Measurement]) -> String {
        let units = rows.filter { $0.skipped == nil }.map(\.unit).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let lower = units.filter { $0 != "GB/s" }, higher = units.filter { $0 == "GB/s" }
        if lower.isEmpty { return higher.isEmpty ? "" : "Higher is better in GB/s." }
        return "Lower is better in \(lower.joined(separator: ", "))" + (higher.isEmpty ? "." : "; higher in GB/s.")
    }

    /// How many times better Swift's median is than the other's, with the sweeps' range, and "?" when unstable.
    func betterText(_ m: Measurement) -> String {
        guard let ratio = m.ratio, ratio > 0 else { return "-" }
        func better(_ r: Double) -> Double { m.higherIsBetter ? r : 1 / r }
        func show(_ value: Double) -> String { String(format: value < 0.1 ? "%.3f" : value < 10 ? "%.2f" : "%.0f", value) }
        var text = show(better(ratio))
        if let range = m.ratioRange, range.count == 2 {
            let ends = [better(range[0]), better(range[1])].sorted()
            text += " [\(show(ends[0]))–\(show(ends[1]))]"
        }
        return m.unstable != nil ? text + " ?" : text
    }

    /// A table whose first column wraps to keep every line within the width.
    static func render(_ header: [String], _ rows: [[String]]) -> [String] {
        var widths = header.map(displayWidth)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], displayWidth(cell)) } }
        let rest = widths.dropFirst().reduce(0) { $0 + $1 + 2 }
        widths[0] = max(16, min(widths[0], width - rest))
        var lines: [String] = []
        for row in [header] + rows {
            var first = displayWidth(row[0]) <= widths[0] ? [row[0]] : wrapWords(row[0], widths[0] - 2)
            let cells = row.enumerated().map { i, cell -> String in
                let text = i == 0 ? first.removeFirst() : cell
                let pad = String(repeating: " ", count: max(0, widths[i] - displayWidth(text)))
                return (2...6).contains(i) ? pad + text : text + pad
            }
            lines.append(cells.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
            for more in first { lines.append("  " + more) }
        }
        return lines
    }
}

/// `text` in lines of at most `Report.width` columns, broken at spaces; continuation lines start with `indent`.
func wrap(_ text: String, indent: String = "") -> [String] {
    let lines = wrapWords(text, Report.width - indent.count)
    return lines.enumerated().map { $0 == 0 ? $1 : indent + $1 }
}

func wrapWords(_ text: String, _ width: Int) -> [String] {
    var lines: [String] = []
    var line = ""
    for word in text.split(separator: " ", omittingEmptySubsequences: false) {
        if !line.isEmpty, displayWidth(line) + 1 + displayWidth(String(word)) > width {
            lines.append(line)
            line = String(word)
        } else {
            line += line.isEmpty ? String(word) : " " + word
        }
    }
    lines.append(line)
    return lines
}
