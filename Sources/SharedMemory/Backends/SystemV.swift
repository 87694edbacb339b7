import CSharedMemory
import Glibc
import SystemPackage

/// A System V shared-memory region (`sysv:KEY`, `sysv:private`, `sysv-id:ID`): a segment and where `shmat` put
/// it.
///
/// A segment's size is fixed by `shmget`; `IPC_RMID` frees its key at once and its memory after the last detach.
public struct SystemVRegion: SharedRegion, ~Copyable {
    public let mapping: RegionMapping
    public let _bytes: _MappedBytes
    /// The segment id (`shmid`), as `ipcs -m` shows it.
    public let id: Int32

    private init(name: RegionName, access: Access, id: Int32, base: UnsafeMutableRawPointer, size: Int) {
        self.id = id
        mapping = RegionMapping(name: name, access: access, base: base, size: size, attachedBy: .shmat)
        _bytes = _MappedBytes(mapping)
    }

    // The mode bits of shm_perm.mode beyond rwx.
    private static let markedForRemoval: mode_t = 0o1000  // SHM_DEST

    // MARK: Create and open

    /// Creates a segment of exactly `size` bytes, exclusively (`IPC_CREAT | IPC_EXCL`), and attaches it.
    /// For `sysv:private` the region's ``name`` is then `sysv-id:ID`.
    ///
    /// The corresponding C functions are `shmget` and `shmat`.
    public static func create(_ name: RegionName, size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> SystemVRegion {
        let key: key_t
        switch name.location {
        case .systemV(let k): key = k
        case .systemVPrivate: key = IPC_PRIVATE
        case .systemVID: throw SharedMemoryError(.invalidArgument, "a segment's id is chosen by the kernel; create with sysv:KEY or sysv:private", region: name)
        default: throw notSystemV(name)
        }
        try Checks.size(size, name)
        let mode = try Checks.mode(options.permissions, name)
        try Checks.address(options.address, name)
        try options.hugePages?.check(size: size, name)

        var flags = IPC_CREAT | IPC_EXCL | Int32(mode)
        if !options.reserve { flags |= SHM_NORESERVE }
        if case .explicit? = options.hugePages { flags |= SHM_HUGETLB | options.hugePages!.sizeBits }
        let id: Int32
        do {
            id = try Syscalls.shmget(key, size, flags, name)
        } catch where error.errno == .invalidArgument {
            throw sizeLimitError(size, name, error)
        } catch {
            throw options.hugePages?.explain(error) ?? error
        }
        let created = key == IPC_PRIVATE ? try! RegionName.systemV(id: id) : name
        do throws(SharedMemoryError) {
            // shmget does not apply the umask, but set the mode once more so the promise does not rest on that.
            var ds = try Syscalls.shmStat(id, created)
            if ds.shm_perm.mode & 0o777 != mode {
                ds.shm_perm.mode = (ds.shm_perm.mode & ~0o777) | mode
                try Syscalls.shmSet(id, ds, created)
            }
            let base = try attach(id, access: .readWrite, address: options.address, created)
            try RegionMapping.prepare(base, size: size, access: .readWrite, hugePages: options.hugePages, prefault: options.prefault, created) {
                try? Syscalls.shmdt(base, created)
            }
            if options.lifetime == .process {
                do {
                    try LifetimeRecords.write(created, id: id)
                } catch {
                    try? Syscalls.shmdt(base, created)
                    throw error
                }
            }
            return SystemVRegion(name: created, access: .readWrite, id: id, base: base, size: size)
        } catch where error.segmentGone {
            // Another process found the new segment by its key and removed it before we could attach.
            throw SharedMemoryError(.removed, "another process removed the segment while it was being created; try again", region: created, systemCall: error.systemCall, errno: error.errno)
        } catch {
            try? Syscalls.shmRemove(id, created)  // back out
            LifetimeRecords.remove(created, owner: geteuid(), id: id)
            throw options.hugePages?.explain(error) ?? error
        }
    }

    /// Attaches an existing segment by key or id.
    ///
    /// The corresponding C functions are `shmget(key, 0, 0)`, `shmctl(IPC_STAT)` and `shmat`.
    public static func open(_ name: RegionName, options: OpenOptions = .init()) throws(SharedMemoryError) -> SystemVRegion {
        try Checks.minimumSize(options.minimumSize, name)
        try Checks.address(options.address, name)
        let id = try lookUp(name)
        let ds = try stat(id, name)
        try Checks.trust(owner: ds.shm_perm.uid, creator: ds.shm_perm.cuid, mode: ds.shm_perm.mode, options, name)
        let size = Int(ds.shm_segsz)
        try Checks.actualSize(size, atLeast: options.minimumSize, name)
        let base = try attach(id, access: options.access, address: options.address, name)
        try RegionMapping.prepare(base, size: size, access: options.access, hugePages: nil, prefault: options.prefault, name) {
            try? Syscalls.shmdt(base, name)
        }
        return SystemVRegion(name: name, access: options.access, id: id, base: base, size: size)
    }

    /// The id of the segment a name refers to: `shmget(key, 0, 0)` for a key, the id itself for `sysv-id:`.
    private static func lookUp(_ name: RegionName) throws(SharedMemoryError) -> Int32 {
        switch name.location {
        case .systemV(let key):
            return try Syscalls.shmget(key, 0, 0, name)
        case .systemVID(let id):
            return id
        case .systemVPrivate:
            throw SharedMemoryError(.invalidArgument, "sysv:private makes a new segment each time and cannot be opened; open the segment by its id (sysv-id:ID)", region: name)
        default:
            throw notSystemV(name)
        }
    }

    /// `IPC_STAT`, with a segment that is gone reported as `notFound`.
    private static func statIfPresent(_ id: Int32, _ name: RegionName) throws(SharedMemoryError) -> shmid_ds {
        do {
            return try Syscalls.shmStat(id, name)
        } catch where error.segmentGone {
            throw SharedMemoryError(.notFound, "no segment has this id (it was never created, or it was removed)", region: name, systemCall: error.systemCall, errno: error.errno)
        }
    }

    /// `IPC_STAT`, with a segment that is gone or marked for removal reported as `notFound`.
    private static func stat(_ id: Int32, _ name: RegionName) throws(SharedMemoryError) -> shmid_ds {
        let ds = try statIfPresent(id, name)
        if ds.shm_perm.mode & markedForRemoval != 0 {
            throw SharedMemoryError(.notFound, "it was removed (IPC_RMID) and lives on only until its last attachment detaches", region: name)
        }
        return ds
    }

    /// `shmat`, with the attach-address rules: a hint falls back to any address, a fixed address that is taken
    /// is `busy`.
    private static func attach(_ id: Int32, access: Access, address: AttachAddress?, _ name: RegionName) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let flags: Int32 = access == .readOnly ? SHM_RDONLY : 0
        switch address {
        case nil, .hint:
            if case .hint(let value)? = address,
               let base = try? Syscalls.shmat(id, UnsafeRawPointer(bitPattern: value), flags | SHM_RND, name) {
                return base
            }
            do {
                return try Syscalls.shmat(id, nil, flags, name)
            } catch where error.segmentGone {
                _ = try stat(id, name)  // gone since we looked: notFound
                throw error
            }
        case .fixed(let value):
            do {
                return try Syscalls.shmat(id, UnsafeRawPointer(bitPattern: value), flags, name)
            } catch where error.errno == .invalidArgument {
                _ = try stat(id, name)  // still there, so the address was the problem
                throw RegionMapping.addressBusy(address, name)
            }
        }
    }

    private static func sizeLimitError(_ size: Int, _ name: RegionName, _ error: SharedMemoryError) -> SharedMemoryError {
        var reason = "the kernel refused a segment of \(size) bytes"
        if let limits = try? Syscalls.shmLimits() {
            reason += ": sizes from \(limits.shmmin) to \(limits.shmmax) bytes are allowed (kernel.shmmax); raise it with sysctl, or use a posix or file region"
        }
        return SharedMemoryError(.limitExceeded, reason, region: name, systemCall: error.systemCall, errno: error.errno)
    }

    private static func notSystemV(_ name: RegionName) -> SharedMemoryError {
        SharedMemoryError(.invalidName, "`\(name)` is not a sysv: or sysv-id: name; use SharedMemory.create to pick the backend from the name", region: name)
    }

    // MARK: Operations

    /// This attachment as an ``AnyRegion``, the type the factory returns; nothing is detached or mapped again.
    public consuming func erased() -> AnyRegion { .systemV(self) }

    public mutating func resize(to newSize: Int) throws(SharedMemoryError) {
        throw unsupported("be resized", because: "a segment's size is fixed when shmget creates it; create a new segment and copy, or use a posix or file region")
    }

    /// A fixed-size segment has nothing to remap: its size.
    @discardableResult
    public mutating func remap() throws(SharedMemoryError) -> Int { size }

    /// System V segments have no descriptor.
    public var fileDescriptor: FileDescriptor? { nil }


    public func remove() throws(SharedMemoryError) {
        let ds: shmid_ds
        do {
            ds = try Self.stat(id, name)  // a second remove is notFound, not a silent success
        } catch where error.code == .notFound {
            // If the key now names another segment, say that ours was replaced, and leave the new one alone.
            if case .systemV(let key) = name.location, let current = try? Syscalls.shmget(key, 0, 0, name), current != id {
                throw SharedMemoryError(.removed, "this attachment's segment was removed and its key now belongs to another segment (id \(current)), which was left alone", region: name)
            }
            throw error
        }
        try Syscalls.shmRemove(id, name)
        LifetimeRecords.remove(name, owner: ds.shm_perm.cuid, id: id)
    }

    public func info() throws(SharedMemoryError) -> RegionInfo {
        Self.info(name, id: id, try Syscalls.shmStat(id, name))
    }

    public func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        let mode = try Checks.mode(permissions, name)
        var ds = try Syscalls.shmStat(id, name)
        ds.shm_perm.mode = (ds.shm_perm.mode & ~0o777) | mode
        try Syscalls.shmSet(id, ds, name)
    }

    public func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) {
        var ds = try Syscalls.shmStat(id, name)
        ds.shm_perm.uid = uid
        ds.shm_perm.gid = gid
        try Syscalls.shmSet(id, ds, name)
    }

    // MARK: Without an attachment

    static func info(_ name: RegionName) throws(SharedMemoryError) -> RegionInfo {
        let id = try lookUp(name)
        return info(name, id: id, try statIfPresent(id, name))
    }

    static func remove(_ name: RegionName) throws(SharedMemoryError) {
        let id = try lookUp(name)
        let ds = try stat(id, name)
        do {
            try Syscalls.shmRemove(id, name)
        } catch where error.segmentGone {
            // Another process removed it between the look-up and IPC_RMID.
            throw SharedMemoryError(.notFound, "it was removed (by another process) while this one was removing it", region: name, systemCall: error.systemCall, errno: error.errno)
        }
        LifetimeRecords.remove(name, owner: ds.shm_perm.cuid, id: id)
    }

    /// Every segment on the machine, from /proc/sysvipc/shm (what `ipcs -m` reads), including segments marked for
    /// removal and segments other users own.
    static func list() throws(SharedMemoryError) -> [RegionInfo] {
        let text = String(decoding: try Syscalls.readFile("/proc/sysvipc/shm"), as: UTF8.self)
        var regions: [RegionInfo] = []
        for line in text.split(separator: "\n").dropFirst() {
            // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 14,
                  let key = Int32(f[0]), let id = Int32(f[1]), let perms = mode_t(f[2], radix: 8),
                  let size = Int(f[3]), let cpid = Int32(f[4]), let lpid = Int32(f[5]), let nattch = Int(f[6]),
                  let uid = UInt32(f[7]), let gid = UInt32(f[8]), let cuid = UInt32(f[9]), let cgid = UInt32(f[10]),
                  let atime = Int(f[11]), let dtime = Int(f[12]), let ctime = Int(f[13])
            else { continue }
            let name = key == IPC_PRIVATE ? try! RegionName.systemV(id: id) : try! RegionName.systemV(key: key)
            let record = LifetimeRecords.record(for: name, owner: cuid, id: id, creatorPID: cpid)
            regions.append(RegionInfo(
                name: name, size: size, permissions: FilePermissions(rawValue: CModeT(perms & 0o777)),
                ownerUID: uid, ownerGID: gid, creatorUID: cuid, creatorGID: cgid, attachCount: nattch,
                creatorPID: cpid, creatorIsAlive: record?.creator.isAlive ?? Creator.isAlive(pid: cpid, changed: ctime),
                lifetime: record == nil ? .persistent : .process, lastPID: lpid,
                lastAttachTime: atime == 0 ? nil : Timestamp(seconds: atime),
                lastDetachTime: dtime == 0 ? nil : Timestamp(seconds: dtime),
                lastChangeTime: Timestamp(seconds: ctime),
                systemVID: id, systemVKey: key, isMarkedForRemoval: perms & markedForRemoval != 0))
        }
        return regions
    }

    private static func info(_ name: RegionName, id: Int32, _ ds: shmid_ds) -> RegionInfo {
        let record = LifetimeRecords.record(for: name, owner: ds.shm_perm.cuid, id: id, creatorPID: ds.shm_cpid)
        return RegionInfo(
            name: name,
            size: Int(ds.shm_segsz),
            permissions: FilePermissions(rawValue: CModeT(ds.shm_perm.mode & 0o777)),
            ownerUID: ds.shm_perm.uid,
            ownerGID: ds.shm_perm.gid,
            creatorUID: ds.shm_perm.cuid,
            creatorGID: ds.shm_perm.cgid,
            attachCount: Int(ds.shm_nattch),
            creatorPID: ds.shm_cpid,
            creatorIsAlive: record?.creator.isAlive ?? Creator.isAlive(pid: ds.shm_cpid, changed: ds.shm_ctime),
            lifetime: record == nil ? .persistent : .process,
            lastPID: ds.shm_lpid,
            lastAttachTime: ds.shm_atime == 0 ? nil : Timestamp(seconds: ds.shm_atime),
            lastDetachTime: ds.shm_dtime == 0 ? nil : Timestamp(seconds: ds.shm_dtime),
            lastChangeTime: Timestamp(seconds: ds.shm_ctime),
            systemVID: id,
            systemVKey: ds.shm_perm.__key,
            isMarkedForRemoval: ds.shm_perm.mode & markedForRemoval != 0)
    }
}

private extension SharedMemoryError {
    /// What shmat and shmctl say of an id whose segment no longer exists (EINVAL, or EIDRM while it goes).
    var segmentGone: Bool { errno == .invalidArgument || errno == .identifierRemoved }
}
