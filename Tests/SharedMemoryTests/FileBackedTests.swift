import Foundation
import SystemPackage
import TestSupport
import Testing
@testable import SharedMemory

/// What only posix and file regions have: space reserved up front, refusing what is not a plain file of ours.
@Suite("POSIX and file regions")
struct FileBackedTests {
    @Test("a region larger than /dev/shm is noSpace at create, with advice, and leaves nothing")
    func posixFull() throws {
        try Names.with(.posix) { name in
            let error = expectError(.noSpace) { try SharedMemory.create(name, size: 1 << 40) }
            #expect(error?.systemCall == "posix_fallocate")
            #expect(error?.reason.contains("more than the whole file system holding it") == true, "\(String(describing: error))")
            #expect(error?.reason.contains("--shm-size") == true)
            expectError(.notFound) { try SharedMemory.info(name) }
        }
    }

    @Test("growing past the free space is noSpace, and the region keeps its size and bytes", arguments: [Backend.posix])
    func resizeFull(backend: Backend) throws {
        try Names.with(backend) { name in
            var region = try SharedMemory.create(name, size: 4096)
            try region.set(bytes: [1, 2, 3], at: 0)
            expectError(.noSpace) { try region.resize(to: 1 << 40) }
            #expect(region.size == 4096)
            #expect(try region.info().size == 4096)
            #expect(try region.get(count: 3, at: 0) == [1, 2, 3])
        }
    }

    @Test("without reserve, creation does not allocate (and a file past the file system's size limit is refused)")
    func noReserve() throws {
        try Names.with(.posix) { name in
            // Sparse: a terabyte of address space on a 24 GiB tmpfs is fine until it is touched.
            let region = try SharedMemory.create(name, size: 1 << 40, options: .init(reserve: false))
            #expect(region.size == 1 << 40)
        }
        try Names.with(.file) { name in
            expectError(of: [.limitExceeded, .noSpace]) { try SharedMemory.create(name, size: Int.max, options: .init(reserve: false)) }
            expectError(.notFound) { try SharedMemory.info(name) }
        }
    }

    @Test("a symbolic link at the name is never followed", arguments: [Backend.posix, .file])
    func symlink(backend: Backend) throws {
        let target = "/tmp/smtest-target-\(getpid())-\(backend)"
        #expect(FileManager.default.createFile(atPath: target, contents: Data(count: 4096)))
        defer { unlink(target) }
        try Names.with(backend) { name in
            let path = path(of: name)
            #expect(Glibc.symlink(target, path) == 0)
            defer { unlink(path) }
            expectError(.foreign) { try SharedMemory.open(name) }
            let error = expectError(.foreign) { try SharedMemory.create(name, size: 4096) }
            #expect(error?.reason.contains("symbolic link") == true && error?.reason.contains("open it") == false)
            expectError(.foreign) { try SharedMemory.info(name) }
            #expect(FileManager.default.fileExists(atPath: target))
        }
    }

    @Test("what is not a regular file is foreign", arguments: ["directory", "fifo"])
    func notRegular(kind: String) throws {
        let path = "/tmp/smtest-\(kind)-\(getpid())"
        #expect((kind == "directory" ? mkdir(path, 0o700) : mkfifo(path, 0o600)) == 0)
        defer { _ = kind == "directory" ? rmdir(path) : unlink(path) }
        let name = try RegionName.file(FilePath(path))
        expectError(.foreign) { try SharedMemory.open(name) }
        expectError(.foreign) { try SharedMemory.open(name, options: .init(access: .readOnly)) }
        expectError(.foreign) { try SharedMemory.info(name) }
    }

    @Test("an object its creator has not sized yet is notReady", arguments: [Backend.posix, .file])
    func notReady(backend: Backend) throws {
        try Names.with(backend) { name in
            #expect(FileManager.default.createFile(atPath: path(of: name), contents: nil, attributes: [.posixPermissions: 0o600]))
            let error = expectError(.notReady) { try SharedMemory.open(name) }
            #expect(error?.reason.contains("not set its size") == true)
        }
    }

    @Test("a file region in a missing directory is notFound and says so")
    func missingDirectory() throws {
        let name = try RegionName.file(FilePath("/nonexistent-smtest-\(getpid())/region"))
        let error = expectError(.notFound) { try SharedMemory.create(name, size: 100) }
        #expect(error?.reason.contains("directory") == true)
    }

    @Test("the file descriptor is the object's, read-only for a read-only attachment")
    func descriptor() throws {
        try Names.with(.file) { name in
            let region = try FileRegion.create(name, size: 4096)
            let reader = try FileRegion.open(name, options: .init(access: .readOnly))
            var a = stat(), b = stat()
            #expect(fstat(region.fileDescriptor!.rawValue, &a) == 0)
            #expect(fstat(reader.fileDescriptor!.rawValue, &b) == 0)
            #expect(a.st_ino == b.st_ino)
            #expect(fcntl(reader.fileDescriptor!.rawValue, F_GETFL) & O_ACCMODE == O_RDONLY)
            #expect(fcntl(region.fileDescriptor!.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        }
    }

    @Test("errors read like a man page: region, call, errno, what to do")
    func errorDescription() throws {
        try Names.with(.posix) { name in
            let error = try #require(expectError(.notFound) { try SharedMemory.open(name) })
            #expect(error.description == "\(name): shm_open failed (No such file or directory): no region has this name: it was never created, or it was removed (by its owner, `shm rm`, `shm gc`, or systemd's RemoveIPC=yes when its user logged out); create it first")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }

    @Test("an address space counts once: a process sharing another's (vfork, clone) is not a second attachment; a forked copy is", arguments: [Backend.posix, .file])
    func sharedAddressSpaceCountsOnce(backend: Backend) throws {
        // A C program maps the region, starts a process that shares its address space (clone with CLONE_VM, as a
        // child is between vfork and exec in every posix_spawn) and one that forks a copy of it, then waits.
        let source = """
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <sched.h>
            #include <signal.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <sys/mman.h>
            #include <unistd.h>
            static int wait_forever(void *unused) { (void)unused; for (;;) pause(); }
            int main(int argc, char **argv) {
                int fd = argc > 1 ? open(argv[1], O_RDWR) : -1;
                if (fd < 0 || mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED) { perror("map"); return 1; }
                char *stack = malloc(1 << 16);
                pid_t sharing = clone(wait_forever, stack + (1 << 16), CLONE_VM | SIGCHLD, NULL);
                pid_t copy = fork();
                if (copy == 0) wait_forever(NULL);
                if (sharing < 0 || copy < 0) { perror("clone"); return 1; }
                printf("ready\\n");
                fflush(stdout);
                char byte;
                while (read(0, &byte, 1) > 0) {}
                kill(sharing, SIGKILL);
                kill(copy, SIGKILL);
                return 0;
            }
            """
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smtest-c-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let binary = directory.appendingPathComponent("share").path
        try source.write(toFile: binary + ".c", atomically: true, encoding: .utf8)
        let build = try ChildProcess.run("/usr/bin/cc", ["-O2", "-o", binary, binary + ".c"])
        try #require(build.status == 0, "\(build.error)")
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let program = try ChildProcess(binary, [path(of: name)], input: .open)
            try #require(program.line() == "ready")
            // This process, the program (and the process sharing its address space), its forked copy.
            #expect(try region.info().attachCount == 3)
            program.closeInput()
            #expect(program.finish().status == 0)
        }
    }
}
