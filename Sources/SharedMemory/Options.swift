import Glibc
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

/// Huge pages for a region.
public enum HugePages: Hashable, Sendable {
    /// Explicit huge pages from the pool the administrator reserved (`vm.nr_hugepages`): `SHM_HUGETLB`,
    /// `MAP_HUGETLB`, `MFD_HUGETLB`. The size must be a multiple of the page size. sysv, anonymous and memfd only.
    case explicit(HugePageSize)
    /// Transparent huge pages (`madvise(MADV_HUGEPAGE)`), which the kernel uses if it can. Only for shared
    /// memory (not file regions), and only when /sys/kernel/mm/transparent_hugepage/shmem_enabled is not
    /// `never` or `deny`; otherwise `unsupported`, since the advice would do nothing.
    case transparent
}

/// The size of an explicit huge page.
public enum HugePageSize: Int, Hashable, Sendable, CaseIterable {
    /// 2 MiB pages (x86-64's default huge page; `vm.nr_hugepages`).
    case size2MiB = 2_097_152
    /// 1 GiB pages (reserve them at boot, before memory fragments).
    case size1GiB = 1_073_741_824

    /// The size in bytes.
    public var bytes: Int { rawValue }
}

/// Whether a region is meant to outlive the process that created it: what `shm gc`
/// (``SharedMemory/orphans(includingOtherUsers:)``) may remove.
public enum Lifetime: String, Sendable, Hashable, CaseIterable {
    /// It lives until someone removes it (a named region) or its last mapping and descriptor go (anonymous,
    /// memfd), as the kernel keeps it: nothing in SharedMemory ever removes it on its own. The default, and what
    /// every region made by another program (`ipcmk`, `sysv_ipc`, C) is taken to be.
    case persistent
    /// It belongs to the process that created it: once that process is gone and nothing attaches it, `shm gc`
    /// removes it. Recorded at creation in a record only this user can write (see Docs/CLI.md); anonymous and
    /// memfd memory already dies with its processes, so nothing is recorded for them.
    case process
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
    /// Huge pages, explicit or transparent. Default: none (4 KiB pages).
    public var hugePages: HugePages?
    /// Map every page now (`MADV_POPULATE_WRITE`), so the first touch costs nothing. Default: `false`.
    public var prefault: Bool
    /// Whether the region outlives this process (``Lifetime/persistent``, the default) or is collected by
    /// `shm gc` once this process is gone and nothing attaches it (``Lifetime/process``).
    public var lifetime: Lifetime

    /// Options for creating a region; the defaults are mode 0600, space reserved, any address, small pages,
    /// persistent.
    public init(permissions: FilePermissions = [.ownerReadWrite], reserve: Bool = true, address: AttachAddress? = nil,
                hugePages: HugePages? = nil, prefault: Bool = false, lifetime: Lifetime = .persistent) {
        self.permissions = permissions
        self.reserve = reserve
        self.address = address
        self.hugePages = hugePages
        self.prefault = prefault
        self.lifetime = lifetime
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
    /// Map every page now (`MADV_POPULATE_WRITE`, or `_READ` for a read-only attachment). Default: `false`.
    public var prefault: Bool
    /// Refuse, as ``SharedMemoryError/Code/foreign``, a region that this user id does not own: a name someone else
    /// made first is never adopted. Default: any owner the kernel lets in. ``SharedMemory/openOrCreate(_:size:options:)``
    /// always requires its own user.
    public var requiredOwner: UInt32?
    /// Refuse, as ``SharedMemoryError/Code/foreign``, a region whose mode gives group or others any access, or
    /// (System V) that another user created. Default: `false`.
    public var requirePrivateMode: Bool
    /// Open a posix or file region whose object has more than one name (hard links). By default such an object
    /// is ``SharedMemoryError/Code/foreign``: a hard link is how another user can put an object they can reach
    /// under a name you trust. Default: `false`.
    public var acceptHardLinks: Bool
    /// The most access the region's mode may give (openOrCreate: the permissions it would create with).
    var allowedPermissions: UInt32?

    /// Options for opening a region; the defaults are read-write, any size, any address, any owner, one name.
    public init(access: Access = .readWrite, minimumSize: Int = 0, address: AttachAddress? = nil, prefault: Bool = false,
                requiredOwner: UInt32? = nil, requirePrivateMode: Bool = false, acceptHardLinks: Bool = false) {
        self.access = access
        self.minimumSize = minimumSize
        self.address = address
        self.prefault = prefault
        self.requiredOwner = requiredOwner
        self.requirePrivateMode = requirePrivateMode
        self.acceptHardLinks = acceptHardLinks
    }
    /// What `openOrCreate` opens a region that exists with: read-write, at least `size` bytes, this user's, a mode
    /// no wider than `options` would create with, at `options`' address.
    init(existing options: CreateOptions, size: Int) {
        self.init(access: .readWrite, minimumSize: size, address: options.address, requiredOwner: geteuid())
        allowedPermissions = UInt32(options.permissions.rawValue)
    }
}
