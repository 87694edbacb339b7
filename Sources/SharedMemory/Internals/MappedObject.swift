import CSharedMemory
import Glibc
import SystemPackage

/// Where a descriptor-backed region's object lives: a POSIX object (a file on the tmpfs at /dev/shm that
/// `shm_open` and `shm_unlink` reach by name), a file on any file system (reached from `/` without following a
/// symbolic link), or a memfd (no name anywhere). The three differ only in how the object is opened, found and
/// unlinked; everything else is ``MappedObject``'s.
enum ObjectName {
    case posix(String)
    case file(FilePath)
    case memfd(String)

    /// The object behind a region name, or nil for the System V and anonymous backends.
    init?(_ name: RegionName) {
        switch name.location {
        case .posix(let object): self = .posix(object)
        case .file(let path): self = .file(path)
        case .memfd(let label): self = .memfd(label)
        case .systemV, .systemVPrivate, .systemVID, .anonymous: return nil
        }
    }

    /// The directory holding the name, open, and the name's last component; a file's reached without following a
    /// symbolic link in any component. A memfd has no name: ``SharedMemoryError/Code/unsupported``.
    func parent(_ region: RegionName) throws(SharedMemoryError) -> ParentDirectory {
        switch self {
        case .posix(let object): try .system("/dev/shm", entry: String(object.dropFirst()), region)
        case .file(let path): try .walking(to: path, region)
        case .memfd: throw SharedMemoryError(.unsupported, "memfd regions have no name in any directory", region: region)
        }
    }

    /// Opens the object named `region` (`shm_open`, `openat`, `memfd_create`); `flags` already hold
    /// `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK` (a FIFO planted at the name must not block the open). Static, on the
    /// name: an ``ObjectName`` made for it would be a copy of the name's text (a retain and a release a create).
    static func open(_ region: RegionName, _ flags: Int32, _ mode: mode_t, hugePages: HugePages?) throws(SharedMemoryError) -> Int32 {
        switch region.location {
        case .posix(let object):
            return try Syscalls.shmOpen(object, flags, mode, region)
        case .file:
            let parent = try ObjectName(region)!.parent(region)
            return try Syscalls.openat(parent.descriptor, parent.entry, flags, mode, region)
        case .systemV, .systemVPrivate, .systemVID, .anonymous:
            preconditionFailure("only posix, file and memfd names name an object")
        case .memfd(let label):
            var flags = CSM_MFD_CLOEXEC | CSM_MFD_ALLOW_SEALING
            if case .explicit? = hugePages { flags |= CSM_MFD_HUGETLB | UInt32(bitPattern: hugePages!.sizeBits) }
            do {
                // MFD_NOEXEC_SEAL (Linux 6.3) also seals the mode against exec bits; older kernels say EINVAL.
                return try Syscalls.memfdCreate(label, flags | CSM_MFD_NOEXEC_SEAL, region)
            } catch where error.errno == .invalidArgument {
                return try Syscalls.memfdCreate(label, flags, region)
            }
        }
    }

    /// Removes the name, whatever object it holds (`shm_unlink`, or `unlinkat` in the file's directory).
    func unlink(_ region: RegionName) throws(SharedMemoryError) {
        switch self {
        case .posix(let object): try Syscalls.shmUnlink(object, region)
        case .file:
            let parent = try parent(region)
            try Syscalls.unlinkat(parent.descriptor, parent.entry, region)
        case .memfd: throw SharedMemoryError(.unsupported, "memfd regions have no name to remove; a memfd is freed when the last descriptor and mapping of it are gone", region: region)
        }
    }

    /// What to do when the file system is full, as the end of a sentence.
    var noSpaceAdvice: String {
        switch self {
        case .posix: ". /dev/shm is full: raise its size (in a container, `docker run --shm-size`), remove unused objects, or use a sysv region, which does not count against /dev/shm"
        case .file, .memfd: "; free space on that file system or put the file on another"
        }
    }

    /// What to do when a region is larger than its whole file system.
    var tooLargeAdvice: String {
        switch self {
        case .posix: "raise /dev/shm's size (in a container, `docker run --shm-size`) or use a sysv region"
        case .file, .memfd: "put it on a larger file system"
        }
    }

    /// Throws `invalidName` unless `name` is a name of `backend`'s; returns its object.
    static func of(_ name: RegionName, for backend: Backend) throws(SharedMemoryError) -> ObjectName {
        guard name.backend == backend, let object = ObjectName(name) else { throw notA(backend, name) }
        return object
    }

    /// Throws `invalidName` unless `name` is a name of `backend`'s, one of posix, file and memfd (the caller's).
    static func check(_ name: RegionName, for backend: Backend) throws(SharedMemoryError) {
        guard name.backend == backend else { throw notA(backend, name) }
    }

    private static func notA(_ backend: Backend, _ name: RegionName) -> SharedMemoryError {
        SharedMemoryError(.invalidName, "`\(name)` is not a \(backend): name; use SharedMemory.create to pick the backend from the name", region: name)
    }

    /// Whether the object `name` names has a name in a directory (a POSIX object in /dev/shm, where glibc's `shm_open`
    /// puts it, or a file); a memfd has none. On the name: no ``ObjectName`` (a copy of its text) is made for it.
    static func hasName(_ name: RegionName) -> Bool { name.backend == .posix || name.backend == .file }
}

/// The open descriptor behind a posix, file or memfd region, and everything those regions do alike (sizing with
/// `ftruncate`, reserving with `posix_fallocate`, resizing with `mremap`, `fstat`, `fchmod`). ``POSIXRegion``,
/// ``FileRegion`` and ``MemfdRegion`` each hold one next to their ``RegionMapping``, which the calls that move the
/// mapping take `inout`. (The region keeps the mapping itself, as a stored property, so that reading it on the
/// byte paths is a load and not a call.)
struct MappedObject: ~Copyable {
    // The region's name is the mapping's, passed in where needed: a copy kept here too was a retain and a release of
    // the name's text per create, 2 of the 8 a memfd create and detach made (#32).
    /// The open descriptor (read-only for a read-only attachment), closed when this goes.
    let descriptor: Int32
    /// Whether growth reserves space with `posix_fallocate`.
    private let reserve: Bool
    /// Whether the mapping must stay at its address (a fixed attach address): then resize may not move it.
    private let fixedAddress: Bool

    private init(descriptor: Int32, reserve: Bool, fixedAddress: Bool) {
        self.descriptor = descriptor
        self.reserve = reserve
        self.fixedAddress = fixedAddress
    }

    deinit { Syscalls.close(descriptor) }

    /// Hands the new object and its mapping to `region`, which makes the region of them.
    private static func made<R: ~Copyable>(
        _ name: RegionName, access: Access, descriptor: Int32, base: UnsafeMutableRawPointer?, size: Int,
        reserve: Bool, fixedAddress: Bool, _ region: (consuming MappedObject, RegionMapping) -> R
    ) -> R {
        region(MappedObject(descriptor: descriptor, reserve: reserve, fixedAddress: fixedAddress),
               RegionMapping(name: name, access: access, base: base, size: size, attachedBy: .mmap))
    }

    // MARK: Create and open

    /// Creates the object `name` names (a posix, file or memfd name: see ``ObjectName/check(_:for:)``) exclusively,
    /// sizes it and maps it; a failure part-way removes what was made.
    static func create<R: ~Copyable>(
        _ name: RegionName, size: Int, options: CreateOptions, _ region: (consuming MappedObject, RegionMapping) -> R
    ) throws(SharedMemoryError) -> R {
        try Checks.size(size, name)
        let mode = try Checks.mode(options.permissions, name)
        try Checks.address(options.address, name)
        try options.hugePages?.check(size: size, name)
        let descriptor: Int32
        do {
            descriptor = try ObjectName.open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode, hugePages: options.hugePages)
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
            if options.lifetime == .process && ObjectName.hasName(name) {
                let made = try Syscalls.fstat(descriptor, name)
                try LifetimeRecords.write(name, device: UInt64(made.st_dev), inode: UInt64(made.st_ino),
                                          born: try Syscalls.birthTime(descriptor, "", name))
            }
            let base = try RegionMapping.mapPrepared(descriptor: descriptor, size: size, access: .readWrite, address: options.address, flags: 0,
                                                     hugePages: options.hugePages, prefault: options.prefault, name)
            return made(name, access: .readWrite, descriptor: descriptor, base: base, size: size,
                        reserve: options.reserve, fixedAddress: options.address.isFixed, region)
        } catch {
            // Back out: nothing half-made stays behind; and only what this call made (another process may have
            // removed it and made its own under the name meanwhile).
            let made = try? Syscalls.fstat(descriptor, name)
            Syscalls.close(descriptor)
            if let made, ObjectName.hasName(name), let object = ObjectName(name) {
                try? object.parent(name).remove(ifStill: UInt64(made.st_dev), UInt64(made.st_ino), name)
                LifetimeRecords.remove(name, owner: made.st_uid, device: UInt64(made.st_dev), inode: UInt64(made.st_ino))
            }
            throw options.hugePages?.explain(error) ?? error
        }
    }

    /// Opens an existing object by name (a posix or file name) and maps it at its current size.
    static func open<R: ~Copyable>(
        _ name: RegionName, options: OpenOptions, _ region: (consuming MappedObject, RegionMapping) -> R
    ) throws(SharedMemoryError) -> R {
        try Checks.minimumSize(options.minimumSize, name)
        try Checks.address(options.address, name)
        let descriptor: Int32
        do {
            descriptor = try ObjectName.open(name, (options.access == .readWrite ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0, hugePages: nil)
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
            let base = try RegionMapping.mapPrepared(descriptor: descriptor, size: size, access: options.access, address: options.address, flags: 0,
                                                     hugePages: nil, prefault: options.prefault, name)
            return made(name, access: options.access, descriptor: descriptor, base: base, size: size,
                        reserve: true, fixedAddress: options.address.isFixed, region)
        } catch {
            Syscalls.close(descriptor)
            throw error
        }
    }

    /// Maps a descriptor received from another process (see ``SharedMemory/receive(from:options:)``). On
    /// failure the caller still owns the descriptor.
    static func adopt<R: ~Copyable>(
        _ descriptor: Int32, name: RegionName, size: Int, access: Access, prefault: Bool,
        _ region: (consuming MappedObject, RegionMapping) -> R
    ) throws(SharedMemoryError) -> R {
        let base = try RegionMapping.mapPrepared(descriptor: descriptor, size: size, access: access, address: nil, flags: 0,
                                                 hugePages: nil, prefault: prefault, name)
        return made(name, access: access, descriptor: descriptor, base: base, size: size, reserve: true, fixedAddress: false, region)
    }

    // MARK: Operations

    func resize(to newSize: Int, _ mapping: inout RegionMapping) throws(SharedMemoryError) {
        let name = mapping.name
        try mapping.requireWritable()
        try Checks.size(newSize, name)
        try RegionMapping.requireSoleHolder(&mapping, to: "be resized")
        let current = Int(try Syscalls.fstat(descriptor, name).st_size)
        do {
            // posix_fallocate extends the size by itself, so a failure after it must put the size back too.
            if reserve && newSize > current { try Self.reserveSpace(descriptor, from: current, count: newSize - current, name) }
            try Syscalls.ftruncate(descriptor, newSize, name)
            try Self.mapAgain(mapping, newSize, descriptor: descriptor, fixedAddress: fixedAddress)
        } catch {
            try? Syscalls.ftruncate(descriptor, current, name)  // leave the object as it was
            throw error
        }
    }

    /// Makes the object at least `newSize` bytes (reserving the space as a create does) without moving any mapping;
    /// never shrinks it, so two processes growing it at once cannot take away what the other added. A heap grows
    /// this way under its lock, and remaps after unlocking.
    func extend(to newSize: Int, _ mapping: RegionMapping) throws(SharedMemoryError) {
        let name = mapping.name
        try mapping.requireWritable()
        try Checks.size(newSize, name)
        let current = Int(try Syscalls.fstat(descriptor, name).st_size)
        guard newSize > current else { return }
        do {
            if reserve { try Self.reserveSpace(descriptor, from: current, count: newSize - current, name) }
            try Syscalls.ftruncate(descriptor, newSize, name)
        } catch {
            try? Syscalls.ftruncate(descriptor, current, name)
            throw error
        }
    }

    func remap(_ mapping: inout RegionMapping) throws(SharedMemoryError) -> Int {
        try RegionMapping.requireSoleHolder(&mapping, to: "be remapped")
        let current = Int(try Syscalls.fstat(descriptor, mapping.name).st_size)
        try Self.mapAgain(mapping, current, descriptor: descriptor, fixedAddress: fixedAddress)
        return current
    }

    /// Moves the mapping to `newSize` bytes: `mremap` (in place when the address is fixed), a fresh `mmap` after
    /// size 0, or nothing at all at size 0. The caller holds the only reference to the mapping. (Static: as a
    /// method borrowing this noncopyable struct, Swift 6.3's optimiser crashed on it.)
    private static func mapAgain(_ mapping: RegionMapping, _ newSize: Int, descriptor: Int32, fixedAddress: Bool) throws(SharedMemoryError) {
        let name = mapping.name
        guard newSize != mapping.size || (mapping.base == nil && newSize > 0) else { return }
        if newSize == 0 {
            try mapping.unmap()
        } else if let base = mapping.base {
            do {
                mapping.base = try Syscalls.mremap(base, mapping.size, newSize, mayMove: !fixedAddress, name)
            } catch where fixedAddress && error.errno == .noMemory {
                throw SharedMemoryError(.busy, "the region is at a fixed address and the memory after it is in use, so it cannot grow in place", region: name, systemCall: "mremap", errno: error.errno)
            }
        } else {
            mapping.base = try RegionMapping.map(descriptor: descriptor, size: newSize, access: mapping.access, address: nil, flags: 0, name)
        }
        mapping.size = newSize
    }

    // MARK: Without an attachment

    static func info(_ object: ObjectName, _ name: RegionName) throws(SharedMemoryError) -> RegionInfo {
        let parent = try object.parent(name)
        let status = try parent.status(name)
        try checkRegularFile(status, name)
        return info(name, status, born: try? Syscalls.birthTime(parent.descriptor, parent.entry, name),
                    creator: Creator.recorded(on: .path(parent.entryPath), status), attachCounts: ProcMaps.mappingCounts())
    }

    static func remove(_ object: ObjectName, _ name: RegionName) throws(SharedMemoryError) {
        let status = try? object.parent(name).status(name)
        try object.unlink(name)
        if let status {
            LifetimeRecords.remove(name, owner: status.st_uid, device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
        }
    }

    /// Removes the name only if it still holds the object with this device, inode and birth time (see
    /// ``ParentDirectory/remove(ifStill:_:born:_:)``), and its lifetime record.
    static func remove(_ object: ObjectName, _ name: RegionName, ifStill device: UInt64, _ inode: UInt64, born: Timestamp?, owner: UInt32) throws(SharedMemoryError) {
        try object.parent(name).remove(ifStill: device, inode, born: born, name)
        LifetimeRecords.remove(name, owner: owner, device: device, inode: inode)
    }

    /// Every POSIX object in /dev/shm, leaving out glibc's named semaphores (`sem.*`) and anything that is not a
    /// regular file.
    static func listPOSIX() throws(SharedMemoryError) -> [RegionInfo] {
        let counts = ProcMaps.mappingCounts()
        var regions: [RegionInfo] = []
        for entry in try Syscalls.listDirectory("/dev/shm", nil).sorted() where !entry.hasPrefix("sem.") {
            let path = "/dev/shm/" + entry
            guard let name = try? RegionName.posix("/" + entry),
                  let status = try? Syscalls.lstat(path, name),  // it may vanish while we look
                  status.st_mode & S_IFMT == S_IFREG
            else { continue }
            regions.append(info(name, status, born: try? Syscalls.birthTime(AT_FDCWD, path, name),
                                creator: Creator.recorded(on: .path(path), status), attachCounts: counts))
        }
        return regions
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
        guard let errno = error.errno, suspicious.contains(errno), ObjectName.hasName(name), let object = ObjectName(name),
              let status = try? object.parent(name).status(name), status.st_mode & S_IFMT != S_IFREG
        else { return error }
        return SharedMemoryError(.foreign, "the name holds \(describe(status)), not a region; SharedMemory maps only regular files and follows no links. Remove it if it is not yours", region: name, systemCall: error.systemCall, errno: error.errno)
    }

    /// The machine's memory in bytes, read once (`sysconf(_SC_PHYS_PAGES)` is a `sysinfo` system call).
    private static let physicalMemory = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Syscalls.pageSize

    /// `posix_fallocate`, with a `noSpace` error that says how full the file system is and what to do.
    private static func reserveSpace(_ descriptor: Int32, from offset: Int, count: Int, _ name: RegionName) throws(SharedMemoryError) {
        // A tmpfs without a size limit (the kernel's own, behind every memfd) would allocate page after page
        // until the machine runs out of memory: refuse up front what memory cannot hold.
        let memory = physicalMemory
        if count > memory, let fs = Syscalls.fstatvfs(descriptor), fs.f_blocks == 0 {
            throw SharedMemoryError(.noSpace, "\(humanSize(count)) is more than this machine's memory (\(humanSize(memory))); ask for less, or create it with reserve: false to allocate on first touch", region: name)
        }
        do {
            try Syscalls.fallocate(descriptor, offset, count, name)
        } catch where error.errno == .noSpace || error.errno == .fileTooLarge {
            let object = ObjectName(name)!
            var reason = "there is no room for \(humanSize(count)) more"
            if let fs = Syscalls.fstatvfs(descriptor) {
                let total = Int(fs.f_blocks) * Int(fs.f_frsize)
                let free = Int(fs.f_bavail) * Int(fs.f_frsize)
                if total > 0 && count > total {
                    throw SharedMemoryError(.noSpace, "\(humanSize(count)) is more than the whole file system holding it, \(humanSize(total)) (\(humanSize(free)) free): ask for less, or \(object.tooLargeAdvice)", region: name, systemCall: error.systemCall, errno: error.errno)
                }
                reason += ": the file system holding it has \(humanSize(free)) free of \(humanSize(total))"
            }
            reason += object.noSpaceAdvice
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
