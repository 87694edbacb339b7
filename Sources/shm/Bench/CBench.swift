import CShmBench
import ArgumentParser
import Foundation
import Glibc

/// The C side of the benchmarks: Sources/CShmBench/shmbench.c, linked into `shm`. Each experiment runs in a
/// process of its own (`shm c-bench ARGUMENTS`), as the Swift side's do, so neither disturbs the other.
struct CBench {
    /// This executable.
    let binary: String

    init() throws {
        binary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }

    /// Runs one C experiment; its output is `median p99 samples`, times in nanoseconds.
    func measure(_ arguments: [String]) throws -> Summary {
        let result = try run(binary, ["c-bench"] + arguments)
        let fields = result.output.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        guard result.status == 0, fields.count >= 2 else {
            throw BenchError("the C benchmark \(arguments.joined(separator: " ")) failed: \(result.error)")
        }
        return Summary(median: fields[0], p99: fields[1], samples: Int(fields.count > 2 ? fields[2] : 0))
    }

    func cleanUp() {}
}

/// `shm c-bench ARGUMENTS`: runs shmbench.c's experiment in this process (hidden: `shm bench` starts it).
struct CBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "c-bench", abstract: "Run one experiment of the C side of shm bench.", shouldDisplay: false)

    @Argument(parsing: .captureForPassthrough)
    var arguments: [String] = []

    func run() throws {
        let words = ["shmbench"] + arguments
        var argv = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let status = shmbench_main(Int32(words.count), &argv)
        fflush(nil)
        Glibc.exit(status)
    }
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
