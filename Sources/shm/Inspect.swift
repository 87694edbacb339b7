import ArgumentParser
import Foundation
@_spi(Tools) import SharedMemory

/// `shm inspect`: what a region holds, who is in it, what is stuck (the library's `Inspection`, read-only).
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a region holds: its format, who is attached, what is queued, who is dead.",
        discussion: """
            Recognises every format the library writes (message ring, publish/subscribe service, request/response \
            service, heap) by its magic number; a seqlock cell has none: read one with --as seqlock. It maps the \
            region read-only and takes no seat and no lock, so it never changes or blocks what it looks at. Exit \
            status 1 if the structure does not add up (what a reader would call foreign), with the reason.
            """)

    @OptionGroup var region: RegionArgument

    @Option(parsing: .unconditional, help: "Where the structure starts, in bytes from the region's beginning.", transform: ByteCount.parseOffset)
    var offset: Int = 0

    @Option(name: .customLong("as"), help: "Read it as this format instead of recognising it: \(Self.formats).")
    var format: String?

    @Flag(help: "A heap: list its named objects (name, type, count, bytes, offset).")
    var objects = false

    @Option(help: "Redraw every SECONDS seconds (default 1) until interrupted, like top.")
    var watch: Double?

    @OptionGroup var output: OutputOptions

    static let formats = Inspection.Format.allCases.filter { $0 != .none }.map(\.rawValue).joined(separator: ", ")

    mutating func validate() throws {
        if let format, Inspection.Format(rawValue: format) == nil || format == "none" {
            throw ValidationError("`\(format)` is not a format: give one of \(Self.formats)")
        }
        if let watch, !(watch >= 0.1 && watch <= 3600) { throw ValidationError("--watch takes 0.1 to 3600 seconds, not \(watch)") }
    }

    /// `--watch` alone means every second: ArgumentParser has no option with an optional value, so the arguments
    /// get the 1 before they are parsed.
    static func defaultingWatch(_ arguments: [String]) -> [String] {
        var result: [String] = []
        for (i, argument) in arguments.enumerated() {
            result.append(argument)
            if argument == "--watch", i + 1 == arguments.count || Double(arguments[i + 1]) == nil { result.append("1") }
        }
        return result
    }

    func run() throws {
        let name = try region.name()
        guard let watch else {
            let report = try inspect(name)
            print(output.json ? try json(report, name) : text(report, name))
            if report.problem != nil {
                if !output.json { Shm.report("\(name): foreign: \(report.problem!)") }
                throw ExitCode(1)
            }
            return
        }
        let terminal = isatty(1) != 0
        while true {
            var screen: String
            do {
                let report = try inspect(name)
                screen = output.json ? try json(report, name) : text(report, name)
                if let problem = report.problem, !output.json { screen += "\nforeign: \(problem)" }
            } catch {
                screen = "\(name): \(error)"
            }
            let stamp = "every \(watch) s, \(Date().formatted(date: .omitted, time: .standard)) (Ctrl-C to stop)"
            // Home, the screen, then clear what an earlier, longer screen left below it.
            print(terminal ? "\u{1B}[H\(stamp)\n\n" + screen.replacingOccurrences(of: "\n", with: "\u{1B}[K\n") + "\u{1B}[K\u{1B}[J" : screen + "\n", terminator: terminal ? "" : "\n")
            fflush(nil)
            usleep(UInt32(watch * 1_000_000))
        }
    }

    private func inspect(_ name: RegionName) throws -> Inspection {
        let source = try SharedMemory.open(name, options: .init(access: .readOnly))
        let forced = format.flatMap(Inspection.Format.init(rawValue:))
        return source.withUnsafeBytes { Inspection.inspect($0, at: offset, as: forced, objects: objects) }
    }

    private func json(_ report: Inspection, _ name: RegionName) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(Document(region: name.description, inspection: report)), as: UTF8.self)
    }

    /// `--json`'s top level: the region's name and the inspection's fields (Docs/CLI.md has the schema).
    struct Document: Encodable {
        var region: String
        var inspection: Inspection

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Inspection.Facts.Key.self)
            try container.encode(region, forKey: .init("region"))
            try inspection.encode(to: encoder)
        }
    }

    private func text(_ report: Inspection, _ name: RegionName) -> String {
        var lines: [String] = []
        let what: String = switch report.format {
        case .ring: "message ring"
        case .publishSubscribe: "publish/subscribe service"
        case .requestResponse: "request/response service"
        case .heap: "heap"
        case .seqlock: "seqlock cell"
        case .none: "no known format"
        }
        lines.append("\(printable(name.description)) at offset \(report.offset): \(what)" + (report.version.map { ", format \($0)" } ?? ""))
        if !report.facts.items.isEmpty {
            let width = report.facts.items.map { words($0.key).count }.max() ?? 0
            for (key, value) in report.facts.items {
                lines.append("  " + words(key) + String(repeating: " ", count: width - words(key).count + 2) + value.description)
            }
        }
        if !report.participants.isEmpty {
            lines.append("")
            let rows = report.participants.map { p -> [String] in
                [p.role, p.slot.map(String.init) ?? "-", String(p.pid), p.alive ? "yes" : "NO", p.state ?? "-",
                 p.facts.items.map { "\(words($0.key)) \($0.value)" }.joined(separator: ", ")]
            }
            lines.append(table(["WHO", "SLOT", "PID", "ALIVE", "STATE", "HOLDS"], rows, rightAligned: [1, 2]))
        }
        if let objects = report.objects {
            lines.append("")
            lines.append(objects.isEmpty ? "no named objects" : table(["NAME", "TYPE", "COUNT", "BYTES", "OFFSET"], objects.map {
                [printable($0.name), printable($0.type), String($0.count), String($0.bytes), String($0.offset)]
            }, rightAligned: [2, 3, 4]))
        }
        for note in report.notes { lines.append("note: \(note)") }
        return lines.joined(separator: "\n")
    }

    /// `queuedMessages` → `queued messages`.
    private func words(_ key: String) -> String {
        var text = ""
        for character in key {
            if character.isUppercase { text += " " + character.lowercased() } else { text.append(character) }
        }
        return text
    }
}
