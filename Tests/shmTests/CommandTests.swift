import Foundation
import TestSupport
import Testing

@Suite("shm commands")
struct CommandTests {
    @Test("create, write, read, stat, resize and rm, on every backend", arguments: ["sysv", "posix", "file"])
    func lifecycle(backend: String) throws {
        try Names.with(backend) { name in
            var result = try Shm.run(["create", name, "--size", "64K", "--mode", "0640"])
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.hasPrefix("created \(name) (64.0 KiB, mode 0640)"))

            result = try Shm.run(["write", name, "--string", "hello"])
            #expect(result.status == 0, "\(result.error)")
            result = try Shm.run(["write", name, "--offset", "1K"], input: Data([0, 1, 2, 255]))
            #expect(result.status == 0, "\(result.error)")

            #expect(try Shm.run(["read", name, "--count", "5"]).output == "hello")
            result = try Shm.run(["read", name, "--offset", "1024", "--count", "20", "--hex"])
            #expect(result.output == """
                00000400  00 01 02 ff 00 00 00 00  00 00 00 00 00 00 00 00  |................|
                00000410  00 00 00 00                                       |....|

                """)
            let all = try Shm.run(["read", name]).outputBytes
            #expect(all.count == 65536)
            #expect(Array(all[1024..<1028]) == [0, 1, 2, 255])

            let stat = try #require(try json(try Shm.run(["stat", name, "--json"]).output) as? [String: Any])
            #expect(stat["name"] as? String == name)
            #expect(stat["backend"] as? String == backend)
            #expect(stat["size"] as? Int == 65536)
            #expect(stat["mode"] as? String == "0640")
            #expect(stat["uid"] as? Int == Int(getuid()))
            #expect(stat["attachCount"] as? Int == 0)
            #expect(stat["creatorPID"] is Int)
            #expect(stat["creatorAlive"] as? Bool == false)
            #expect((stat["id"] is NSNull) == (backend != "sysv"))
            let human = try Shm.run(["stat", name]).output
            #expect(human.contains("size:") && human.contains("65536 (64.0 KiB)"))

            result = try Shm.run(["resize", name, "--size", "1MiB"])
            if backend == "sysv" {
                #expect(result.status != 0)
                #expect(result.error.contains("cannot be resized"))
            } else {
                #expect(result.status == 0, "\(result.error)")
                #expect(result.output == "resized \(name) from 64.0 KiB to 1.0 MiB\n")
                #expect(try Shm.run(["read", name, "--count", "5"]).output == "hello")
            }

            result = try Shm.run(["rm", name])
            #expect(result.status == 0)
            #expect(result.output == "removed \(name)\n")
            #expect(try Shm.run(["stat", name]).status != 0)
        }
    }

    @Test("create --open-existing opens what is there, and never resizes it")
    func openExisting() throws {
        try Names.with("posix") { name in
            #expect(try Shm.run(["create", name, "--size", "8K"]).status == 0)
            #expect(try Shm.run(["write", name, "--string", "keep"]).status == 0)
            let again = try Shm.run(["create", name, "--size", "4K", "--open-existing"])
            #expect(again.output.hasPrefix("ready \(name) (8.0 KiB"))
            #expect(try Shm.run(["read", name, "--count", "4"]).output == "keep")
            #expect(try Shm.run(["create", name, "--size", "16K", "--open-existing"]).status != 0)
        }
    }

    @Test("sizes take units", arguments: [("4096", 4096), ("64K", 65536), ("64KiB", 65536), ("1MiB", 1 << 20), ("2G", 2 << 30), ("1.5K", 1536), ("3KB", 3000), ("1M", 1 << 20)])
    func sizes(text: String, bytes: Int) throws {
        try Names.with("posix") { name in
            #expect(try Shm.run(["create", name, "--size", text]).status == 0)
            let stat = try #require(try json(try Shm.run(["stat", name, "--json"]).output) as? [String: Any])
            #expect(stat["size"] as? Int == bytes)
        }
    }

    @Test("rm reports each region and fails if any failed")
    func removeMany() throws {
        let a = Names.unique("posix"), b = Names.unique("sysv"), missing = Names.unique("posix")
        #expect(try Shm.run(["create", a, "--size", "4K"]).status == 0)
        #expect(try Shm.run(["create", b, "--size", "4K"]).status == 0)
        let result = try Shm.run(["rm", a, missing, b])
        #expect(result.status == 1)
        #expect(result.output == "removed \(a)\nremoved \(b)\n")
        #expect(result.error.hasPrefix("shm: error: \(missing): shm_unlink failed"))
        #expect(result.error.contains("nothing to remove") && !result.error.contains("create it first"), "\(result.error)")
        #expect(result.error.split(separator: "\n").count == 1)
    }

    @Test("limits shows the System V sysctls, /dev/shm and huge pages")
    func limits() throws {
        let text = try Shm.run(["limits"]).output
        for expected in ["shmmax", "shmall", "shmmni", "/dev/shm", "Huge pages", "reserved"] {
            #expect(text.contains(expected))
        }
        let values = try #require(try json(try Shm.run(["limits", "--json"]).output) as? [String: Any])
        let shmmni = try String(contentsOfFile: "/proc/sys/kernel/shmmni", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(values["shmmni"] as? Int == Int(shmmni))
        #expect(values["devShmSize"] is Int)
        #expect(values["hugePagesTotal"] is Int)
    }

    @Test("every kind of failure is one line on standard error, starting shm: error:, and says something different")
    func errors() throws {
        try Names.with("posix") { name in
            let sysv = Names.unique("sysv")
            defer { _ = try? Shm.run(["rm", sysv]) }
            #expect(try Shm.run(["create", name, "--size", "4K", "--mode", "0644"]).status == 0)
            #expect(try Shm.run(["create", sysv, "--size", "4K"]).status == 0)
            let cases: [(String, ChildProcess.Result)] = [
                ("not found", try Shm.run(["stat", Names.unique("posix")])),
                ("already exists", try Shm.run(["create", name, "--size", "4K"])),
                ("permission denied", try runAsNobody(["resize", name, "--size", "8K"])),
                ("read-only", try runAsNobody(["write", name, "--string", "x"])),
                ("out of bounds", try Shm.run(["write", name, "--offset", "4096", "--string", "x"])),
                ("unsupported", try Shm.run(["resize", sysv, "--size", "8K"])),
                ("invalid name", try Shm.run(["stat", "posix:nope"])),
                ("invalid size", try Shm.run(["create", name, "--size", "12Q"])),
                ("invalid mode", try Shm.run(["create", name, "--size", "4K", "--mode", "999"])),
            ]
            let keywords = ["no region has this name", "already exists", "do not let this user", "may read the region but not write",
                            "do not fit", "cannot be resized", "not a valid region name", "is not a size", "is not a mode"]
            for ((label, result), keyword) in zip(cases, keywords) {
                #expect(result.status != 0, "\(label)")
                #expect(result.error.hasPrefix("shm: error: "), "\(label): \(result.error)")
                #expect(result.error.split(separator: "\n").count == 1, "\(label): \(result.error)")
                #expect(result.error.contains(keyword), "\(label): \(result.error)")
                #expect(!result.error.contains("Fatal error") && !result.error.contains("Stack"), "\(label)")
            }
            #expect(Set(cases.map(\.1.error)).count == cases.count)
            // Bad input exits 64 (EX_USAGE); a failed operation exits 1.
            for (label, result) in cases {
                let badInput = ["invalid name", "invalid size", "invalid mode"].contains(label)
                #expect(result.status == (badInput ? 64 : 1), "\(label) exited \(result.status)")
            }
            // Nothing was changed by the failures.
            let stat = try #require(try json(try Shm.run(["stat", name, "--json"]).output) as? [String: Any])
            #expect(stat["size"] as? Int == 4096)
            #expect(try Shm.run(["read", name, "--count", "1", "--hex"]).output.hasPrefix("00000000  00 "))
        }
    }

    @Test("--help exits 0 and prints to standard output")
    func help() throws {
        let result = try Shm.run(["--help"])
        #expect(result.status == 0)
        #expect(result.output.contains("USAGE: shm <subcommand>"))
        #expect(try Shm.run(["gc", "--help"]).output.contains("--dry-run"))
    }
}
