import Glibc
import SystemPackage

/// The storage of posix and file regions. Both are a file mapped with `mmap(MAP_SHARED)`; a POSIX object is a
/// file on the tmpfs at /dev/shm that `shm_open` and `shm_unlink` reach by name. Everything but the name (sizing
/// with `ftruncate`, reserving with `posix_fallocate`, resizing with `mremap`, `fstat`, `fchmod`) is this code;
/// ``POSIXObject`` and ``MappedFile`` supply how a name is opened, unlinked and found on disk.
public class FileBackedStorage: RegionStorage {
    /// The open descriptor (read-only for a read-only attachment), closed at detach.
    final let descriptor: Int32
    /// Whether growth reserves space with `posix_fallocate`.
    private let reserve: Bool
    /// Whether the mapping must stay at its address (a fixed attach address): then resize may not move it.
    private let fixedAddress: Bool

    required init(name: RegionName, access: Access, descriptor: Int32, base: UnsafeMutableRawPointer?, size: Int,
                  reserve: Bool, fixedAddress: Bool) {
        self.descriptor = descriptor
        self.reserve = reserve
        self.fixedAddress = fixedAddress
        super.init(name: name, access: access, base: base, size: size)
    }

    // MARK: What each backend supplies

    /// The path of the object on disk (/dev/shm/NAME for POSIX, where glibc's `shm_open` puts it), for messages.
    class func path(of name: RegionName) -> String { preconditionFailure("a backend overrides this") }

    /// The directory holding the name, open, and the name's last component. A memfd has no name:
    /// ``SharedMemoryError/Code/unsupported``.
    class func parent(of name: RegionName) throws(SharedMemoryError) -> ParentDirectory {
        throw SharedMemoryError(.unsupported, "\(name.backend) regions have no name in any directory", region: name)
    }

    /// Opens the object (`shm_open`, `openat`, `memfd_create`); `flags` already hold
    /// `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK` (a FIFO planted at the name must not block the open).
    class func openDescriptor(_ name: RegionName, _ flags: Int32, _ mode: mode_t, hugePages: HugePages?) throws(SharedMemoryError) -> Int32 {
        preconditionFailure("a backend overrides this")
    }

    /// Removes the name, whatever object it holds (`shm_unlink`, or `unlinkat` in the file's directory).
    class func unlinkName(_ name: RegionName) throws(SharedMemoryError) { preconditionFailure("a backend overrides this") }

    /// Throws `invalidName` unless the name is this backend's.
    class func requireName(_ name: RegionName) throws(SharedMemoryError) { preconditionFailure("a backend overrides this") }

    /// What to do when the file system is full, as the end of a sentence.
    class var noSpaceAdvice: String { "; free space on that file system or put the file on another" }

    // MARK: Create and open

    static func create(_ name: RegionName, size: Int, options: CreateOptions) throws(SharedMemoryError) -> Self {
        try requireName(name)
        try Checks.size(size, name)
        let mode = try Checks.mode(options.permissions, name)
        try Checks.address(options.address, name)
        try options.hugePages?.check(size: size, name)
        let descriptor: Int32
        do {
            descriptor = try openDescriptor(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode, hugePages: options.hugePages)
        } catch where error.code == .notFound && name.backend == .posix {
            throw SharedMemoryError(.notFound, "the directory it would go in does not exist; create it first", region: name, systemCall: error.systemCall, errno: error.errno)
        } catch {
            throw explain(error, name)
        }
        do throws(SharedMemoryError) {
            try Syscalls.fchmod(descriptor, mode, name)  // the exact mode, whatever the umask
            Creator.record(on: descriptor)
            try Syscalls.ftruncate(descriptor, size, name)
            if options.reserve { try reserveSpace(descriptor, from: 0, count: size, name) }
            if options.lifetime == .process && name.backend != .memfd {
                let made = try Syscalls.fstat(descriptor, name)
                try LifetimeRecords.write(name, device: UInt64(made.st_dev), inode: UInt64(made.st_ino),
                                          born: try Syscalls.birthTime(descriptor, "", name))
            }
            let base = try Mapping.mapPrepared(descriptor: descriptor, size: size, access: .readWrite, address: options.address, flags: 0,
                                               hugePages: options.hugePages, prefault: options.prefault, name)
            return Self(name: name, access: .readWrite, descriptor: descriptor, base: base, size: size,
                        reserve: options.reserve, fixedAddress: options.address.isFixed)
        } catch {
            // Back out: nothing half-made stays behind; and only what this call made (another process may have
            // removed it and made its own under the name meanwhile).
            let made = try? Syscalls.fstat(descriptor, name)
            Syscalls.close(descriptor)
            if let made {
                try? parent(of: name).remove(ifStill: UInt64(made.st_dev), UInt64(made.st_ino), name)
                LifetimeRecords.remove(name, owner: made.st_uid, device: UInt64(made.st_dev), inode: UInt64(made.st_ino))
            }
            throw options.hugePages?.explain(error) ?? error
        }
    }

    static func open(_ name: RegionName, options: OpenOptions) throws(SharedMemoryError) -> Self {
        try requireName(name)
        try Checks.minimumSize(options.minimumSize, name)
        try Checks.address(options.address, name)
        let descriptor: Int32
        do {
            descriptor = try openDescriptor(name, (options.access == .readWrite ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0, hugePages: nil)
        } catch {
            throw explain(error, name)
        }
        do throws(SharedMemoryError) {
            let status = try Syscalls.fstat(descriptor, name)
            try checkRegularFile(status, name)
            if status.st_nlink == 0 {
                throw SharedMemoryError(.notFound, "it was removed while it was being opened", region: name)
            }
            if status.st_nlink > 1 && !options.acceptHardLinks {
                throw SharedMemoryError(.foreign, "it has \(status.st_nlink) names (hard links), so it may be another object that someone linked here; it was not opened. If you made the links, open it with acceptHardLinks", region: name)
            }
            try Checks.trust(owner: status.st_uid, creator: nil, mode: status.st_mode, options, name)
            let size = Int(status.st_size)
            guard size > 0 else {
                throw SharedMemoryError(.notReady, "it exists but is still empty: its creator has not set its size yet; try again shortly", region: name)
            }
            try Checks.actualSize(size, atLeast: options.minimumSize, name)
            let base = try Mapping.mapPrepared(descriptor: descriptor, size: size, access: options.access, address: options.address, flags: 0,
                                               hugePages: nil, prefault: options.prefault, name)
            return Self(name: name, access: options.access, descriptor: descriptor, base: base, size: size,
                              reserve: true, fixedAddress: options.address.isFixed)
        } catch {
            Syscalls.close(descriptor)
            throw error
        }
    }

    /// Maps a descriptor received from another process (see ``SharedMemory/receive(from:options:)``). On
    /// failure the caller still owns the descriptor.
    static func adopt(_ descriptor: Int32, name: RegionName, size: Int, access: Access, prefault: Bool) throws(SharedMemoryError) -> Self {
        let base = try Mapping.mapPrepared(descriptor: descriptor, size: size, access: access, address: nil, flags: 0,
                                           hugePages: nil, prefault: prefault, name)
        return Self(name: name, access: access, descriptor: descriptor, base: base, size: size, reserve: true, fixedAddress: false)
    }

    // MARK: Operations

    override var fileDescriptor: Int32? { descriptor }

    override func release() throws(SharedMemoryError) {
        defer { Syscalls.close(descriptor) }
        if let base { try Syscalls.munmap(base, size, name) }
        base = nil
    }

    override func resize(to newSize: Int) throws(SharedMemoryError) {
        try requireWritable()
        try Checks.size(newSize, name)
        let current = Int(try Syscalls.fstat(descriptor, name).st_size)
        do {
            // posix_fallocate extends the size by itself, so a failure after it must put the size back too.
            if reserve && newSize > current { try Self.reserveSpace(descriptor, from: current, count: newSize - current, name) }
            try Syscalls.ftruncate(descriptor, newSize, name)
            try mapAgain(newSize)
        } catch {
            try? Syscalls.ftruncate(descriptor, current, name)  // leave the object as it was
            throw error
        }
    }

    override func remap() throws(SharedMemoryError) -> Int {
        let current = Int(try Syscalls.fstat(descriptor, name).st_size)
        try mapAgain(current)
        return current
    }

    /// Moves the mapping to `newSize` bytes: `mremap` (in place when the address is fixed), a fresh `mmap` after
    /// size 0, or nothing at all at size 0.
    private func mapAgain(_ newSize: Int) throws(SharedMemoryError) {
        guard newSize != size || (base == nil && newSize > 0) else { return }
        if newSize == 0 {
            if let base { try Syscalls.munmap(base, size, name) }
            base = nil
        } else if let base {
            do {
                self.base = try Syscalls.mremap(base, size, newSize, mayMove: !fixedAddress, name)
            } catch where fixedAddress && error.errno == .noMemory {
                throw SharedMemoryError(.busy, "the region is at a fixed address and the memory after it is in use, so it cannot grow in place", region: name, systemCall: "mremap", errno: error.errno)
            }
        } else {
            base = try Mapping.map(descriptor: descriptor, size: newSize, access: access, address: nil, flags: 0, name)
        }
        size = newSize
    }

    override func remove() throws(SharedMemoryError) {
        // Only our own object: if the name now belongs to another (ours was removed and the name re-created),
        // say so rather than removing someone else's region.
        let ours = try Syscalls.fstat(descriptor, name)
        try Self.parent(of: name).remove(ifStill: UInt64(ours.st_dev), UInt64(ours.st_ino), name)
        LifetimeRecords.remove(name, owner: ours.st_uid, device: UInt64(ours.st_dev), inode: UInt64(ours.st_ino))
    }

    override func info() throws(SharedMemoryError) -> RegionInfo {
        let status = try Syscalls.fstat(descriptor, name)
        return Self.info(name, status, born: try? Syscalls.birthTime(descriptor, "", name),
                         creator: Creator.recorded(on: .descriptor(descriptor), status), attachCounts: ProcMaps.mappingCounts())
    }

    override func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        try Syscalls.fchmod(descriptor, try Checks.mode(permissions, name), name)
    }

    override func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) {
        try Syscalls.fchown(descriptor, uid, gid, name)
    }

    // MARK: Without an attachment

    static func info(_ name: RegionName) throws(SharedMemoryError) -> RegionInfo {
        try requireName(name)
        let parent = try parent(of: name)
        let status = try parent.status(name)
        try checkRegularFile(status, name)
        return info(name, status, born: try? Syscalls.birthTime(parent.descriptor, parent.entry, name),
                    creator: Creator.recorded(on: .path(parent.entryPath), status), attachCounts: ProcMaps.mappingCounts())
    }

    static func remove(_ name: RegionName) throws(SharedMemoryError) {
        try requireName(name)
        let status = try? parent(of: name).status(name)
        try unlinkName(name)
        if let status {
            LifetimeRecords.remove(name, owner: status.st_uid, device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
        }
    }

    /// Removes the name only if it still holds the object with this device, inode and birth time (see
    /// ``ParentDirectory/remove(ifStill:_:born:_:)``), and its lifetime record.
    static func remove(_ name: RegionName, ifStill device: UInt64, _ inode: UInt64, born: Timestamp?, owner: UInt32) throws(SharedMemoryError) {
        try requireName(name)
        try parent(of: name).remove(ifStill: device, inode, born: born, name)
        LifetimeRecords.remove(name, owner: owner, device: device, inode: inode)
    }

    // MARK: Helpers

    /// What is known of an object: `stat`, the creator (the lifetime record's if there is one, else the creator
    /// attribute's), the lifetime, and how many mappings of it `attachCounts` found.
    static func info(_ name: RegionName, _ status: stat, born: Timestamp?, creator: Creator?, attachCounts: [ProcMaps.FileID: Int]?) -> RegionInfo {
        let id = ProcMaps.FileID(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
        let record = name.backend == .memfd ? nil
            : LifetimeRecords.record(for: name, owner: status.st_uid, device: UInt64(status.st_dev), inode: UInt64(status.st_ino), born: born)
        let creator = record?.creator ?? creator
        return RegionInfo(
            name: name,
            size: Int(status.st_size),
            permissions: FilePermissions(rawValue: CModeT(status.st_mode & 0o777)),
            ownerUID: status.st_uid,
            ownerGID: status.st_gid,
            attachCount: attachCounts.map { $0[id] ?? 0 },
            creatorPID: creator?.pid,
            creatorIsAlive: creator?.isAlive,
            lifetime: record != nil || name.backend == .memfd ? .process : .persistent,
            lastAttachTime: nil,
            lastDetachTime: nil,
            lastChangeTime: Timestamp(seconds: status.st_ctim.tv_sec, nanoseconds: status.st_ctim.tv_nsec),
            creationTime: born,
            device: UInt64(status.st_dev),
            inode: UInt64(status.st_ino),
            isMarkedForRemoval: name.backend != .memfd && status.st_nlink == 0)
    }

    static func checkRegularFile(_ status: stat, _ name: RegionName) throws(SharedMemoryError) {
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw SharedMemoryError(.foreign, "it is \(describe(status)), not a regular file; SharedMemory maps only regular files (remove it if it is not yours)", region: name)
        }
    }

    /// What kind of file a `stat` describes: `a directory`, `a FIFO`, ...
    static func describe(_ status: stat) -> String {
        switch status.st_mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link (SharedMemory never follows one)"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        default: "an unknown kind of file"
        }
    }

    /// A failed open or create, explained: when the name holds something that is not a regular file (glibc's
    /// `shm_open` turns EISDIR into EINVAL; a socket is ENXIO; a symbolic link ELOOP, or EEXIST when creating),
    /// ``SharedMemoryError/Code/foreign`` saying what is there.
    private static func explain(_ error: SharedMemoryError, _ name: RegionName) -> SharedMemoryError {
        let suspicious: [Errno] = [.invalidArgument, .noSuchAddressOrDevice, .isDirectory, .tooManySymbolicLinkLevels, .fileExists, .notDirectory]
        guard let errno = error.errno, suspicious.contains(errno), name.backend != .memfd,
              let status = try? parent(of: name).status(name), status.st_mode & S_IFMT != S_IFREG
        else { return error }
        return SharedMemoryError(.foreign, "the name holds \(describe(status)), not a region; SharedMemory maps only regular files and follows no links. Remove it if it is not yours", region: name, systemCall: error.systemCall, errno: error.errno)
    }

    /// `posix_fallocate`, with a `noSpace` error that says how full the file system is and what to do.
    private final class func reserveSpace(_ descriptor: Int32, from offset: Int, count: Int, _ name: RegionName) throws(SharedMemoryError) {
        // A tmpfs without a size limit (the kernel's own, behind every memfd) would allocate page after page
        // until the machine runs out of memory: refuse up front what memory cannot hold.
        let memory = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Syscalls.pageSize
        if count > memory, let fs = Syscalls.fstatvfs(descriptor), fs.f_blocks == 0 {
            throw SharedMemoryError(.noSpace, "\(humanSize(count)) is more than this machine's memory (\(humanSize(memory))); ask for less, or create it with reserve: false to allocate on first touch", region: name)
        }
        do {
            try Syscalls.fallocate(descriptor, offset, count, name)
        } catch where error.errno == .noSpace || error.errno == .fileTooLarge {
            var reason = "there is no room for \(humanSize(count)) more"
            if let fs = Syscalls.fstatvfs(descriptor) {
                let total = Int(fs.f_blocks) * Int(fs.f_frsize)
                let free = Int(fs.f_bavail) * Int(fs.f_frsize)
                if total > 0 && count > total {
                    let advice = self == POSIXObject.self ? "raise /dev/shm's size (in a container, `docker run --shm-size`) or use a sysv region" : "put it on a larger file system"
                    throw SharedMemoryError(.noSpace, "\(humanSize(count)) is more than the whole file system holding it, \(humanSize(total)) (\(humanSize(free)) free): ask for less, or \(advice)", region: name, systemCall: error.systemCall, errno: error.errno)
                }
                reason += ": the file system holding it has \(humanSize(free)) free of \(humanSize(total))"
            }
            reason += noSpaceAdvice
            throw SharedMemoryError(.noSpace, reason, region: name, systemCall: error.systemCall, errno: error.errno)
        }
    }
}

extension Optional<AttachAddress> {
    var isFixed: Bool {
        if case .fixed? = self { return true }
        return false
    }
}

extension Region where Storage: FileBackedStorage {
    /// Creates a region of exactly `size` bytes, exclusively: if the name exists it throws
    /// ``SharedMemoryError/Code/alreadyExists`` and leaves that object alone. A failure part-way removes what
    /// was made.
    ///
    /// The corresponding C calls are `shm_open` (or `open`) with `O_CREAT | O_EXCL`, `fchmod`, `ftruncate`,
    /// `posix_fallocate` and `mmap`.
    public static func create(_ name: RegionName, size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> Self {
        Region(try Storage.create(name, size: size, options: options))
    }

    /// Opens an existing region at its current size.
    ///
    /// The corresponding C calls are `shm_open` (or `open`), `fstat` and `mmap`.
    public static func open(_ name: RegionName, options: OpenOptions = .init()) throws(SharedMemoryError) -> Self {
        Region(try Storage.open(name, options: options))
    }

}
