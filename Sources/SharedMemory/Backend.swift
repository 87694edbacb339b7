/// A kernel mechanism for sharing memory between processes.
public enum Backend: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// System V shared memory: `shmget`, `shmat`, `shmdt`, `shmctl`. Named by a key or an id; fixed size.
    case systemV = "sysv"
    /// POSIX shared memory: `shm_open` (a file in /dev/shm), `ftruncate`, `mmap`.
    case posix
    /// A file on any file system mapped with `mmap(MAP_SHARED)`.
    case file
    /// Anonymous shared memory, `mmap(MAP_SHARED | MAP_ANONYMOUS)`: shared with children created by `fork` only.
    case anonymous
    /// `memfd_create`: memory with no name anywhere, shared by passing its descriptor over a Unix socket (or
    /// across `fork`), resizable, and sealable against shrinking, growing and writing.
    case memfd

    /// The name used in region names and on the command line: `sysv`, `posix`, `file`, `anonymous`, `memfd`.
    public var description: String { rawValue }

    /// What this backend can do. A call it cannot do throws ``SharedMemoryError/Code/unsupported``, never
    /// something subtly different.
    public var capabilities: Capabilities {
        switch self {
        case .systemV: [.named, .sharedWithChildren, .readOnlyAttach, .exactAttachCount, .listable, .survivesProcessExit, .changeOwner, .hugePages]
        case .posix: [.named, .sharedWithChildren, .resizable, .readOnlyAttach, .listable, .survivesProcessExit, .changeOwner, .descriptorPassing]
        case .file: [.named, .sharedWithChildren, .resizable, .readOnlyAttach, .survivesProcessExit, .changeOwner, .descriptorPassing]
        case .anonymous: [.sharedWithChildren, .hugePages]
        case .memfd: [.sharedWithChildren, .resizable, .readOnlyAttach, .changeOwner, .descriptorPassing, .sealing, .hugePages]
        }
    }
}

/// What a backend can do, as ``Backend/capabilities`` states it.
public struct Capabilities: OptionSet, Sendable, Hashable {
    /// The capability bits.
    public let rawValue: UInt32
    /// Capabilities from their bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Another process can `open` the region by its name.
    public static let named = Capabilities(rawValue: 1 << 0)
    /// `resize(to:)` grows and shrinks the region after creation.
    public static let resizable = Capabilities(rawValue: 1 << 1)
    /// An attachment can be read-only, enforced by the kernel: opened read-only by name, or (memfd) received
    /// through a read-only descriptor.
    public static let readOnlyAttach = Capabilities(rawValue: 1 << 2)
    /// The kernel counts attachments exactly (`shm_nattch`). Other named backends count mappings found in /proc.
    public static let exactAttachCount = Capabilities(rawValue: 1 << 3)
    /// `SharedMemory.list` can enumerate every region of this backend on the machine.
    public static let listable = Capabilities(rawValue: 1 << 4)
    /// The region and its contents outlive the process that created it, until removed.
    public static let survivesProcessExit = Capabilities(rawValue: 1 << 5)
    /// Children created by `fork` share the memory (every backend does; anonymous memory is shared only so).
    public static let sharedWithChildren = Capabilities(rawValue: 1 << 6)
    /// Mode and owner can be changed after creation (`IPC_SET`, `fchmod`, `fchown`).
    public static let changeOwner = Capabilities(rawValue: 1 << 7)
    /// The region has a file descriptor that can be sent to another process over a Unix socket.
    public static let descriptorPassing = Capabilities(rawValue: 1 << 8)
    /// Seals (`F_ADD_SEALS`) can forbid shrinking, growing or writing, for every holder, for good.
    public static let sealing = Capabilities(rawValue: 1 << 9)
    /// Explicit huge pages (`SHM_HUGETLB`, `MAP_HUGETLB`, `MFD_HUGETLB`) when the system has some reserved.
    public static let hugePages = Capabilities(rawValue: 1 << 10)
}
