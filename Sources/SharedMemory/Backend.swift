/// A kernel mechanism for sharing memory between processes.
public enum Backend: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// System V shared memory: `shmget`, `shmat`, `shmdt`, `shmctl`. Named by a key or an id; fixed size.
    case sysv
    /// POSIX shared memory: `shm_open` (a file in /dev/shm), `ftruncate`, `mmap`.
    case posix
    /// A file on any file system mapped with `mmap(MAP_SHARED)`.
    case file
    /// Anonymous shared memory, `mmap(MAP_SHARED | MAP_ANONYMOUS)`: shared with children created by `fork` only.
    case anonymous

    public var description: String { rawValue }

    /// What this backend can do. A call it cannot do throws ``SharedMemoryError/Code/unsupported``, never
    /// something subtly different.
    public var capabilities: Capabilities {
        switch self {
        case .sysv: [.named, .sharedWithChildren, .readOnlyAttach, .exactAttachCount, .listable, .survivesProcessExit, .changeOwner]
        case .posix: [.named, .sharedWithChildren, .resizable, .readOnlyAttach, .listable, .survivesProcessExit, .changeOwner]
        case .file: [.named, .sharedWithChildren, .resizable, .readOnlyAttach, .survivesProcessExit, .changeOwner]
        case .anonymous: [.sharedWithChildren]
        }
    }
}

/// What a backend can do, as ``Backend/capabilities`` states it.
public struct Capabilities: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Another process can `open` the region by its name.
    public static let named = Capabilities(rawValue: 1 << 0)
    /// `resize(to:)` grows and shrinks the region after creation.
    public static let resizable = Capabilities(rawValue: 1 << 1)
    /// An attachment can be opened read-only, enforced by the kernel.
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
}
