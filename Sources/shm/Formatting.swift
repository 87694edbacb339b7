import ArgumentParser
import Foundation
import Glibc
import SharedMemory
import SystemPackage

/// Sizes on the command line: `4096`, `64K`, `1MiB`, `2G`, `1.5G`. K, M, G, T (with or without `i`/`iB`) are
/// powers of 1024; KB, MB, GB, TB are powers of 1000.
enum ByteCount {
    static let help: ArgumentHelp = "Bytes (4096), or with K, M, G, T for powers of 1024 (64K, 1MiB, 2G) or KB, MB, GB, TB for powers of 1000."

    /// For `@Option(transform:)` of a size: a byte count of at least 1, or an error that says what is wrong.
    static func parseSize(_ text: String) throws -> Int {
        let bytes = try parse(text, "a size is at least 1 byte")
        guard bytes > 0 else { throw ValidationError("a size is at least 1 byte, not 0") }
        return bytes
    }

    /// For `@Option(transform:)` of an offset or a count: 0 or more.
    static func parseOffset(_ text: String) throws -> Int { try parse(text, "give 0 or more bytes") }

    /// A byte count of 0 or more, or an error that says what a size looks like (or that it is negative).
    private static func parse(_ text: String, _ rule: String) throws -> Int {
        if text.trimmingCharacters(in: .whitespaces).hasPrefix("-") {
            throw ValidationError("`\(text)` is negative: \(rule)")
        }
        guard let bytes = bytes(text) else {
            throw ValidationError("`\(text)` is not a size: write bytes (4096) or a number with K, M, G, T (64K, 1MiB, 2G)")
        }
        return bytes
    }

    static func bytes(_ text: String) -> Int? {
        let units: [(String, Double)] = [
            ("KiB", 0x1p10), ("MiB", 0x1p20), ("GiB", 0x1p30), ("TiB", 0x1p40),
            ("Ki", 0x1p10), ("Mi", 0x1p20), ("Gi", 0x1p30), ("Ti", 0x1p40),
            ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
            ("K", 0x1p10), ("M", 0x1p20), ("G", 0x1p30), ("T", 0x1p40), ("k", 0x1p10), ("B", 1),
        ]
        let text = text.trimmingCharacters(in: .whitespaces)
        if let plain = Int(text) { return plain }
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
            guard !number.hasPrefix("-"), let value = Double(number), value.isFinite else { return nil }
            let bytes = (value * factor).rounded()
            return bytes < 0x1p63 ? Int(bytes) : nil
        }
        return nil
    }
}

/// `0640`.
func octalMode(_ permissions: FilePermissions?) -> String? {
    guard let permissions else { return nil }
    let digits = String(permissions.rawValue, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

/// The user name for a uid, or the number.
func userName(_ uid: UInt32) -> String {
    guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "\(uid)" }
    return String(validatingCString: name) ?? "\(uid)"
}

/// A table with aligned columns, left-aligned text and right-aligned numbers; columns are as wide as their
/// widest cell on a terminal (a CJK character takes two columns, a combining accent none).
func table(_ header: [String], _ rows: [[String]], rightAligned: Set<Int>) -> String {
    var widths = header.map(displayWidth)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], displayWidth(cell)) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, cell in
            let pad = String(repeating: " ", count: widths[i] - displayWidth(cell))
            return rightAligned.contains(i) ? pad + cell : cell + pad
        }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Pretty JSON with sorted keys; `nil` values print as `null`.
func printJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

extension RegionInfo {
    /// The fields of `shm ls --json`: backend, name, id, size, mode, uid, gid, attachCount, creatorPID (and a
    /// few more), with `null` where unknown.
    var summaryJSON: [String: Any] {
        [
            "backend": backend.rawValue,
            "name": name.description,
            "id": systemVID.map { $0 as Any } ?? NSNull(),
            "key": systemVKey.map { "0x" + String(format: "%08x", UInt32(bitPattern: $0)) as Any } ?? NSNull(),
            "size": size,
            "mode": octalMode(permissions).map { $0 as Any } ?? NSNull(),
            "uid": ownerUID,
            "gid": ownerGID,
            "owner": userName(ownerUID),
            "attachCount": attachCount.map { $0 as Any } ?? NSNull(),
            "creatorPID": creatorPID.map { $0 as Any } ?? NSNull(),
            "creatorAlive": creatorIsAlive.map { $0 as Any } ?? NSNull(),
            "markedForRemoval": isMarkedForRemoval,
            "lifetime": lifetime.rawValue,
        ]
    }

    /// Everything `info` knows, for `shm stat --json`.
    var fullJSON: [String: Any] {
        var json = summaryJSON
        func time(_ t: Timestamp?) -> Any { t.map { $0.seconds as Any } ?? NSNull() }
        json["creatorUID"] = creatorUID.map { $0 as Any } ?? NSNull()
        json["creatorGID"] = creatorGID.map { $0 as Any } ?? NSNull()
        json["lastPID"] = lastPID.map { $0 as Any } ?? NSNull()
        json["lastAttachTime"] = time(lastAttachTime)
        json["lastDetachTime"] = time(lastDetachTime)
        json["lastChangeTime"] = time(lastChangeTime)
        json["device"] = device.map { $0 as Any } ?? NSNull()
        json["inode"] = inode.map { $0 as Any } ?? NSNull()
        return json
    }
}

/// A date for people: `2026-11-27 10:15:02`.
func humanTime(_ timestamp: Timestamp?) -> String {
    guard let timestamp else { return "never" }
    var seconds = time_t(timestamp.seconds)
    var parts = tm()
    localtime_r(&seconds, &parts)
    var buffer = [CChar](repeating: 0, count: 32)
    let length = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
    return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A name as `ls -b` shows it: control characters as C escapes (`\n`, `\t`, `\033`) and a backslash doubled, so
/// a name can neither move the cursor nor break a table's rows.
func printable(_ text: String) -> String {
    var result = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\t": result += "\\t"
        case "\r": result += "\\r"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f:
            let digits = String(scalar.value, radix: 8)
            result += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
        case _ where (0x80...0x9f).contains(scalar.value) || scalar.properties.generalCategory == .format:
            result += "\\u{" + String(scalar.value, radix: 16) + "}"  // C1 controls, bidirectional overrides
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result
}

/// How many terminal columns `text` takes: 2 for East Asian wide and fullwidth characters and emoji, 0 for
/// combining marks, 1 for the rest.
func displayWidth(_ text: String) -> Int {
    let wide: [ClosedRange<UInt32>] = [
        0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
        0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x1F300...0x1F64F,
        0x1F900...0x1F9FF, 0x20000...0x2FFFD, 0x30000...0x3FFFD,
    ]
    return text.unicodeScalars.reduce(0) { width, scalar in
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .format: return width
        default: return width + (wide.contains { $0.contains(scalar.value) } ? 2 : 1)
        }
    }
}

/// `text` as one shell word: as it is if it is safe, else in single quotes.
func shellQuoted(_ text: String) -> String {
    let safe = text.unicodeScalars.allSatisfy { scalar in
        scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "/:._-+@%=,".unicodeScalars.contains(scalar))
    }
    return safe ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
