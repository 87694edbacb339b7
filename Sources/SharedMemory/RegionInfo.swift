import SystemPackage

/// What the kernel knows about a region: for System V everything in `shmid_ds`, for files what `fstat` says.
/// Fields a backend does not have are `nil`.
public struct RegionInfo: Sendable, Hashable {
    /// The region's name. A System V segment without a key (or removed, whose key the kernel cleared) is
    /// `sysv-id:ID`.
    public var name: RegionName
    /// The backend.
    public var backend: Backend { name.backend }
    /// The size in bytes, exactly as created or last resized.
    public var size: Int
    /// The nine permission bits; `nil` for anonymous memory, which has no mode.
    public var permissions: FilePermissions?
    /// The owner's user id.
    public var ownerUID: UInt32
    /// The owner's group id.
    public var ownerGID: UInt32
    /// The creator's user id (System V keeps it apart from the owner; otherwise `nil`).
    public var creatorUID: UInt32?
    /// The creator's group id (System V only).
    public var creatorGID: UInt32?
    /// How many attachments exist. System V counts exactly (`shm_nattch`). For posix and file regions it is the
    /// number of mappings of the object found in /proc/*/maps of the processes this user may inspect: all of them
    /// for root except ptrace-protected ones (a VM's or container's init), only its own for another user; so it
    /// is a lower bound. Processes that share one address space count once, as in `shm_nattch`: a child between
    /// `vfork` and `exec` (every `posix_spawn` and `Process.run`) is not another attachment; a forked copy is. `nil`
    /// for anonymous memory, and when /proc cannot be read.
    public var attachCount: Int?
    /// The process that created the region: System V's `shm_cpid`; for posix and file regions the pid that
    /// SharedMemory recorded at creation (in the extended attribute `user.sharedmemory.creator`), so `nil` for
    /// objects other programs made or on file systems without extended attributes.
    public var creatorPID: Int32?
    /// Whether the creator still runs, where ``creatorPID`` is known. A reused pid does not count: SharedMemory
    /// compares the process's start time with the creation (posix, file) or the segment's change time (sysv).
    public var creatorIsAlive: Bool?
    /// Whether the region outlives its creator (``Lifetime/persistent``) or is collected once its creator is gone
    /// and nothing attaches it (``Lifetime/process``): `.process` only where SharedMemory's lifetime record for it
    /// is found and believed (see ``CreateOptions/lifetime``), and for anonymous and memfd memory.
    public var lifetime: Lifetime = .persistent
    /// The last process to attach or detach (System V `shm_lpid`).
    public var lastPID: Int32?
    /// The last attach (System V `shm_atime`), or the last access for files (`st_atime`); `nil` if never.
    public var lastAttachTime: Timestamp?
    /// The last detach (System V `shm_dtime`); `nil` if never or unknown.
    public var lastDetachTime: Timestamp?
    /// The last change of mode, owner or size (`shm_ctime`, `st_ctime`).
    public var lastChangeTime: Timestamp?
    /// When the object was created (`statx` birth time; posix and file, where the file system records it). With
    /// ``device`` and ``inode`` it tells a re-created object from the original even where inode numbers are reused
    /// at once (ext4).
    public var creationTime: Timestamp?
    /// The device and inode that identify the object (posix and file), to tell a re-created name from the original.
    public var device: UInt64?
    /// See ``device``.
    public var inode: UInt64?
    /// The System V segment id.
    public var systemVID: Int32?
    /// The System V key; 0 for `IPC_PRIVATE` and for segments marked for removal.
    public var systemVKey: Int32?
    /// Removed but still attached: a System V segment marked `SHM_DEST` (it goes when the last attachment
    /// detaches), or, in an attachment's own `info()`, a posix or file object whose name was unlinked.
    public var isMarkedForRemoval: Bool
}

/// A point in time as the kernel stores it: seconds and nanoseconds since 1970-01-01 UTC.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Whole seconds since the epoch.
    public var seconds: Int
    /// Nanoseconds past ``seconds``.
    public var nanoseconds: Int

    /// A timestamp from seconds (and nanoseconds) since the epoch.
    public init(seconds: Int, nanoseconds: Int = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Whether `a` is earlier than `b`.
    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    /// Seconds since the epoch, with nine digits of fraction when there is one.
    public var description: String {
        guard nanoseconds != 0 else { return "\(seconds)" }
        let fraction = String(nanoseconds)
        return "\(seconds)." + String(repeating: "0", count: max(0, 9 - fraction.count)) + fraction
    }
}

/// A lifetime record that ``SharedMemory/removeStaleRecordsSaying(includingOtherUsers:)`` removed, and why. Removing
/// a record never removes a region: a record only ever makes one collectable.
public struct RemovedRecord: Sendable, Hashable {
    /// Why a record went.
    public enum Reason: Sendable, Hashable {
        /// The region it was written for no longer exists (removed by `ipcrm`, `rm`, or a remover that died first).
        case regionGone
        /// The region it was written for exists, but the record's words (the name, creator or birth it gives) do not
        /// describe it: it was not written by SharedMemory for that region, or was changed since, so it is not
        /// believed, and the region is left as it is.
        case notBelieved
        /// Not a record at all (not in the format, not a regular file of its owner, or too big).
        case unreadable
    }

    /// The region name the record gives (read from the record: input, print it escaped), or the file's path when it
    /// is unreadable.
    public var name: String
    /// Why it went.
    public var reason: Reason
}
