import Foundation
import TestSupport
import Testing

/// What a new user meets in the first hour with `shm`: names that have no name, bad numbers, odd names in tables,
/// the version, planted FIFOs, and `shm bench` from an installed binary.
@Suite("shm, the first hour")
struct FirstHourTests {
    @Test("create memfd: or anonymous is refused with exit 64 and a sentence saying what to use", arguments: ["memfd:foo", "anonymous"])
    func unnamedCreate(name: String) throws {
        let result = try Shm.run(["create", name, "--size", "4K"])
        #expect(result.status == 64)
        #expect(result.output.isEmpty)
        #expect(result.error.contains("no name outside the process that makes them") && result.error.contains("posix:/NAME"), "\(result.error)")
    }

    @Test("negative or zero numbers say what is wrong, with exit 64", arguments: [
        (["create", "posix:/x", "--size", "-1"], "`-1` is negative: a size is at least 1 byte"),
        (["create", "posix:/x", "--size", "0"], "a size is at least 1 byte, not 0"),
        (["resize", "posix:/x", "--size", "-4K"], "`-4K` is negative"),
        (["read", "posix:/x", "--offset", "-5"], "`-5` is negative: give 0 or more bytes"),
        (["read", "posix:/x", "--count", "-1"], "`-1` is negative: give 0 or more bytes"),
        (["write", "posix:/x", "--offset", "-1", "--string", "a"], "`-1` is negative"),
    ])
    func badNumbers(arguments: [String], message: String) throws {
        let result = try Shm.run(arguments)
        #expect(result.status == 64, "\(result.error)")
        #expect(result.error.contains(message), "\(result.error)")
        #expect(!result.error.contains("Missing value"))
    }

    @Test("a size larger than the whole of /dev/shm says so, not that it is full")
    func largerThanFileSystem() throws {
        try Names.with("posix") { name in
            let result = try Shm.run(["create", name, "--size", "100T"])
            #expect(result.status == 1)
            #expect(result.error.contains("is more than the whole file system holding it") && !result.error.contains("is full"), "\(result.error)")
        }
    }

    @Test("names with control characters are escaped in ls and stat, and wide names keep the columns aligned")
    func oddNames() throws {
        let pid = getpid()
        let odd = "/smtest-odd-\(pid)-a\nb\u{1b}[31m", wide = "/smtest-odd-\(pid)-共享内存", plain = "/smtest-odd-\(pid)-plain"
        for object in [odd, wide, plain] {
            #expect(FileManager.default.createFile(atPath: "/dev/shm" + object, contents: Data(count: 4096), attributes: [.posixPermissions: 0o600]))
        }
        defer { for object in [odd, wide, plain] { unlink("/dev/shm" + object) } }
        let listing = try Shm.run(["ls", "--backend", "posix"])
        #expect(listing.status == 0)
        #expect(!listing.output.contains("\u{1b}") && listing.output.contains("-a\\nb\\033[31m"), "\(listing.output)")
        let lines = listing.output.split(separator: "\n").filter { $0.contains("smtest-odd-\(pid)-") }
        #expect(lines.count == 3, "a name broke a row: \(listing.output)")
        // The SIZE column ends at the same terminal column on every row (共享内存 takes 8 columns, not 4).
        let ends = lines.map { line -> Int in
            let prefix = line.prefix { $0 != "K" }  // up to "4.0 KiB"
            return prefix.unicodeScalars.reduce(0) { $0 + ((0x4E00...0x9FFF).contains($1.value) ? 2 : 1) }
        }
        #expect(Set(ends).count == 1, "\(listing.output)")
        let stat = try Shm.run(["stat", "posix:" + odd])
        #expect(!stat.output.contains("\u{1b}") && stat.output.contains("a\\nb\\033[31m"))
    }

    @Test("shm --version")
    func version() throws {
        let result = try Shm.run(["--version"])
        #expect(result.status == 0)
        #expect(result.output.hasPrefix("shm 0.1.0"))
    }

    @Test("a FIFO planted at a posix name never blocks shm read or shm write", arguments: [["read"], ["write", "--string", "x"]])
    func plantedFIFO(command: [String]) throws {
        try Names.with("posix") { name in
            let path = "/dev/shm" + name.dropFirst("posix:".count)
            #expect(try ChildProcess.shell("setpriv --reuid=65534 --regid=65534 --clear-groups mkfifo -m 666 \(path)").status == 0)
            let result = try ChildProcess.run("/usr/bin/timeout", ["-s", "KILL", "10", Shm.path, command[0], name] + command.dropFirst())
            #expect(result.status == 1, "it hung or did not fail: \(result.status) \(result.error)")
            #expect(result.error.contains("a FIFO"), "\(result.error)")
        }
    }

    @Test("an installed shm bench needs neither the source tree nor a C compiler")
    func benchWithoutSources() throws {
        try withTemporaryDirectory { directory in
            let installed = try installShm(in: directory)
            let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Sources").path
            // The package's sources hidden under an empty tmpfs, and no cc on the PATH.
            let script = "mount -t tmpfs tmpfs \(sources) && cd / && PATH=/nonexistent \(installed) bench --quick --backends memfd --experiments lifecycle --json"
            let result = try ChildProcess.run("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script])
            #expect(result.status == 0, "\(result.error)")
            let report = try #require(try json(result.output) as? [String: Any])
            let measured = try #require(report["results"] as? [[String: Any]])
            #expect(measured.count == 1)
            #expect(((measured.first?["c"] as? [String: Any])?["median"] as? Double ?? 0) > 0)
        }
    }
}
