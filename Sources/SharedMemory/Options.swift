import SystemPackage

/// Whether an attachment may write.
public enum Access: String, Sendable, Hashable, CaseIterable {
    /// Read and write (`PROT_READ | PROT_WRITE`).
    case readWrite
    /// Read only, enforced by the kernel (`SHM_RDONLY`, `O_RDONLY` + `PROT_READ`): the write API throws
    /// ``SharedMemoryError/Code/readOnly`` and a write through a raw pointer is a SIGSEGV.
    case readOnly
}

/// Where to map a region in this process's address space.
public enum AttachAddress: Hashable, Sendable {
    /// A preference: the kernel uses the address if it is free and picks another if not (`mmap` hint; for
    /// System V, `shmat` at the address with `SHM_RND`, falling back to any address).
    case hint(UInt)
    /// Exactly this address, page-aligned, or the call fails with ``SharedMemoryError/Code/busy`` if anything
    /// is mapped there. Never replaces an existing mapping (`MAP_FIXED_NOREPLACE`; `shmat` without `SHM_REMAP`).
    case fixed(UInt)

    var address: UInt {
        switch self { case .hint(let a), .fixed(let a): a }
    }
}

/// How to create a region.
public struct CreateOptions: Sendable, Hashable {
    /// The exact mode of the new region, whatever the process's umask (applied again with `fchmod` or `IPC_SET`).
    /// Only the nine permission bits are allowed. Default: owner read and write (0600).
    public var permissions: FilePermissions
    /// Make sure the memory exists now rather than at first touch. For posix and file regions this reserves the
    /// space with `posix_fallocate`, at creation and at every resize, so a full /dev/shm is a
    /// ``SharedMemoryError/Code/noSpace`` error now instead of a SIGBUS later. For sysv and anonymous regions
    /// the kernel charges the memory at creation; `false` asks it not to (`SHM_NORESERVE`, `MAP_NORESERVE`).
    /// Default: `true`.
    public var reserve: Bool
    /// Where to map the region in this process. Default: anywhere.
    public var address: AttachAddress?

    public init(permissions: FilePermissions = [.ownerReadWrite], reserve: Bool = true, address: AttachAddress? = nil) {
        self.permissions = permissions
        self.reserve = reserve
        self.address = address
    }
}

/// How to open an existing region.
public struct OpenOptions: Sendable, Hashable {
    /// Read-write (default) or read-only, enforced by the kernel.
    public var access: Access
    /// Refuse a region smaller than this (``SharedMemoryError/Code/invalidArgument``); it is never grown or shrunk
    /// by opening. Default: any size.
    public var minimumSize: Int
    /// Where to map the region in this process. Default: anywhere.
    public var address: AttachAddress?

    public init(access: Access = .readWrite, minimumSize: Int = 0, address: AttachAddress? = nil) {
        self.access = access
        self.minimumSize = minimumSize
        self.address = address
    }
}
