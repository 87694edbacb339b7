import CSharedMemory
import Glibc
import SystemPackage

/// The one place that calls into Glibc for SharedMemory. Every wrapper retries `EINTR`, turns a failure into a
/// ``SharedMemoryError`` naming the call, and (in debug builds) lets a test inject an errno into any call.
/// Nothing else in the library reads `errno`.
///
/// Paths and names go to the kernel through `withCString`, not Swift's implicit String-to-pointer conversion:
/// for a short (inline) string that conversion allocates an array on every call.
enum Syscalls {
    /// Runs `body` until it does not fail with EINTR; a failure becomes an error naming `call`.
    @inline(__always)
    private static func retrying<T>(
        _ call: String, _ region: RegionName?, _ body: () -> T, failed: (T) -> Bool
    ) throws(SharedMemoryError) -> T {
        while true {
            #if DEBUG
            if let injected = FaultInjection.next(for: call) {
                if injected == .interrupted { continue }
                throw SharedMemoryError(errno: injected, call: call, region: region)
            }
            #endif
            let result = body()
            if !failed(result) { return result }
            let error = Errno(rawValue: Glibc.errno)
            if error == .interrupted { continue }
            throw SharedMemoryError(errno: error, call: call, region: region)
        }
    }

    @inline(__always)
    private static func int32(_ call: String, _ region: RegionName?, _ body: () -> Int32) throws(SharedMemoryError) -> Int32 {
        try retrying(call, region, body, failed: { $0 == -1 })
    }

    // MARK: System V

    /// `shmget(key, size, flags)`: the id of the segment with `key`, creating it if `flags` say so.
    static func shmget(_ key: key_t, _ size: Int, _ flags: Int32, _ region: RegionName?) throws(SharedMemoryError) -> Int32 {
        try int32("shmget", region) { Glibc.shmget(key, size, flags) }
    }

    /// `shmat(id, address, flags)`: maps the segment into this process.
    static func shmat(_ id: Int32, _ address: UnsafeRawPointer?, _ flags: Int32, _ region: RegionName?) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let failure = UnsafeMutableRawPointer(bitPattern: -1)
        return try retrying("shmat", region, { Glibc.shmat(id, address, flags) }, failed: { $0 == failure || $0 == nil })!
    }

    /// `shmdt(address)`: unmaps a segment attached at `address`.
    static func shmdt(_ address: UnsafeRawPointer, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("shmdt", region) { Glibc.shmdt(address) }
    }

    /// `shmctl(id, IPC_STAT)`: the segment's `shmid_ds`.
    static func shmStat(_ id: Int32, _ region: RegionName?) throws(SharedMemoryError) -> shmid_ds {
        var ds = shmid_ds()
        _ = try int32("shmctl(IPC_STAT)", region) { Glibc.shmctl(id, IPC_STAT, &ds) }
        return ds
    }

    /// `shmctl(id, IPC_SET)`: changes owner and mode from `ds.shm_perm`.
    static func shmSet(_ id: Int32, _ ds: shmid_ds, _ region: RegionName?) throws(SharedMemoryError) {
        var ds = ds
        _ = try int32("shmctl(IPC_SET)", region) { Glibc.shmctl(id, IPC_SET, &ds) }
    }

    /// `shmctl(id, IPC_RMID)`: marks the segment for removal; it goes when the last attachment detaches.
    static func shmRemove(_ id: Int32, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("shmctl(IPC_RMID)", region) { Glibc.shmctl(id, IPC_RMID, nil) }
    }

    /// `shmctl(0, IPC_INFO)`: the kernel's System V limits.
    static func shmLimits() throws(SharedMemoryError) -> (shmmax: UInt, shmmin: UInt, shmmni: UInt, shmall: UInt) {
        var limits: (UInt, UInt, UInt, UInt) = (0, 0, 0, 0)
        _ = try int32("shmctl(IPC_INFO)", nil) { csm_shm_limits(&limits.0, &limits.1, &limits.2, &limits.3) }
        return limits
    }

    /// `ftok(path, id)`.
    static func ftok(_ path: FilePath, _ projectID: Int32) throws(SharedMemoryError) -> key_t {
        try int32("ftok", nil) { path.withPlatformString { Glibc.ftok($0, projectID) } }
    }

    // MARK: Files and POSIX objects

    /// `shm_open(name, flags, mode)`.
    static func shmOpen(_ name: String, _ flags: Int32, _ mode: mode_t, _ region: RegionName?) throws(SharedMemoryError) -> Int32 {
        try int32("shm_open", region) { name.withCString { Glibc.shm_open($0, flags, mode) } }
    }

    /// `shm_unlink(name)`.
    static func shmUnlink(_ name: String, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("shm_unlink", region) { name.withCString { Glibc.shm_unlink($0) } }
    }

    /// `open(path, flags, mode)`.
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t, _ region: RegionName?) throws(SharedMemoryError) -> Int32 {
        try int32("open", region) { path.withCString { Glibc.open($0, flags, mode) } }
    }

    /// `open(path, flags)`, with nil for a path that does not exist (no error is made for it: the callers ask
    /// this on every removal, and usually the answer is no).
    static func openIfPresent(_ path: String, _ flags: Int32, _ region: RegionName?) throws(SharedMemoryError) -> Int32? {
        let fd = try retrying("open", region, { path.withCString { Glibc.open($0, flags) } }, failed: { $0 == -1 && Glibc.errno != ENOENT })
        return fd == -1 ? nil : fd
    }

    /// `openat(directory, name, flags, mode)`: `name` is one component, looked up in the open `directory`.
    static func openat(_ directory: Int32, _ name: String, _ flags: Int32, _ mode: mode_t, _ region: RegionName?) throws(SharedMemoryError) -> Int32 {
        try int32("openat", region) { name.withCString { csm_openat(directory, $0, flags, UInt32(mode)) } }
    }

    /// `fstatat(directory, name, AT_SYMLINK_NOFOLLOW)`: about the name itself, never what a link points to.
    static func fstatat(_ directory: Int32, _ name: String, _ region: RegionName?) throws(SharedMemoryError) -> stat {
        var st = stat()
        _ = try int32("fstatat", region) { name.withCString { Glibc.fstatat(directory, $0, &st, AT_SYMLINK_NOFOLLOW) } }
        return st
    }

    /// `statx(STATX_BTIME)` of `name` in `directory` (or of `directory` itself with an empty name): when the
    /// file was created, which tells a new file from an old one whose inode number it reuses; nil where the file
    /// system does not record it.
    static func birthTime(_ directory: Int32, _ name: String = "", _ region: RegionName?) throws(SharedMemoryError) -> Timestamp? {
        var seconds: Int64 = 0, nanoseconds: UInt32 = 0
        _ = try int32("statx", region) { name.withCString { csm_birth_time(directory, $0, &seconds, &nanoseconds) } }
        return seconds == 0 ? nil : Timestamp(seconds: Int(seconds), nanoseconds: Int(nanoseconds))
    }

    /// `unlinkat(directory, name, 0)`, or with `AT_REMOVEDIR` for an empty directory.
    static func unlinkat(_ directory: Int32, _ name: String, removingDirectory: Bool = false, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("unlinkat", region) { name.withCString { Glibc.unlinkat(directory, $0, removingDirectory ? AT_REMOVEDIR : 0) } }
    }

    /// `renameat2(directory, old, directory, new, RENAME_NOREPLACE)`: EEXIST rather than replace `new`.
    static func renameNoReplace(_ directory: Int32, _ old: String, _ new: String, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("renameat2", region) { old.withCString { old in new.withCString { csm_rename_noreplace(directory, old, directory, $0) } } }
    }

    /// `renameat(directory, old, directory, new)`: replaces `new` if it exists.
    static func renameat(_ directory: Int32, _ old: String, _ new: String, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("renameat", region) { old.withCString { old in new.withCString { Glibc.renameat(directory, old, directory, $0) } } }
    }

    /// `mkdirat(directory, name, mode)`.
    static func mkdirat(_ directory: Int32, _ name: String, _ mode: mode_t, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("mkdirat", region) { name.withCString { Glibc.mkdirat(directory, $0, mode) } }
    }

    /// `write(fd, bytes)`, all of them.
    static func write(_ fd: Int32, _ bytes: UnsafeBufferPointer<UInt8>, _ region: RegionName?) throws(SharedMemoryError) {
        var written = 0
        while written < bytes.count {
            written += try retrying("write", region, { Glibc.write(fd, bytes.baseAddress! + written, bytes.count - written) }, failed: { $0 == -1 })
        }
    }

    /// `close(fd)`. Never retried: on Linux the descriptor is gone even when close reports EINTR.
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// `fstat(fd)`.
    static func fstat(_ fd: Int32, _ region: RegionName?) throws(SharedMemoryError) -> stat {
        var st = stat()
        _ = try int32("fstat", region) { Glibc.fstat(fd, &st) }
        return st
    }

    /// `lstat(path)`: about the name itself, never what a symbolic link points to.
    static func lstat(_ path: String, _ region: RegionName?) throws(SharedMemoryError) -> stat {
        var st = stat()
        _ = try int32("lstat", region) { path.withCString { Glibc.lstat($0, &st) } }
        return st
    }

    /// `fchmod(fd, mode)`.
    static func fchmod(_ fd: Int32, _ mode: mode_t, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("fchmod", region) { Glibc.fchmod(fd, mode) }
    }

    /// `fchown(fd, uid, gid)`.
    static func fchown(_ fd: Int32, _ uid: uid_t, _ gid: gid_t, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("fchown", region) { Glibc.fchown(fd, uid, gid) }
    }

    /// `ftruncate(fd, size)`.
    static func ftruncate(_ fd: Int32, _ size: Int, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("ftruncate", region) { Glibc.ftruncate(fd, off_t(size)) }
    }

    /// `posix_fallocate(fd, offset, length)`: allocates the blocks now, so a full file system is ENOSPC here
    /// rather than SIGBUS at first touch. It returns its error instead of setting errno.
    static func fallocate(_ fd: Int32, _ offset: Int, _ length: Int, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("posix_fallocate", region) {
            let result = Glibc.posix_fallocate(fd, off_t(offset), off_t(length))
            if result == 0 { return 0 }
            Glibc.errno = result
            return -1
        }
    }

    /// `statvfs(path)` (by `open` and `fstatvfs`): how big and how full the file system at `path` is.
    static func fileSystem(at path: String) -> Glibc.statvfs? {
        guard let fd = try? open(path, O_RDONLY | O_CLOEXEC, 0, nil) else { return nil }
        defer { close(fd) }
        return fstatvfs(fd)
    }

    /// `fstatvfs(fd)`: how big and how full the file system holding `fd` is.
    static func fstatvfs(_ fd: Int32) -> Glibc.statvfs? {
        var sv = Glibc.statvfs()
        return Glibc.fstatvfs(fd, &sv) == 0 ? sv : nil
    }

    /// `fsetxattr(fd, name, value)`. Whether it worked: callers use extended attributes only as a best effort
    /// (a file system without them is not an error).
    static func setAttribute(_ fd: Int32, _ name: StaticString, _ value: UnsafeBufferPointer<UInt8>) -> Bool {
        name.withUTF8Buffer { name in
            name.withMemoryRebound(to: CChar.self) { CSharedMemory.fsetxattr(fd, $0.baseAddress!, value.baseAddress, value.count, 0) }
        } == 0
    }

    /// `fgetxattr(fd, name)` or `lgetxattr(path, name)` (never following a link); `nil` if it is not there.
    static func attribute(of target: AttributeTarget, _ name: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = buffer.withUnsafeMutableBytes { bytes in
            switch target {
            case .descriptor(let fd): CSharedMemory.fgetxattr(fd, name, bytes.baseAddress, bytes.count)
            case .path(let path): CSharedMemory.lgetxattr(path, name, bytes.baseAddress, bytes.count)
            }
        }
        return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
    }

    enum AttributeTarget {
        case descriptor(Int32)
        case path(String)
    }

    // MARK: Mappings

    /// `mmap(address, length, protection, flags, fd, 0)`.
    static func mmap(
        _ address: UnsafeMutableRawPointer?, _ length: Int, _ protection: Int32, _ flags: Int32, _ fd: Int32,
        _ region: RegionName?
    ) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        try retrying("mmap", region, { Glibc.mmap(address, length, protection, flags, fd, 0) }, failed: { $0 == MAP_FAILED || $0 == nil })!
    }

    /// `munmap(address, length)`.
    static func munmap(_ address: UnsafeMutableRawPointer, _ length: Int, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("munmap", region) { Glibc.munmap(address, length) }
    }

    /// `madvise(address, length, advice)`.
    static func madvise(_ address: UnsafeMutableRawPointer, _ length: Int, _ advice: Int32, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("madvise", region) { Glibc.madvise(address, length, advice) }
    }

    /// `mremap(address, old, new, MREMAP_MAYMOVE or 0)`.
    static func mremap(
        _ address: UnsafeMutableRawPointer, _ oldLength: Int, _ newLength: Int, mayMove: Bool, _ region: RegionName?
    ) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        try retrying("mremap", region, { csm_mremap(address, oldLength, newLength, mayMove ? 1 : 0) }, failed: { $0 == MAP_FAILED || $0 == nil })!
    }

    /// `memfd_create(label, flags)`.
    static func memfdCreate(_ label: String, _ flags: UInt32, _ region: RegionName?) throws(SharedMemoryError) -> Int32 {
        try int32("memfd_create", region) { label.withCString { csm_memfd_create($0, flags) } }
    }

    /// `fcntl(fd, F_GET_SEALS)`.
    static func seals(_ fd: Int32, _ region: RegionName?) throws(SharedMemoryError) -> Int32 {
        try int32("fcntl(F_GET_SEALS)", region) { csm_get_seals(fd) }
    }

    /// `fcntl(fd, F_ADD_SEALS, seals)`.
    static func addSeals(_ fd: Int32, _ seals: Int32, _ region: RegionName?) throws(SharedMemoryError) {
        _ = try int32("fcntl(F_ADD_SEALS)", region) { csm_add_seals(fd, seals) }
    }

    /// `fcntl(fd, F_GETFL)`.
    static func statusFlags(_ fd: Int32, _ region: RegionName?) throws(SharedMemoryError) -> Int32 {
        try int32("fcntl(F_GETFL)", region) { csm_get_status_flags(fd) }
    }

    /// `readlink(path)`.
    static func readLink(_ path: String) throws(SharedMemoryError) -> String {
        var buffer = [CChar](repeating: 0, count: 4097)
        let count = try retrying("readlink", nil, { Glibc.readlink(path, &buffer, buffer.count - 1) }, failed: { $0 == -1 })
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `sendmsg` of one descriptor (SCM_RIGHTS) and a payload.
    static func sendDescriptor(_ socket: Int32, _ fd: Int32, _ payload: [UInt8], _ region: RegionName?) throws(SharedMemoryError) {
        _ = try retrying("sendmsg", region, { payload.withUnsafeBytes { csm_send_descriptor(socket, fd, $0.baseAddress, $0.count) } }, failed: { $0 == -1 })
    }

    /// `recvmsg` of one message with at most one descriptor: the descriptor (or -1), the payload, and whether
    /// anything was cut off (extra descriptors are closed).
    static func receiveDescriptor(_ socket: Int32, capacity: Int) throws(SharedMemoryError) -> (descriptor: Int32, payload: [UInt8], truncated: Bool) {
        var payload = [UInt8](repeating: 0, count: capacity)
        var descriptor: Int32 = -1
        var truncated: Int32 = 0
        let count = try retrying("recvmsg", nil, {
            payload.withUnsafeMutableBytes { csm_receive_descriptor(socket, &descriptor, $0.baseAddress, $0.count, &truncated) }
        }, failed: { $0 == -1 })
        return (descriptor, Array(payload[..<count]), truncated != 0)
    }

    // MARK: Synchronisation

    /// A pthread call, which returns an error number instead of setting errno. Returns 0 or one of `expected`
    /// (the answers the caller handles: EBUSY for a try, ETIMEDOUT, EOWNERDEAD); anything else is thrown.
    static func pthread(_ call: String, _ region: RegionName?, expected: [Int32] = [], _ body: () -> Int32) throws(SharedMemoryError) -> Int32 {
        while true {
            #if DEBUG
            if let injected = FaultInjection.next(for: call) {
                if expected.contains(injected.rawValue) { return injected.rawValue }
                throw SharedMemoryError(errno: injected, call: call, region: region)
            }
            #endif
            let result = body()
            if result == 0 || expected.contains(result) { return result }
            if result == EINTR { continue }
            throw SharedMemoryError(errno: Errno(rawValue: result), call: call, region: region)
        }
    }

    /// `futex(FUTEX_WAIT)` across processes: sleeps while `*word == expected`, at most `timeout` nanoseconds
    /// (nil: no limit), and says whether the time ran out. A wake, a signal, or a word that had already changed
    /// all return `false`: the caller looks at its condition again.
    @discardableResult
    static func futexWait(_ word: UnsafeMutableRawPointer, _ expected: UInt32, timeout: Int64?) -> Bool {
        csm_futex_wait(word.assumingMemoryBound(to: UInt32.self), expected, timeout ?? -1) != 0 && Glibc.errno == ETIMEDOUT
    }

    /// `futex(FUTEX_WAKE)` across processes.
    static func futexWake(_ word: UnsafeMutableRawPointer, count: Int32 = .max) {
        _ = csm_futex_wake(word.assumingMemoryBound(to: UInt32.self), count)
    }

    /// `kcmp(KCMP_VM)`: whether processes `a` and `b` are known to share one address space (false if they do
    /// not, or if this process may not compare them).
    static func sameAddressSpace(_ a: Int32, _ b: Int32) -> Bool {
        csm_same_address_space(a, b) == 0
    }

    // MARK: Reading the kernel's tables

    /// The whole contents of a (small, /proc or /sys) file, read with `open` and `read`.
    static func readFile(_ path: String) throws(SharedMemoryError) -> [UInt8] {
        let fd = try open(path, O_RDONLY | O_CLOEXEC, 0, nil)
        defer { close(fd) }
        return try readAll(fd)
    }

    /// The rest of an open file, read with `read`.
    static func readAll(_ fd: Int32) throws(SharedMemoryError) -> [UInt8] {
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = try retrying("read", nil, { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }, failed: { $0 == -1 })
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[..<count])
        }
    }

    /// The names in a directory, without `.` and `..`.
    static func listDirectory(_ path: String, _ region: RegionName?) throws(SharedMemoryError) -> [String] {
        guard let directory = Glibc.opendir(path) else {
            throw SharedMemoryError(errno: Errno(rawValue: Glibc.errno), call: "opendir", region: region)
        }
        defer { Glibc.closedir(directory) }
        var names: [String] = []
        while let entry = Glibc.readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `kill(pid, 0)`: whether a process with this id exists (EPERM: it does, but is another user's).
    static func processExists(_ pid: Int32) -> Bool {
        pid > 0 && (Glibc.kill(pid, 0) == 0 || Glibc.errno == EPERM)
    }

    /// The system page size.
    static let pageSize = Int(Glibc.sysconf(Int32(_SC_PAGESIZE)))
}
