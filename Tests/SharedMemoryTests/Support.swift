import Foundation
import Synchronization
import SystemPackage
import TestSupport
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

/// Runs each test on a thread of its own (``OwnThreadExecutor``), not on the cooperative pool: for tests that count
/// or bound what their tasks do, which the tests blocking the pool's threads (children, crash tests) could otherwise
/// hold up for minutes on a busy two-CPU machine. Child tasks inherit the thread; an unstructured task asks for it
/// with `Task(executorPreference: OwnThreadExecutor.current)`.
struct OnOwnThread: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard !test.isSuite, OwnThreadExecutor.current == nil else { return try await function() }
        let executor = OwnThreadExecutor()
        defer { executor.stop() }
        try await OwnThreadExecutor.$current.withValue(executor) {
            try await withTaskExecutorPreference(executor) { try await function() }
        }
    }
}

extension Trait where Self == OnOwnThread {
    static var onOwnThread: Self { Self() }
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

/// Runs a program to its end: its exit status and what it wrote.
@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> ChildProcess.Result {
    try ChildProcess.run(executable, arguments)
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
            try ChildProcess.run("/usr/bin/timeout", ["-s", "KILL", "\(seconds)", path] + flags + arguments)
        } ?? ChildProcess.run(path, flags + arguments)
        #expect(result.status == 0, "probe \(arguments) exited \(result.status): \(result.error)")
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
        let probe = try ChildProcess(path, ["receive"] + arguments, input: .descriptor(theirs.rawValue))
        try theirs.close()
        do {
            defer { try? mine.close() }  // the probe sees the end of the stream after what was sent
            try send(mine)
        }
        let result = probe.finish()
        #expect(result.status == 0, "\(result.error)")
        return result.output.split(separator: "\n").map(String.init)
    }

    /// Starts a probe in the background: read its answer lines, kill it, or wait for its last answer; with
    /// `input`, that descriptor (a socket to send it a region) is its standard input.
    static func start(_ arguments: [String], input: FileDescriptor? = nil) throws -> ChildProcess {
        try ChildProcess(path, arguments, input: input.map { .descriptor($0.rawValue) } ?? .none)
    }

    /// A probe that stays attached until ``release()``.
    final class Holder {
        let probe: ChildProcess
        let answer: String

        init(_ name: RegionName, access: String = "rw") throws {
            probe = try ChildProcess(Probe.path, ["hold", name.description, access], input: .open)
            answer = probe.line()
        }

        func release() {
            probe.closeInput()
            probe.finish()
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
    switch name.location {
    case .posix(let object): "/dev/shm" + object  // where glibc's shm_open puts it
    case .file(let path): path.string
    default: fatalError("\(name) has no path")
    }
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

/// Runs `body` with a region of `size` bytes (a multiple of the page) created at a fixed address between two
/// `PROT_NONE` pages, so that a read or write past either end of it is a SIGSEGV that stops the test process, where
/// otherwise it would read or write whatever the kernel happened to map next. The three are reserved together, the
/// middle given back and the region created there exactly (`.fixed`); another test may map into the hole first (a
/// window of microseconds): that create is `busy`, and a fresh hole is tried. The guard pages are unmapped after
/// `body` returns (they never move under the region; only the region's own pages lie between them).
func betweenGuardPages<R>(_ name: RegionName, size: Int, _ body: (consuming AnyRegion) throws -> R) throws -> R {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    precondition(size > 0 && size % page == 0, "a guarded region's size is a multiple of the page")
    for attempt in 1... {
        let area = try #require(mmap(nil, size + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0))
        defer {
            munmap(area, page)
            munmap(area + page + size, page)
        }
        munmap(area + page, size)
        let region: AnyRegion
        do {
            region = try SharedMemory.create(name, size: size, options: .init(address: .fixed(UInt(bitPattern: area + page))))
        } catch {
            guard error.code == .busy, attempt < 10 else { throw error }
            continue
        }
        return try body(region)
    }
    fatalError("unreachable")
}
