import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// The formats' declarations (Kit/Formats.swift) against themselves, the C headers, the Python package and
/// Docs/WireFormat.md: a field moved in one place and not the others fails here.
@Suite("Every format's fields, declared once and agreed on")
struct LayoutTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Every field of every part, as (part, field name, offset, declaration).
    static var declared: [(part: String, name: String, offset: Int, cName: String?, declaration: FieldDeclaration)] {
        Formats.parts.flatMap { part in fields(of: part) }
    }

    static func fields<F: FormatField>(of part: F.Type) -> [(part: String, name: String, offset: Int, cName: String?, declaration: FieldDeclaration)] {
        F.allCases.map { (F.part, $0.name, $0.offset, $0.cName, $0.declaration) }
    }

    @Test("fields are in order, naturally aligned and do not overlap")
    func wellFormed() {
        for part in Dictionary(grouping: Self.declared, by: \.part).values {
            for (field, next) in zip(part, part.dropFirst()) {
                #expect(field.offset + (field.declaration.extent == nil ? field.declaration.width : 1) <= next.offset,
                        "\(field.part): \(field.name) at \(field.offset) runs into \(next.name) at \(next.offset)")
            }
            for field in part {
                #expect(field.offset % min(field.declaration.width, 8) == 0, "\(field.part): \(field.name) at \(field.offset) is not aligned to its width")
            }
        }
    }

    @Test("the C headers' enumerators and constants are the declared ones, and only those")
    func cHeadersAgree() throws {
        let withC = Self.declared.filter { $0.cName != nil }
        var source = "#define _GNU_SOURCE\n#include <stdio.h>\n#include \"smpubsub.h\"\nint main(void) {\n"
        for field in withC { source += "    printf(\"%s %llu\\n\", \"\(field.cName!)\", (unsigned long long)\(field.cName!));\n" }
        for constant in ["SMRING_MAGIC", "SMRING_MAJOR", "SMRING_HEADER_SIZE", "SMPS_MAGIC", "SMPS_MAJOR", "SMPS_MAX_SUBSCRIBERS", "SMPS_LOAN_BIT", "SMPS_HISTORY_BIT"] {
            source += "    printf(\"%s %llu\\n\", \"\(constant)\", (unsigned long long)\(constant));\n"
        }
        source += "    return 0;\n}\n"
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("layout-\(getpid())-\(UInt32.random(in: 0 ... .max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try source.write(toFile: directory + "/layout.c", atomically: true, encoding: .utf8)
        let build = try ChildProcess.run("/usr/bin/cc", ["-std=c11", "-Wall", "-Werror", "-I", Self.root + "/Interop/c", "-o", directory + "/layout", directory + "/layout.c", "-lrt"])
        try #require(build.status == 0, "cc: \(build.error)")
        let run = try ChildProcess.run(directory + "/layout", [])
        var printed: [String: UInt64] = [:]
        for line in run.output.split(separator: "\n") {
            let words = line.split(separator: " ")
            printed[String(words[0])] = UInt64(words[1])
        }
        for field in withC {
            #expect(printed[field.cName!] == UInt64(field.offset), "\(field.cName!) is \(printed[field.cName!].map(String.init) ?? "missing") in C, \(field.offset) in \(field.part)")
        }
        #expect(printed["SMRING_MAGIC"] == MessageRing.magic && printed["SMRING_MAJOR"] == UInt64(MessageRing.majorVersion))
        #expect(printed["SMRING_HEADER_SIZE"] == UInt64(MessageRing.headerSize))
        #expect(printed["SMPS_MAGIC"] == PublishSubscribe.magic && printed["SMPS_MAJOR"] == UInt64(PublishSubscribe.major))
        #expect(printed["SMPS_MAX_SUBSCRIBERS"] == UInt64(PublishSubscribe.maxSubscribers))
        #expect(printed["SMPS_LOAN_BIT"] == PublishSubscribe.loanBit && printed["SMPS_HISTORY_BIT"] == PublishSubscribe.historyBit)

        // Every offset enumerator the headers define is one of the declared fields.
        let known = Set(withC.map { $0.cName! })
        for header in ["smring.h", "smpubsub.h"] {
            let text = try String(contentsOfFile: Self.root + "/Interop/c/" + header, encoding: .utf8)
            let enumerators = text.matches(of: /\b((?:SMRING_OFF|SMPS_OFF|SMPS_SLOT|SMPS_CHUNK)_[A-Z_]+) = \d+/).map { String($0.1) }
            #expect(!enumerators.isEmpty)
            for name in enumerators { #expect(known.contains(name), "\(header) defines \(name), which no format declares") }
        }
    }

    @Test("the Python package builds on the same C headers")
    func pythonAgrees() throws {
        for header in ["smring.h", "smpubsub.h"] {
            let c = try Data(contentsOf: URL(fileURLWithPath: Self.root + "/Interop/c/" + header))
            let python = try Data(contentsOf: URL(fileURLWithPath: Self.root + "/Interop/python/sharedmemory_ring/" + header))
            #expect(c == python, "Interop/python/sharedmemory_ring/\(header) differs from Interop/c/\(header)")
        }
        let package = try String(contentsOfFile: Self.root + "/Interop/python/sharedmemory_ring/__init__.py", encoding: .utf8)
        #expect(package.contains("OVERWRITE_OLDEST, BLOCK_PUBLISHER = 0, 1"))
    }

    @Test("Docs/WireFormat.md's tables are the declarations, row for row")
    func wireFormatAgrees() throws {
        let text = try String(contentsOfFile: Self.root + "/Docs/WireFormat.md", encoding: .utf8)
        var chapter = "", section = ""
        var rows: [String: [String: [String]]] = [:]  // part → field → cells
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") { chapter = String(line.dropFirst(3)) }
            if line.hasPrefix("### ") { section = String(line.dropFirst(4)) }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard line.hasPrefix("| "), cells.count >= 7, Int(cells[1]) != nil, cells[3] != "—", cells[3] != "field" else { continue }
            let name = cells[3].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            rows["\(chapter) / \(section)", default: [:]][name] = Array(cells[1...5])
        }
        let documented = Self.declared.filter { rows[$0.part] != nil }
        #expect(Set(documented.map(\.part)).count == 4, "the ring's header and the service's header, slot and chunk have tables")
        for field in documented {
            guard let cells = rows[field.part]?[field.name] else {
                Issue.record("\(field.part): \(field.name) is declared and not in WireFormat.md")
                continue
            }
            #expect(cells == [String(field.offset), field.declaration.widthText, cells[2], field.declaration.writer, field.declaration.ordering],
                    "\(field.part): \(field.name) is \(cells) in WireFormat.md")
        }
        for (part, fields) in rows {
            for name in fields.keys { #expect(documented.contains { $0.part == part && $0.name == name }, "WireFormat.md's \(part) has \(name), which is not declared") }
        }
    }
}
