import CSharedMemory
import Foundation
import SystemPackage
import Testing
@testable import SharedMemory

/// Another local user (uid 65534) attacking a root process: squatting names, planting FIFOs, sockets,
/// directories, hard links and symbolic links, forging records; and processes racing a removal. Each attack is
/// done by a real second process as that user, the way an attacker would.
@Suite("Another local user")
struct LocalUserTests {
    /// Runs a shell script as uid and gid 65534.
    @discardableResult
    static func asNobody(_ script: String) throws -> String {
        let result = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c", script])
        #expect(result.status == 0, "as nobody: \(script) exited \(result.status)")
        return result.output
    }

    @Test("a System V key squatted by another user and given to root is foreign, even with the demands met on paper")
    func squattedSystemVKey() throws {
        try Names.with(.systemV) { name throws in
            #expect(try Probe.run(["create", name.description, "4096", "600"], uid: 65534) == "ok 4096")
            #expect(try Probe.run(["write", name.description, "0", "5371756174"], uid: 65534) == "ok")
            #expect(try Probe.run(["chown", name.description, "0", "0"], uid: 65534) == "ok")
            let info = try SharedMemory.info(name)
            #expect(info.ownerUID == 0 && info.creatorUID == 65534 && info.permissions == [.ownerReadWrite])

            let error = expectError(.foreign) { try SharedMemory.openOrCreate(name, size: 4096) }
            #expect(error?.reason.contains("created by uid 65534") == true, "\(String(describing: error))")
            expectError(.foreign) { try SharedMemory.open(name, options: .init(requiredOwner: 0)) }
            expectError(.foreign) { try SharedMemory.open(name, options: .init(requirePrivateMode: true)) }
            // The squatter could still read what root would have written: it keeps its creator's rights.
            #expect(try Probe.run(["read", name.description, "0", "5"], uid: 65534) == "ok 5371756174")
        }
    }

    static let plants: [(Backend, String)] = [
        (.posix, "fifo"), (.posix, "directory"), (.posix, "socket"), (.posix, "symlink"),
        (.file, "fifo"), (.file, "directory"), (.file, "socket"), (.file, "symlink"),
    ]

    @Test("a FIFO, directory, socket or symbolic link planted at a name is foreign for every access, and never blocks", arguments: plants)
    func plantedAtName(backend: Backend, kind: String) throws {
        try Names.with(backend) { name throws in
            let path = path(of: name)
            defer { unlink(path); rmdir(path) }
            switch kind {
            case "fifo": try Self.asNobody("mkfifo -m 666 \(path)")
            case "directory": try Self.asNobody("mkdir -m 777 \(path)")
            case "socket": try Self.asNobody("python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('\(path)')\"")
            default: try Self.asNobody("ln -s /etc/passwd \(path)")
            }
            // In a second process under a time limit: a FIFO that blocked the open would hang it.
            for access in ["ro", "rw"] {
                let answer = try Probe.run(["open", name.description, access], timeout: 10)
                #expect(answer.hasPrefix("error foreign"), "open \(access) of a \(kind): \(answer)")
            }
            let created = expectError(.foreign) { try SharedMemory.create(name, size: 4096) }
            #expect(created?.reason.contains("open it instead") == false)
            expectError(.foreign) { try SharedMemory.openOrCreate(name, size: 4096) }
            expectError(.foreign) { try SharedMemory.info(name) }
        }
    }

    @Test("a hard link another user made to a public object is not adopted as a private one", arguments: [Backend.posix, .file])
    func hardLink(backend: Backend) throws {
        try Names.with(backend) { publicName throws in
            try Names.with(backend) { privateName throws in
                let shared = try SharedMemory.create(publicName, size: 4096, options: .init(permissions: FilePermissions(rawValue: 0o666)))
                try shared.set(bytes: Array("public".utf8), at: 0)
                try Self.asNobody("ln \(path(of: publicName)) \(path(of: privateName))")

                let error = expectError(.foreign) { try SharedMemory.openOrCreate(privateName, size: 4096) }
                #expect(error?.reason.contains("hard links") == true)
                expectError(.foreign) { try SharedMemory.open(privateName) }
                let linked = try SharedMemory.open(privateName, options: .init(acceptHardLinks: true))
                #expect(try linked.get(count: 6, at: 0) == Array("public".utf8))
            }
        }
    }

    @Test("openOrCreate adopts no mode wider than it would create with", arguments: Backend.named)
    func widerMode(backend: Backend) throws {
        try Names.with(backend) { name in
            _ = try SharedMemory.create(name, size: 4096, options: .init(permissions: FilePermissions(rawValue: 0o644)))
            let error = expectError(.foreign) { try SharedMemory.openOrCreate(name, size: 4096) }
            #expect(error?.reason.contains("gives more access than the 0600") == true, "\(String(describing: error))")
            _ = try SharedMemory.openOrCreate(name, size: 4096, options: .init(permissions: FilePermissions(rawValue: 0o644)))
            _ = try SharedMemory.openOrCreate(name, size: 4096, options: .init(permissions: FilePermissions(rawValue: 0o666)))
        }
    }

    @Test("a creator record another user could write is not believed", arguments: [Backend.posix, .file])
    func forgedCreator(backend: Backend) throws {
        try Names.with(backend) { name throws in
            let region = try SharedMemory.create(name, size: 4096, options: .init(permissions: FilePermissions(rawValue: 0o666)))
            try Self.asNobody("python3 -c \"import os; os.setxattr('\(path(of: name))', 'user.sharedmemory.creator', b'1:0')\"")
            for info in [try SharedMemory.info(name), try region.info()] {
                #expect(info.creatorPID == nil, "a record anyone could write was believed: \(info)")
                #expect(info.creatorIsAlive == nil)
            }
            #expect(!(try SharedMemory.orphans(includingOtherUsers: true)).contains { $0.name == name })
            // On an object only its owner may write, the record is the library's own and is believed.
            try region.setPermissions([.ownerReadWrite])
            #expect(try SharedMemory.info(name).creatorPID == 1)
        }
    }

    @Test("remove() never unlinks an object that replaced its own under the name (a racing process, at least 4 s and 300 tries)", arguments: [Backend.posix, .file])
    func removeRace(backend: Backend) throws {
        let name = Names.unique(backend)
        defer { Names.cleanUp(name) }
        // At least 4 s and 300 tries of the remover, the replacer racing it until it is done.
        let stop = "/tmp/smtest-race-stop-\(getpid())-\(backend)"
        defer { unlink(stop) }
        let replacer = try Probe.start(["race-replace", name.description, "4", "4096", stop])
        let remover = try Probe.start(["race-remove", name.description, "4", "4096", "300"])
        let removed = remover.finish().lastLine.split(separator: " ")
        _ = FileManager.default.createFile(atPath: stop, contents: nil)
        let replaced = replacer.finish().lastLine.split(separator: " ")
        try #require(replaced.count == 3 && removed.count >= 3, "\(replaced) \(removed)")
        // The documented limit: a successor left under a random name when a third object took the name in the
        // same instant. It is not unlinked: it is there, and the error named it. Clean it up.
        let directory = URL(fileURLWithPath: path(of: name)).deletingLastPathComponent().path
        for aside in removed.dropFirst(3) {
            #expect(unlink(directory + "/" + aside) == 0, "the displaced successor \(aside) is not where the error said")
        }
        #expect(Int(replaced[1])! > 100 && Int(removed[2])! > 100, "the race was not run: \(replaced), \(removed)")
        #expect(replaced[2] == "0", "\(replaced[2]) objects were unlinked by a process that did not hold them")
        print("removeRace \(backend): \(replaced[1]) replacements, \(removed[2]) creates and removes, \(removed.count - 3) successors displaced, 0 unlinked")
    }

    @Test("a create that fails on a full file system backs out only what it made (a racing process, at least 4 s and 300 tries)")
    func backOutRace() throws {
        let name = "posix:/smtest-backout-\(getpid())"
        let script = """
            mount -t tmpfs -o size=64k tmpfs /dev/shm
            \(Probe.path) race-replace \(name) 4 4096 stop > replace.txt &
            \(Probe.path) race-remove \(name) 4 1048576 300 > remove.txt
            touch stop
            wait
            cat replace.txt remove.txt
            """
        let directory = "/tmp/smtest-backout-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try run("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", "cd \(directory) && " + script])
        let lines = result.output.split(separator: "\n").map { $0.split(separator: " ") }
        try #require(lines.count == 2 && lines.allSatisfy { $0.first == "ok" }, "\(result.output)")
        #expect(Int(lines[0][1])! > 100 && Int(lines[1][1])! > 100, "the race was not run: \(result.output)")
        #expect(lines[1][2] == "0", "a 1 MiB create fit in a 64 KiB /dev/shm")
        #expect(lines[0][2] == "0", "\(lines[0][2]) objects were unlinked by a failing create that did not make them")
    }

    @Test("a file: path through a symbolic link someone planted is foreign: nothing is created or removed where it points")
    func linkInPath() throws {
        let secret = "/tmp/smtest-secret-\(getpid())", link = "/tmp/smtest-link-\(getpid())"
        try FileManager.default.createDirectory(atPath: secret, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: secret); unlink(link) }
        try Self.asNobody("ln -s \(secret) \(link)")
        let name = try RegionName("file:\(link)/region")
        let error = expectError(.foreign) { try SharedMemory.create(name, size: 4096) }
        #expect(error?.reason.contains("\(link) is a symbolic link") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: secret + "/region"))

        #expect(FileManager.default.createFile(atPath: secret + "/region", contents: Data(count: 4096)))
        expectError(.foreign) { try SharedMemory.remove(name) }
        expectError(.foreign) { try SharedMemory.open(name) }
        expectError(.foreign) { try SharedMemory.info(name) }
        #expect(FileManager.default.fileExists(atPath: secret + "/region"))
    }

    @Test("openOrCreate waits for a racing creator to size the object, rather than fail", arguments: [Backend.posix, .file])
    func waitsForCreator(backend: Backend) throws {
        try Names.with(backend) { name in
            let fd = open(path(of: name), O_CREAT | O_EXCL | O_RDWR, 0o600)
            try #require(fd >= 0)
            let sizer = Thread { usleep(100_000); ftruncate(fd, 8192); close(fd) }
            sizer.start()
            let region = try SharedMemory.openOrCreate(name, size: 4096)
            #expect(region.size == 8192)
        }
    }

    @Test("removing a System V key that another process removes at the same moment is notFound")
    func systemVRemoveRace() throws {
        try Names.with(.systemV) { name in
            _ = try SharedMemory.create(name, size: 4096)
            _ = injecting(["shmctl(IPC_RMID)": [.invalidArgument]]) {
                expectError(.notFound) { try SharedMemory.remove(name) }
            }
        }
    }

    @Test("a received region larger than maximumSize, an O_PATH descriptor or a sysfs file is foreign, and nothing is mapped")
    func receiveRefuses() throws {
        let file = "/tmp/smtest-sparse-\(getpid())"
        defer { unlink(file) }
        let fd = open(file, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, 1 << 40) == 0)  // 1 TiB, sparse: it costs the sender nothing
        let path = open(file, CSM_O_PATH | O_CLOEXEC)
        defer { close(path) }
        let sysfs = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC)
        defer { close(sysfs) }
        for (descriptor, what) in [(fd, "larger than physical memory"), (path, "O_PATH"), (sysfs, "sysfs")] where descriptor >= 0 {
            let (a, b) = try socketPair()
            defer { try? a.close(); try? b.close() }
            try #require(csmSend(a.rawValue, descriptor))
            let error = expectError(.foreign) { try SharedMemory.receive(from: b, options: .init(access: .readOnly)) }
            #expect(error != nil, "\(what)")
        }
        // Asked for, the large one is accepted.
        let (a, b) = try socketPair()
        defer { try? a.close(); try? b.close() }
        try #require(csmSend(a.rawValue, fd))
        let region = try SharedMemory.receive(from: b, options: .init(access: .readOnly, maximumSize: 1 << 40))
        #expect(region.size == 1 << 40)
    }
}

/// Sends a descriptor with the passing header, as `send(over:)` does, whatever kind of file it is.
private func csmSend(_ socket: Int32, _ descriptor: Int32) -> Bool {
    (try? Syscalls.sendDescriptor(socket, descriptor, Array("SMR\u{1}".utf8), nil)) != nil
}
