import Foundation
import Synchronization
import TestSupport
import Testing

/// Running the built `shm` and other programs, unique names, and C helpers.
enum Shm {
    /// The `shm` binary SwiftPM built next to the tests.
    static let path: String = {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("shm").path
    }()

    /// Runs `shm` with `arguments` (and `input` on standard input).
    static func run(_ arguments: [String], input: Data? = nil) throws -> ChildProcess.Result {
        try ChildProcess.run(path, arguments, input: input)
    }
}

enum Names {
    private static let counter = Atomic<Int>(0)

    /// A region name string no other test uses (this process's id and a counter).
    static func unique(_ backend: String) -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        let pid = UInt32(getpid())
        switch backend {
        case "sysv": return String(format: "sysv:0x5c%03x%03x", pid & 0xfff, n & 0xfff)
        case "posix": return "posix:/shmtest-\(pid)-\(n)"
        default: return "file:/tmp/smtest-cli-\(pid)-\(n)"
        }
    }

    /// Runs `body` with a fresh name, and removes it afterwards whatever happens.
    static func with<R>(_ backend: String, _ body: (String) throws -> R) throws -> R {
        let name = unique(backend)
        defer { _ = try? Shm.run(["rm", name]) }
        return try body(name)
    }
}

/// Runs `shm` as uid and gid 65534, from a copy in a directory that user can enter (the build folder may be
/// closed to other users).
func runAsNobody(_ arguments: [String], input: Data? = nil) throws -> ChildProcess.Result {
    try withTemporaryDirectory { directory in
        let copy = try installShm(in: directory)
        return try ChildProcess.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", copy] + arguments, input: input)
    }
}

/// A copy of the `shm` binary in `directory`, mode 0755, made by `cp` in a process of its own: a copy written from
/// this process would leave its writable descriptor in every child forked meanwhile by the tests running in
/// parallel, and executing the copy would then fail with ETXTBSY ("Text file busy") for as long as they live.
func installShm(in directory: String) throws -> String {
    let copy = directory + "/shm"
    let result = try ChildProcess.run("/bin/cp", [Shm.path, copy])
    try #require(result.status == 0, "cp: \(result.error)")
    chmod(copy, 0o755)
    return copy
}

/// Compiles a C program with the system's cc into `directory` and returns the binary's path.
func compileC(_ source: String, named name: String, in directory: String) throws -> String {
    let file = directory + "/\(name).c"
    try source.write(toFile: file, atomically: true, encoding: .utf8)
    let binary = directory + "/\(name)"
    let result = try ChildProcess.run("/usr/bin/cc", ["-O2", "-o", binary, file, "-lrt"])
    try #require(result.status == 0, "cc: \(result.error)")
    return binary
}

/// A temporary directory, removed after `body`.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let directory = "/tmp/smtest-cli-dir-\(getpid())-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    chmod(directory, 0o755)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try body(directory)
}

/// Parses `--json` output.
func json(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}
