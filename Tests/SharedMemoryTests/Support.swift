import Foundation
import Synchronization
import SystemPackage
import Testing
@testable import SharedMemory

/// Test helpers: unique names that are always cleaned up, the probe process, and running shell commands.
enum Names {
    private static let counter = Atomic<Int>(0)
    static let pid = getpid()

    /// A name no other test (or earlier run) uses: it carries this process's id, a counter and random bits.
    static func unique(_ backend: Backend) -> RegionName {
        let n = counter.add(1, ordering: .relaxed).newValue
        let random = UInt32.random(in: 0...0xffff)
        switch backend {
        case .systemV:
            // 0x5d PPPPP CCC: a key space of its own for this test run.
            let key = UInt32(0x5d00_0000) | (UInt32(truncatingIfNeeded: pid) & 0xfff) << 12 | UInt32(n & 0xfff)
            return try! .systemV(key: Int32(bitPattern: key))
        case .posix:
            return try! .posix("/smtest-\(pid)-\(n)-\(String(random, radix: 16))")
        case .file:
            return try! .file(.init("/tmp/smtest-\(pid)-\(n)-\(String(random, radix: 16))"))
        case .anonymous:
            return .anonymous
        case .memfd:
            return try! .memfd("smtest-\(pid)-\(n)")
        }
    }

    /// Runs `body` with a fresh name and removes whatever has that name afterwards, even if `body` throws.
    static func with<R>(_ backend: Backend, _ body: (RegionName) throws -> R) throws -> R {
        let name = unique(backend)
        defer { cleanUp(name) }
        return try body(name)
    }

    /// Removes the name if it still exists (a System V key, a POSIX object, a file).
    static func cleanUp(_ name: RegionName) {
        guard name.backend.capabilities.contains(.named) else { return }
        while (try? SharedMemory.remove(name)) != nil {}
    }
}

extension Backend {
    static let named = allCases.filter { $0.capabilities.contains(.named) }
    /// The backends where a second attachment can be made: by name, or by passing the descriptor.
    static let attachable = allCases.filter { !$0.capabilities.isDisjoint(with: [.named, .descriptorPassing]) }
}

/// A second attachment of `region`: by name where it has one, otherwise by sending its descriptor over a
/// socket pair to ourselves.
func attachAgain(_ region: borrowing some SharedRegion & ~Copyable, access: Access = .readWrite) throws -> AnyRegion {
    if region.backend.capabilities.contains(.named) {
        return try SharedMemory.open(region.name, options: .init(access: access))
    }
    let (a, b) = try socketPair()
    defer { try? a.close(); try? b.close() }
    try region.send(over: a, access: access)
    return try SharedMemory.receive(from: b, options: .init(access: access))
}

/// A connected pair of Unix stream sockets.
func socketPair() throws -> (FileDescriptor, FileDescriptor) {
    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        throw Errno(rawValue: errno)
    }
    return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
}


/// Expects `body` to throw a ``SharedMemoryError`` with `code`, and returns it.
@discardableResult
func expectError<R: ~Copyable>(
    _ code: SharedMemoryError.Code, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> R
) -> SharedMemoryError? {
    expectError(of: [code], sourceLocation: sourceLocation, body)
}

/// Expects `body` to throw a ``SharedMemoryError`` with one of `codes`, and returns it.
@discardableResult
func expectError<R: ~Copyable>(
    of codes: Set<SharedMemoryError.Code>, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> R
) -> SharedMemoryError? {
    do {
        _ = try body()
        Issue.record("expected \(codes), but it succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let error as SharedMemoryError {
        #expect(codes.contains(error.code), "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected a SharedMemoryError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Runs a program and returns its exit status and standard output.
@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The probe: a second process that uses the library (see Tests/RegionProbe/main.swift).
enum Probe {
    static let path: String = {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("RegionProbe").path
    }()

    /// Runs one operation and returns its answer line: `ok ...` or `error CODE ...`. With `timeout` (seconds),
    /// a probe still running then is killed, and the test fails.
    static func run(_ arguments: [String], uid: UInt32? = nil, umask: String? = nil, timeout: Int? = nil) throws -> String {
        var flags: [String] = []
        if let uid { flags += ["--uid", "\(uid)"] }
        if let umask { flags += ["--umask", umask] }
        let result = try timeout.map { seconds in
            try SharedMemoryTests.run("/usr/bin/timeout", ["-s", "KILL", "\(seconds)", path] + flags + arguments)
        } ?? SharedMemoryTests.run(path, flags + arguments)
        #expect(result.status == 0, "probe \(arguments) exited \(result.status)")
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The error code in an answer, or nil for `ok`.
    static func code(_ answer: String) -> String? {
        answer.hasPrefix("error ") ? String(answer.split(separator: " ")[1]) : nil
    }

    /// Starts `RegionProbe receive ...` with one end of a socket pair as its standard input, lets `send` send it
    /// regions over the other end, and returns its answer lines.
    static func receive(_ arguments: [String], send: (FileDescriptor) throws -> Void) throws -> [String] {
        let (mine, theirs) = try socketPair()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["receive"] + arguments
        process.standardInput = FileHandle(fileDescriptor: theirs.rawValue, closeOnDealloc: false)
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        try theirs.close()
        do {
            defer { try? mine.close() }  // the probe sees the end of the stream after what was sent
            try send(mine)
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// A probe running in the background: read its answer lines, kill it, or wait for its last answer.
    final class Running {
        let process = Process()
        let output = Pipe()

        /// Starts the probe; with `input`, that descriptor (a socket to send it a region) is its standard input.
        init(_ arguments: [String], input: FileDescriptor? = nil) throws {
            process.executableURL = URL(fileURLWithPath: Probe.path)
            process.arguments = arguments
            process.standardOutput = output
            process.standardInput = input.map { FileHandle(fileDescriptor: $0.rawValue, closeOnDealloc: false) } ?? FileHandle.nullDevice
            try process.run()
        }

        /// The next answer line.
        func line() -> String {
            String(decoding: output.fileHandleForReading.availableLine(), as: UTF8.self)
        }

        /// Waits for the end and returns the last line.
        func finish() -> String {
            let rest = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return rest.split(separator: "\n").last.map(String.init) ?? ""
        }

        /// SIGKILL, and wait until it is gone.
        func kill() {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        deinit {
            if process.isRunning { kill() }
        }
    }

    static func start(_ arguments: [String], input: FileDescriptor? = nil) throws -> Running { try Running(arguments, input: input) }

    /// A probe that stays attached until ``release()``.
    final class Holder {
        let process = Process()
        let input = Pipe()
        let output = Pipe()
        let answer: String

        init(_ name: RegionName, access: String = "rw") throws {
            process.executableURL = URL(fileURLWithPath: Probe.path)
            process.arguments = ["hold", name.description, access]
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            answer = String(decoding: output.fileHandleForReading.availableLine(), as: UTF8.self)
        }

        func release() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }

        deinit { release() }
    }
}

/// The test's own shell commands (ipcs, stat), as a string.
func shell(_ command: String) throws -> String {
    try run("/bin/sh", ["-c", command]).output
}

/// Where a posix or file region's object is on disk.
func path(of name: RegionName) -> String {
    ObjectName(name)!.path!
}

/// Runs `body` with system calls failing as `faults` say (see FaultInjection), and expects every fault to have
/// been reached: a fault that never fired means the test did not test what it claims.
func injecting<R>(
    _ faults: [String: [Errno]], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R
) rethrows -> R {
    let plan = FaultInjection.Plan(faults)
    let result = try FaultInjection.$plan.withValue(plan, operation: body)
    #expect(plan.unused.isEmpty, "faults never reached: \(plan.unused)", sourceLocation: sourceLocation)
    return result
}

extension FileHandle {
    /// Reads one line, byte by byte (the writer keeps the pipe open).
    func availableLine() -> Data {
        var line = Data()
        while let byte = try? read(upToCount: 1), !byte.isEmpty, byte != Data("\n".utf8) { line.append(byte) }
        return line
    }
}
