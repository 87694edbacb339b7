import Foundation
import TestSupport
import Testing

/// `shm gc` removes exactly the temporary regions whose creator is gone, and keeps everything meant to persist,
/// whoever made it. It runs in IPC and mount namespaces of its own, with a private tmpfs on /dev/shm, so it sees
/// (and may remove) nothing of the machine's.
@Suite("shm gc")
struct GarbageCollectTests {
    /// The Python with `sysv_ipc` and `posix_ipc` that .ci/run installs into a throwaway venv.
    static let python = ProcessInfo.processInfo.environment["SHM_TEST_PYTHON"]

    @Test("gc removes temporary regions whose creator is gone, and keeps what ipcmk, sysv_ipc, posix_ipc and shm create made",
          .enabled(if: python != nil, "set SHM_TEST_PYTHON to a Python with sysv_ipc and posix_ipc (.ci/run does)"))
    func keepsWhatShouldPersist() throws {
        try withTemporaryDirectory { directory in
            let shm = try installShm(in: directory)
            let probe = URL(fileURLWithPath: Shm.path).deletingLastPathComponent().appendingPathComponent("RegionProbe").path
            let hold = try compileC(holdSource, named: "hold", in: directory)
            let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups"
            let python = Self.python!
            let script = """
                set -e
                mount -t tmpfs -o mode=1777 tmpfs /dev/shm
                keys() { ipcs -m | awk 'NR > 3 && NF >= 5 { print $1 }' | sort | tr '\\n' ' '; echo; }
                ipcmk -M 4096 > /dev/null
                \(python) -c "import sysv_ipc; sysv_ipc.SharedMemory(0x555, sysv_ipc.IPC_CREX, size=4096)"
                \(python) -c "import posix_ipc; posix_ipc.SharedMemory('/pyobject', posix_ipc.O_CREX, size=4096)"
                \(shm) create sysv:0x111 --size 4K > /dev/null
                \(shm) create posix:/kept --size 4K > /dev/null
                \(shm) create sysv:0x222 --size 4K --temporary > /dev/null
                \(shm) create posix:/temporary --size 4K --temporary > /dev/null
                \(shm) create file:\(directory)/temporary-file --size 4K --temporary > /dev/null
                \(shm) create sysv:0x333 --size 4K --temporary > /dev/null
                \(shm) create posix:/stale --size 4K --temporary > /dev/null
                rm /dev/shm/stale
                \(nobody) \(shm) create posix:/theirs --size 4K --temporary > /dev/null
                \(hold) 0x333 attach pause > attached.txt & attached=$!
                \(probe) create-hold posix:/alive 4096 00 process > alive.txt & alive=$!
                \(probe) create-hold sysv:0x444 4096 00 process > killed.txt & killed=$!
                while [ ! -s attached.txt ] || [ ! -s alive.txt ] || [ ! -s killed.txt ]; do sleep 0.01; done
                kill -9 $killed; wait $killed 2> /dev/null || true
                echo "== dry"; \(shm) gc --dry-run
                echo "== keys after dry run"; keys
                echo "== gc"; \(shm) gc
                echo "== keys"; keys
                echo "== shm"; ls -A /dev/shm | tr '\\n' ' '; echo
                echo "== file"; ls \(directory) | grep temporary || true
                echo "== gc again"; \(shm) gc | head -1
                echo "== nobody's gc"; \(nobody) \(shm) gc | head -1
                echo "== shm"; ls -A /dev/shm | tr '\\n' ' '; echo
                kill $attached $alive
                wait
                echo "== persistent too"; \(shm) gc --remove-persistent-too | grep -c '^removed persistent '
                echo "== keys"; keys
                echo "== shm"; ls -A /dev/shm | tr '\\n' ' '; echo
                """
            let result = try ChildProcess.run("/usr/bin/unshare", ["--ipc", "--mount", "--propagation", "private", "/bin/sh", "-c", "cd \(directory) && " + script])
            #expect(result.error.isEmpty, "\(result.error)")
            let sections = Dictionary(
                result.output.components(separatedBy: "== ").dropFirst().map { part -> (String, [String]) in
                    let lines = part.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                    return (lines[0], Array(lines.dropFirst().filter { !$0.isEmpty }))
                },
                uniquingKeysWith: { first, second in first + ["--"] + second })

            let dry = try #require(sections["dry"])
            let wouldRemove = dry.filter { $0.hasPrefix("would remove ") }
            #expect(wouldRemove.count == 4, "\(dry)")
            for name in ["sysv:0x00000222", "posix:/temporary", "file:\(directory)/temporary-file", "sysv:0x00000444"] {
                #expect(wouldRemove.contains { $0.hasPrefix("would remove \(name) (4.0 KiB, owner root, creator ") }, "\(name) in \(dry)")
            }
            // Kept, and said so with the command that would remove each: ipcmk's, sysv_ipc's and shm create's.
            let keptAt = try #require(dry.firstIndex { $0.hasPrefix("kept: unattached, creator gone, not marked temporary") })
            let kept = dry[(keptAt + 1)...]
            #expect(kept.count == 4, "\(dry)")
            #expect(kept.contains { $0.hasPrefix("  sysv:0x00000555 ") && $0.contains("shm rm sysv-id:") })
            #expect(kept.contains { $0.hasPrefix("  sysv:0x00000111 ") })
            #expect(kept.contains { $0.hasPrefix("  posix:/kept ") && $0.hasSuffix("shm rm posix:/kept") })
            let keysBefore = try #require(sections["keys after dry run"]?.first)
            #expect(keysBefore.split(separator: " ").count == 6)  // ipcmk's, 0x111, 0x222, 0x333, 0x444, 0x555

            let gc = try #require(sections["gc"])
            #expect(gc.filter { $0.hasPrefix("removed ") && !$0.hasPrefix("removed the lifetime record") }.count == 4, "\(gc)")
            #expect(gc.contains("removed the lifetime record of posix:/stale, which no longer exists"), "\(gc)")
            let keys = try #require(sections["keys"]).filter { $0 != "--" }
            let after = keys[0].split(separator: " ")
            #expect(after.count == 4 && after.contains("0x00000111") && after.contains("0x00000333") && after.contains("0x00000555"), "\(keys)")
            let shmAfter = try #require(sections["shm"]).filter { $0 != "--" }
            #expect(shmAfter[0] == ".sharedmemory-0 .sharedmemory-65534 alive kept pyobject theirs ", "\(shmAfter)")
            #expect(sections["file"] == nil || sections["file"]!.isEmpty, "the temporary file region was not removed")
            #expect(sections["gc again"] == ["no temporary regions to remove"])
            #expect(sections["nobody's gc"]?.first?.hasPrefix("removed posix:/theirs (4.0 KiB, owner nobody") == true, "\(String(describing: sections["nobody's gc"]))")
            #expect(shmAfter[1] == ".sharedmemory-0 alive kept pyobject ", "\(shmAfter)")

            // Only on the loud flag: the persistent ones go too (ipcmk's, 0x111, 0x555, posix:/kept; and the
            // temporary 0x333 and posix:/alive, now unattached with their creators gone, as temporary ones).
            #expect(sections["persistent too"] == ["4"])
            #expect(sections["keys"]?.last == "--", "segments left: \(keys)")  // the last listing is empty
            #expect(shmAfter.last == "pyobject ")
        }
    }

    /// A record is input: its name is printed escaped, and a record whose name is not the region it was written for
    /// (its file names that region's device and inode) is "not believed", never "no longer exists", and the region
    /// stays. Before, gc said "removed the lifetime record of posix:/root-keep\\n, which no longer exists" of a
    /// region that existed.
    @Test("gc says a forged record was not believed, escapes the name it gives, and keeps the region")
    func forgedRecordName() throws {
        try withTemporaryDirectory { directory in
            let shm = try installShm(in: directory)
            let script = """
                set -e
                mount -t tmpfs -o mode=1777 tmpfs /dev/shm
                \(shm) create posix:/root-keep --size 4K > /dev/null
                mkdir -m 0700 /dev/shm/.sharedmemory-$(id -u)
                file=/dev/shm/.sharedmemory-$(id -u)/posix-$(stat -c '%d-%i' /dev/shm/root-keep)
                printf 'sharedmemory-lifetime 1\\ncreator 999999 1\\nborn 0 0\\nname posix:/root-keep\\n' > "$file"
                \(shm) create posix:/gone --size 4K --temporary > /dev/null
                rm /dev/shm/gone
                echo "== gc"; \(shm) gc
                echo "== shm"; ls -A /dev/shm | tr '\\n' ' '; echo
                """
            let result = try ChildProcess.run("/usr/bin/unshare", ["--user", "--map-root-user", "--ipc", "--mount", "--propagation", "private", "/bin/sh", "-c", "cd \(directory) && " + script])
            #expect(result.status == 0, "\(result.error)")
            let lines = result.output.split(separator: "\n").map(String.init)
            #expect(lines.contains("removed a lifetime record that was not believed: it names posix:/root-keep\\n, which is not the region it was written for (that region is kept as it is)"), "\(lines)")
            #expect(lines.contains("removed the lifetime record of posix:/gone, which no longer exists"), "\(lines)")
            #expect(!lines.contains { $0.contains("root-keep") && $0.contains("no longer exists") })
            #expect(lines.last == "root-keep ", "\(lines)")
        }
    }
}
