import Foundation
import Testing

/// `shm gc` removes exactly the orphans. It runs in IPC and mount namespaces of its own, with a private tmpfs on
/// /dev/shm, so it sees (and may remove) nothing of the machine's.
@Suite("shm gc")
struct GarbageCollectTests {
    @Test("gc removes orphans and nothing else: not attached ones, not live creators', not unknown, not other users' unless asked")
    func removesExactlyTheOrphans() throws {
        try withTemporaryDirectory { directory in
            let shm = directory + "/shm"
            try FileManager.default.copyItem(atPath: Shm.path, toPath: shm)
            chmod(shm, 0o755)
            let hold = try compileC(holdSource, named: "hold", in: directory)
            let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups"
            let script = """
                set -e
                mount -t tmpfs -o mode=1777 tmpfs /dev/shm
                keys() { ipcs -m | awk 'NR > 3 && NF >= 5 { print $1 }' | sort | tr '\\n' ' '; echo; }
                \(shm) create sysv:0x111 --size 4K >/dev/null
                \(shm) create posix:/orphan --size 4K >/dev/null
                \(shm) create sysv:0x222 --size 4K >/dev/null
                head -c 100 /dev/zero > /dev/shm/foreign
                \(nobody) \(shm) create sysv:0x333 --size 4K >/dev/null
                \(nobody) \(shm) create posix:/theirs --size 4K >/dev/null
                \(hold) 0x222 attach pause > attached.txt & attached=$!
                \(hold) 0x444 create-detach pause > alive.txt & alive=$!
                while [ ! -s attached.txt ] || [ ! -s alive.txt ]; do sleep 0.01; done
                echo "== dry"; \(shm) gc --dry-run
                echo "== keys after dry run"; keys
                echo "== gc"; \(shm) gc
                echo "== gc again"; \(shm) gc
                echo "== keys"; keys
                echo "== shm"; ls /dev/shm | tr '\\n' ' '; echo
                echo "== gc all users"; \(shm) gc --all-users
                echo "== keys"; keys
                echo "== shm"; ls /dev/shm | tr '\\n' ' '; echo
                kill $attached $alive
                wait
                """
            let result = try Command.run("/usr/bin/unshare", ["--ipc", "--mount", "--propagation", "private", "/bin/sh", "-c", "cd \(directory) && " + script])
            #expect(result.error.isEmpty, "\(result.error)")
            let sections = Dictionary(
                result.output.components(separatedBy: "== ").dropFirst().map { part -> (String, [String]) in
                    let lines = part.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                    return (lines[0], Array(lines.dropFirst().filter { !$0.isEmpty }))
                },
                uniquingKeysWith: { first, second in first + ["--"] + second })

            let dry = try #require(sections["dry"])
            #expect(dry.count == 2)
            #expect(dry.contains { $0.hasPrefix("would remove sysv:0x00000111 (4.0 KiB, owner root, creator ") })
            #expect(dry.contains { $0.hasPrefix("would remove posix:/orphan (4.0 KiB, owner root") })
            #expect(sections["keys after dry run"] == ["0x00000111 0x00000222 0x00000333 0x00000444 "])

            let gc = try #require(sections["gc"])
            #expect(gc.count == 2)
            #expect(gc.contains { $0.hasPrefix("removed sysv:0x00000111") })
            #expect(gc.contains { $0.hasPrefix("removed posix:/orphan") })
            #expect(sections["gc again"] == ["no orphans"])
            #expect(sections["keys"] == ["0x00000222 0x00000333 0x00000444 ", "--", "0x00000222 0x00000444 "])
            #expect(sections["shm"] == ["foreign theirs ", "--", "foreign "])
            let all = try #require(sections["gc all users"])
            #expect(all.count == 2)
            #expect(all.contains { $0.hasPrefix("removed sysv:0x00000333 (4.0 KiB, owner nobody") })
            #expect(all.contains { $0.hasPrefix("removed posix:/theirs (4.0 KiB, owner nobody") })
        }
    }
}
