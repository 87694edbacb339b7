import Foundation
import TestSupport
import Testing

/// `shm` against the kernel's own reports and against programs that do not use SharedMemory.
@Suite("shm and other programs")
struct InteropTests {
    /// One row of `ipcs -m`: key, shmid, owner, perms, bytes, nattch (and status).
    struct IPCSRow: Hashable {
        var key: String, id: Int, owner: String, perms: String, bytes: Int, nattch: Int
    }

    static func ipcs() throws -> [Int: IPCSRow] {
        var rows: [Int: IPCSRow] = [:]
        for line in try ChildProcess.shell("ipcs -m").output.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard f.count >= 6, f[0].hasPrefix("0x"), let id = Int(f[1]), let bytes = Int(f[4]), let nattch = Int(f[5]) else { continue }
            rows[id] = IPCSRow(key: f[0], id: id, owner: f[2], perms: f[3], bytes: bytes, nattch: nattch)
        }
        return rows
    }

    @Test("shm ls agrees with ipcs -m on every segment, other programs' and removed ones included")
    func lsAgreesWithIPCS() throws {
        // Segments of three kinds: made by ipcmk, made by shm, and one marked for removal but still attached.
        let made = try ChildProcess.shell("ipcmk -M 12345 -p 0640").output
        let foreignID = try #require(Int(made.split(separator: ":").last!.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { _ = try? ChildProcess.shell("ipcrm -m \(foreignID)") }
        let ours = Names.unique("sysv")
        defer { _ = try? Shm.run(["rm", ours]) }
        #expect(try Shm.run(["create", ours, "--size", "4K", "--mode", "0604"]).status == 0)
        let oursID = try #require((try json(try Shm.run(["stat", ours, "--json"]).output) as? [String: Any])?["id"] as? Int)
        try withTemporaryDirectory { directory in
            let hold = try compileC(holdSource, named: "hold", in: directory)
            let holder = try ChildProcess(hold, ["0x5c5c\(String(format: "%04x", getpid() & 0xffff))", "create-attach-remove"], input: .open)
            defer { holder.closeInput(); holder.finish() }
            let removedID = try #require(Int(holder.line()))

            // Compare only segments that did not change while we looked (other tests run alongside).
            let before = try Self.ipcs()
            let listed = try #require(try json(try Shm.run(["ls", "--backend", "sysv", "--json"]).output) as? [[String: Any]])
            let after = try Self.ipcs()
            let stable = before.filter { after[$0.key] == $0.value }
            for id in [foreignID, removedID, oursID] { #expect(stable[id] != nil, "segment \(id) missing from ipcs") }
            var compared = 0
            for (id, row) in stable {
                guard let entry = listed.first(where: { $0["id"] as? Int == id }) else {
                    Issue.record("shm ls misses segment \(id)")
                    continue
                }
                #expect(entry["key"] as? String == row.key, "segment \(id)")
                #expect(entry["size"] as? Int == row.bytes, "segment \(id)")
                #expect(entry["attachCount"] as? Int == row.nattch, "segment \(id)")
                #expect(entry["owner"] as? String == row.owner, "segment \(id)")
                #expect((entry["mode"] as? String).map { String(Int($0, radix: 8)!, radix: 8) } == String(Int(row.perms, radix: 8)! & 0o777, radix: 8), "segment \(id)")
                compared += 1
            }
            #expect(compared >= 3)
            let removed = try #require(listed.first { $0["id"] as? Int == removedID })
            #expect(removed["markedForRemoval"] as? Bool == true)
            #expect(removed["name"] as? String == "sysv-id:\(removedID)")
            #expect(removed["attachCount"] as? Int == 1)
            #expect(stable[oursID]?.perms == "604")
            let foreign = try #require(listed.first { $0["id"] as? Int == foreignID })
            #expect(foreign["mode"] as? String == "0640")
            #expect(foreign["size"] as? Int == 12345)
            let table = try Shm.run(["ls", "--backend", "sysv"]).output
            #expect(table.contains("sysv-id:\(removedID)") && table.contains("removed"))
        }
    }

    @Test("objects made by C programs appear in shm ls, and shm reads and removes them; C reads what shm wrote")
    func cPrograms() throws {
        try withTemporaryDirectory { directory in
            let posixName = "/shmtest-c-\(getpid())"
            let key = String(format: "0x5c7c%04x", getpid() & 0xffff)
            defer { shm_unlink(posixName); _ = try? Shm.run(["rm", "sysv:\(key)"]) }
            let make = try compileC(makeSource, named: "make", in: directory)
            let made = try ChildProcess.run(make, [posixName, key])
            try #require(made.status == 0, "\(made.error)")

            let listed = try #require(try json(try Shm.run(["ls", "--json"]).output) as? [[String: Any]])
            let posix = try #require(listed.first { $0["name"] as? String == "posix:\(posixName)" })
            #expect(posix["backend"] as? String == "posix")
            #expect(posix["size"] as? Int == 5000)
            #expect(posix["mode"] as? String == "0640")
            #expect(posix["uid"] as? Int == Int(getuid()))
            #expect(posix["creatorPID"] is NSNull)  // not made by SharedMemory: unknown, and never collected
            let sysv = try #require(listed.first { $0["key"] as? String == key })
            #expect(sysv["size"] as? Int == 6000)
            #expect(sysv["mode"] as? String == "0600")
            #expect(sysv["creatorPID"] as? Int != nil)

            #expect(try Shm.run(["read", "posix:\(posixName)", "--count", "6"]).output == "from c")
            #expect(try Shm.run(["read", "sysv:\(key)", "--count", "6"]).output == "from c")
            #expect(try Shm.run(["rm", "posix:\(posixName)", "sysv:\(key)"]).status == 0)
            #expect(shm_open(posixName, O_RDONLY, 0) == -1)

            // The other way: shm creates and writes, C reads.
            let name = Names.unique("posix")
            defer { _ = try? Shm.run(["rm", name]) }
            #expect(try Shm.run(["create", name, "--size", "4K"]).status == 0)
            #expect(try Shm.run(["write", name, "--string", "from shm"]).status == 0)
            let read = try compileC(readSource, named: "read", in: directory)
            #expect(try ChildProcess.run(read, [String(name.dropFirst("posix:".count))]).output == "from shm\n")
            #expect(Set(try ChildProcess.shell("ls /dev/shm").output.split(separator: "\n")).contains(Substring(name.dropFirst("posix:/".count))))
        }
    }
}

/// `hold KEY MODE [pause]`, for segments in known states:
/// - `create-attach-remove`: creates a segment, attaches it and marks it for removal (attached, `SHM_DEST`);
/// - `attach`: attaches an existing segment;
/// - `create-detach`: creates a segment and detaches it (no attachments, creator alive).
/// It prints the id, then waits: until standard input closes, or with `pause` until it is killed.
let holdSource = """
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <unistd.h>
    #include <sys/shm.h>
    int main(int argc, char **argv) {
        key_t key = (key_t)strtoul(argv[1], NULL, 16);
        int creating = strcmp(argv[2], "attach") != 0;
        int id = shmget(key, creating ? 4096 : 0, creating ? IPC_CREAT | IPC_EXCL | 0600 : 0);
        if (id < 0) { perror("shmget"); return 1; }
        void *p = shmat(id, NULL, 0);
        if (p == (void *)-1) { perror("shmat"); return 1; }
        if (strcmp(argv[2], "create-attach-remove") == 0 && shmctl(id, IPC_RMID, NULL) < 0) { perror("shmctl"); return 1; }
        if (strcmp(argv[2], "create-detach") == 0) shmdt(p);
        printf("%d\\n", id);
        fflush(stdout);
        if (argc > 3) { pause(); return 0; }
        char c;
        while (read(0, &c, 1) > 0) {}
        return 0;
    }
    """

/// `make /NAME KEY`: a POSIX object of 5000 bytes, mode 0640, and a System V segment of 6000 bytes, each
/// holding "from c".
let makeSource = """
    #include <fcntl.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    #include <sys/shm.h>
    #include <sys/stat.h>
    #include <unistd.h>
    int main(int argc, char **argv) {
        int fd = shm_open(argv[1], O_RDWR | O_CREAT | O_EXCL, 0640);
        if (fd < 0 || fchmod(fd, 0640) < 0 || ftruncate(fd, 5000) < 0) { perror("posix"); return 1; }
        char *p = mmap(NULL, 5000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        strcpy(p, "from c");
        int id = shmget((key_t)strtoul(argv[2], NULL, 16), 6000, IPC_CREAT | IPC_EXCL | 0600);
        if (id < 0) { perror("shmget"); return 1; }
        char *q = shmat(id, NULL, 0);
        if (q == (void *)-1) { perror("shmat"); return 1; }
        strcpy(q, "from c");
        return 0;
    }
    """

/// `read /NAME`: prints the C string at the start of a POSIX object.
let readSource = """
    #include <fcntl.h>
    #include <stdio.h>
    #include <sys/mman.h>
    int main(int argc, char **argv) {
        int fd = shm_open(argv[1], O_RDONLY, 0);
        if (fd < 0) { perror("shm_open"); return 1; }
        char *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        printf("%s\\n", p);
        return 0;
    }
    """
