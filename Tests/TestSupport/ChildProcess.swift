import Foundation
import Synchronization

/// A program the tests run as a child process: the probe, `shm`, C helpers, `ipcs`, a shell. Its standard output
/// and standard error are captured (read concurrently, so neither pipe fills up), its standard input is nothing,
/// bytes, a descriptor (a socket to pass it a region), or a pipe kept open until ``closeInput()``. The one way both
/// test targets start a process.
public final class ChildProcess {
    /// What the child reads on its standard input.
    public enum Input {
        /// /dev/null.
        case none
        /// These bytes, then end of file.
        case bytes(Data)
        /// This descriptor (not closed here).
        case descriptor(Int32)
        /// A pipe that stays open until ``closeInput()``: the child can wait on it to know when to stop.
        case open
    }

    /// How a child ended, and what it wrote.
    public struct Result: Sendable {
        public var status: Int32
        public var outputBytes: Data
        public var error: String
        public var output: String { String(decoding: outputBytes, as: UTF8.self) }
        /// The last line of standard output: a probe's answer.
        public var lastLine: String { output.split(separator: "\n").last.map(String.init) ?? "" }
    }

    private let process = Process()
    private let output = Pipe(), errorOutput = Pipe(), input = Pipe()
    private let errorData = Captured()
    private let errorReader: Thread
    /// What ``line()`` has read of standard output; ``finish()`` returns it with the rest.
    private var consumed = Data()

    /// Starts `executable` with `arguments`.
    public init(_ executable: String, _ arguments: [String], input: Input = .none) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = errorOutput
        switch input {
        case .none: process.standardInput = FileHandle.nullDevice
        case .descriptor(let descriptor): process.standardInput = FileHandle(fileDescriptor: descriptor, closeOnDealloc: false)
        case .bytes, .open: process.standardInput = self.input
        }
        let errorData = self.errorData, errorHandle = errorOutput.fileHandleForReading
        errorReader = Thread { errorData.bytes.withLock { $0 = errorHandle.readDataToEndOfFile() } }
        try process.run()
        errorReader.start()
        if case .bytes(let bytes) = input {
            self.input.fileHandleForWriting.write(bytes)
            closeInput()
        }
    }

    deinit {
        if process.isRunning { kill() }
    }

    /// The child's process id.
    public var pid: Int32 { process.processIdentifier }

    /// Whether it still runs.
    public var isRunning: Bool { process.isRunning }

    /// Runs a program to its end.
    public static func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Result {
        try ChildProcess(executable, arguments, input: input.map(Input.bytes) ?? .none).finish()
    }

    /// Runs a shell command to its end.
    public static func shell(_ script: String) throws -> Result {
        try run("/bin/sh", ["-c", script])
    }

    /// The next line of standard output, without its newline, read byte by byte (the child keeps the pipe open);
    /// empty at end of file.
    public func line() -> String {
        var line = Data()
        while let byte = try? output.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data("\n".utf8) {
            line.append(byte)
        }
        consumed += line + Data("\n".utf8)
        return String(decoding: line, as: UTF8.self)
    }

    /// Closes the child's standard input (an ``Input/open`` pipe): end of file for it.
    public func closeInput() {
        try? input.fileHandleForWriting.close()
    }

    /// Waits for the end and returns what the child wrote (standard output includes the lines ``line()`` read).
    @discardableResult
    public func finish() -> Result {
        let rest = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errorReader.isFinished { usleep(1000) }
        return Result(status: process.terminationStatus, outputBytes: consumed + rest,
                      error: errorData.bytes.withLock { String(decoding: $0, as: UTF8.self) })
    }

    /// SIGKILL, and wait until it is gone.
    public func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// Standard error as the reader thread captured it.
private final class Captured: Sendable {
    let bytes = Mutex(Data())
}
