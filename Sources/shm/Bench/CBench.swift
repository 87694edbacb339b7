import Foundation
import Glibc

/// The C side of the benchmarks: Benchmarks/c/shmbench.c, compiled with the system's cc at run time.
struct CBench {
    let binary: String
    let directory: String

    /// Where the C source is: found from this file's place in the package, so `shm bench` works from any
    /// directory as long as the package's sources are where they were built.
    static let source = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Benchmarks/c/shmbench.c").path

    init() throws {
        guard FileManager.default.fileExists(atPath: Self.source) else {
            throw BenchError("the C benchmark source \(Self.source) is missing; run shm bench from a checkout of SharedMemory")
        }
        directory = NSTemporaryDirectory() + "shmbench-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        binary = directory + "/shmbench"
        let compile = try run("/usr/bin/env", ["cc", "-O2", "-o", binary, Self.source, "-lrt", "-lpthread"])
        guard compile.status == 0 else { throw BenchError("cc failed to build \(Self.source): \(compile.error)") }
    }

    /// Runs one C experiment; its output is `median p99 samples`, times in nanoseconds.
    func measure(_ arguments: [String]) throws -> Summary {
        let result = try run(binary, arguments)
        let fields = result.output.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        guard result.status == 0, fields.count >= 2 else {
            throw BenchError("the C benchmark \(arguments.joined(separator: " ")) failed: \(result.error)")
        }
        return Summary(median: fields[0], p99: fields[1], samples: Int(fields.count > 2 ? fields[2] : 0))
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: directory) }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a program and captures its output (standard error into a file, so neither pipe can fill up).
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    let errorFile = NSTemporaryDirectory() + "shmbench-stderr-\(getpid())-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: errorFile, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorFile) }
    process.standardOutput = output
    process.standardError = FileHandle(forWritingAtPath: errorFile)
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let error = (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? ""
    return (process.terminationStatus, String(decoding: data, as: UTF8.self), error)
}
