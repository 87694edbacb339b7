import Foundation
import SystemPackage
import Testing
@testable import SharedMemory

/// What only System V has: private segments, ids, the key freed at IPC_RMID, the kernel's limits.
@Suite("System V")
struct SystemVTests {
    @Test("sysv:private creates a segment known by its id, which another process can open")
    func privateSegment() throws {
        let region = try SystemVRegion.create(.systemVPrivate, size: 5000)
        defer { try? region.remove() }
        #expect(region.name == (try .systemV(id: region.id)))
        let info = try region.info()
        #expect(info.systemVKey == 0)
        #expect(info.systemVID == region.id)
        try region.set(bytes: [0xAA, 0xBB], at: 4998)
        #expect(try Probe.run(["read", "sysv-id:\(region.id)", "4998", "2"]) == "ok aabb")
        expectError(.invalidArgument) { try SharedMemory.open(.systemVPrivate) }
        expectError(.invalidArgument) { try SharedMemory.openOrCreate(.systemVPrivate, size: 10) }
        expectError(.invalidArgument) { try SharedMemory.create(try .systemV(id: 5), size: 10) }
    }

    @Test("IPC_RMID frees the key at once; the segment lives until its last attachment detaches")
    func removeFreesKeyNow() throws {
        try Names.with(.systemV) { name in
            var oldID: Int32 = 0
            do {
                let old = try SystemVRegion.create(name, size: 4096)
                oldID = old.id
                try old.set(bytes: [1], at: 0)
                try old.remove()
                let successor = try SystemVRegion.create(name, size: 4096)
                #expect(successor.id != old.id)
                #expect(try successor.get(count: 1, at: 0) == [0])
                #expect(try old.get(count: 1, at: 0) == [1])
                let marked = try SharedMemory.info(try .systemV(id: old.id))
                #expect(marked.isMarkedForRemoval)
                #expect(marked.systemVKey == 0)
                #expect(marked.attachCount == 1)
                // A marked segment cannot be opened again, even by id (Linux would allow it; we do not).
                expectError(.notFound) { try SharedMemory.open(try .systemV(id: old.id)) }
            }
            // After the last detach the segment is gone.
            #expect(!(try SharedMemory.list(.systemV)).contains { $0.systemVID == oldID })
            expectError(.notFound) { try SharedMemory.info(try .systemV(id: oldID)) }
            expectError(.notFound) { try SharedMemory.open(try .systemV(id: oldID)) }
            expectError(.notFound) { try SharedMemory.remove(try .systemV(id: oldID)) }
        }
    }

    @Test("a segment opened by id is the same as by key")
    func openByID() throws {
        try Names.with(.systemV) { name in
            let region = try SystemVRegion.create(name, size: 100)
            let byID = try SystemVRegion.open(try .systemV(id: region.id))
            #expect(byID.id == region.id)
            try byID.set(bytes: [3], at: 50)
            #expect(try region.get(count: 1, at: 50) == [3])
            #expect(try region.info().attachCount == 2)
        }
    }

    @Test("a segment made by ipcmk, outside this library, opens and is removed")
    func foreignSegment() throws {
        let output = try shell("ipcmk -M 8192 -p 0640")
        let id = try #require(Int32(output.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""))
        let name = try RegionName.systemV(id: id)
        defer { try? SharedMemory.remove(name) }
        let region = try SharedMemory.open(name)
        #expect(region.size == 8192)
        #expect(try region.info().permissions == [.ownerReadWrite, .groupRead])
        try SharedMemory.remove(name)
        expectError(.notFound) { try SharedMemory.remove(name) }
    }

    @Test("sizes above kernel.shmmax, and segments beyond kernel.shmmni, are limitExceeded")
    func kernelLimits() throws {
        // sysctls are per IPC namespace: lower them in a namespace of the probe's own.
        let key = Names.unique(.systemV).description
        let script = """
            echo 4096 > /proc/sys/kernel/shmmax && '\(Probe.path)' create \(key) 8192
            echo 0 > /proc/sys/kernel/shmmni && '\(Probe.path)' create \(key) 100
            """
        let answers = try run("/usr/bin/unshare", ["--ipc", "/bin/sh", "-c", script]).output.split(separator: "\n")
        #expect(answers.count == 2)
        #expect(answers.first?.hasPrefix("error limitExceeded") == true)
        #expect(answers.first?.contains("kernel.shmmax") == true)
        #expect(answers.last?.hasPrefix("error limitExceeded") == true)
        #expect(answers.last?.contains("kernel.shmmni") == true)
        let limits = try SharedMemory.limits()
        #expect(limits.systemVMaximumSize > 4096)
        #expect(limits.systemVMinimumSize == 1)
        #expect(limits.systemVMaximumSegments == UInt(try String(contentsOfFile: "/proc/sys/kernel/shmmni", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    @Test("a C program's segment and ours see the same bytes")
    func interoperatesWithC() throws {
        try Names.with(.systemV) { name in
            guard case .systemV(let key) = name.location else { return }
            let region = try SystemVRegion.create(name, size: 4096, options: .init(permissions: [.ownerReadWrite]))
            try region.set(bytes: Array("from swift\0".utf8), at: 0)
            let source = """
                #include <stdio.h>
                #include <string.h>
                #include <sys/shm.h>
                int main(void) {
                    int id = shmget(\(key), 0, 0);
                    if (id < 0) { perror("shmget"); return 1; }
                    char *p = shmat(id, NULL, 0);
                    if (p == (void *)-1) { perror("shmat"); return 1; }
                    printf("%s\\n", p);
                    strcpy(p + 100, "from c");
                    return shmdt(p);
                }
                """
            let output = try compileAndRunC(source)
            #expect(output == "from swift\n")
            #expect(try region.get(count: 6, at: 100) == Array("from c".utf8))
        }
    }
}

/// Compiles a C program with the system's cc and runs it, returning its standard output.
func compileAndRunC(_ source: String) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smtest-c-\(getpid())-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = directory.appendingPathComponent("main.c")
    try source.write(to: file, atomically: true, encoding: .utf8)
    let binary = directory.appendingPathComponent("main").path
    let compile = try run("/usr/bin/cc", ["-O2", "-o", binary, file.path, "-lrt"])
    try #require(compile.status == 0)
    let result = try run(binary, [])
    #expect(result.status == 0)
    return result.output
}
