import Glibc
import SystemPackage

/// The one factory: create, open and inspect regions of any backend, chosen by the region name.
///
/// ```swift
/// let name = try RegionName("posix:/orders")         // or "sysv:0x5eed", "file:/var/tmp/orders", "anonymous"
/// let region = try SharedMemory.create(name, size: 1 << 20)
/// try region.set(bytes: Array("hello".utf8), at: 0)
/// // in another process:
/// let peer = try SharedMemory.open(name, options: .init(access: .readOnly))
/// let greeting = try peer.get(count: 5, at: 0)
/// ```
public enum SharedMemory {
    /// Creates a region of exactly `size` bytes and attaches it read-write. Exclusive: if the name exists, throws
    /// ``SharedMemoryError/Code/alreadyExists`` and leaves that region untouched. Mode 0600 unless `options` say
    /// otherwise, applied exactly whatever the umask. A failure part-way removes whatever was made.
    public static func create(
        _ name: RegionName, size: Int, options: CreateOptions = .init()
    ) throws(SharedMemoryError) -> any SharedRegion & ~Copyable {
        switch name.backend {
        case .sysv: try SystemVRegion.create(name, size: size, options: options)
        case .posix: try POSIXRegion.create(name, size: size, options: options)
        case .file: try FileRegion.create(name, size: size, options: options)
        case .anonymous: try AnonymousRegion.create(size: size, options: options)
        }
    }

    /// Attaches an existing region at its current size. Opening never creates, grows or shrinks it.
    /// Anonymous memory has no name to open: ``SharedMemoryError/Code/unsupported``.
    public static func open(
        _ name: RegionName, options: OpenOptions = .init()
    ) throws(SharedMemoryError) -> any SharedRegion & ~Copyable {
        switch name.backend {
        case .sysv: return try SystemVRegion.open(name, options: options)
        case .posix: return try POSIXRegion.open(name, options: options)
        case .file: return try FileRegion.open(name, options: options)
        case .anonymous: throw noName(name, "open")
        }
    }

    /// Opens the region if it exists (it must hold at least `size` bytes; it is never resized), and creates it
    /// with `size` bytes if not. Safe against a racing creator: exactly one process creates it.
    public static func openOrCreate(
        _ name: RegionName, size: Int, options: CreateOptions = .init()
    ) throws(SharedMemoryError) -> any SharedRegion & ~Copyable {
        guard name.backend.capabilities.contains(.named) else { throw noName(name, "open") }
        if case .systemVPrivate = name.location {
            throw SharedMemoryError(.invalidArgument, "sysv:private makes a new segment each time and cannot be opened; use create", region: name)
        }
        let openOptions = OpenOptions(access: .readWrite, minimumSize: size, address: options.address)
        // Create exclusively; if someone else has it, open theirs; if it vanished in between, try again.
        for _ in 0..<100 {
            do {
                return try create(name, size: size, options: options)
            } catch where error.code == .alreadyExists {
                do {
                    return try open(name, options: openOptions)
                } catch where error.code == .notFound {
                    continue
                }
            }
        }
        throw SharedMemoryError(.busy, "the region kept being created and removed by other processes while this one tried to open it", region: name)
    }

    /// Creates a region under a fresh name that no other process has or can guess, and returns it; read the name
    /// from ``SharedRegion/name`` to tell a peer.
    ///
    /// posix names are `/sm-` and 16 hex digits (64 bits from the system's secure random generator); file names
    /// are the same in `directory`; a name that exists is never adopted, another is drawn. sysv regions use
    /// `sysv:private`, whose id the kernel guarantees fresh. Anonymous memory has no name and is simply created.
    public static func createUnique(
        _ backend: Backend, size: Int, options: CreateOptions = .init(), directory: FilePath = "/tmp"
    ) throws(SharedMemoryError) -> any SharedRegion & ~Copyable {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            let random = "sm-" + hex(UInt32(truncatingIfNeeded: generator.next() as UInt64), width: 8)
                + hex(UInt32(truncatingIfNeeded: generator.next() as UInt64), width: 8)
            let name: RegionName
            switch backend {
            case .sysv: name = .systemVPrivate
            case .posix: name = try .posix("/" + random)
            case .file: name = try .file(directory.appending(random))
            case .anonymous: name = .anonymous
            }
            do {
                return try create(name, size: size, options: options)
            } catch where error.code == .alreadyExists {
                continue
            }
        }
        throw SharedMemoryError(.alreadyExists, "100 random names in a row were taken; something is creating names in bulk")
    }

    /// What the kernel knows about a region, without attaching it.
    public static func info(_ name: RegionName) throws(SharedMemoryError) -> RegionInfo {
        switch name.backend {
        case .sysv: try SystemVSegment.info(name)
        case .posix: try POSIXObject.info(name)
        case .file: try MappedFile.info(name)
        case .anonymous: throw noName(name, "look up")
        }
    }

    /// Removes a region's name without attaching it: System V `IPC_RMID`, `shm_unlink`, `unlink`. Attachments
    /// keep working until they detach. A missing name is ``SharedMemoryError/Code/notFound``.
    public static func remove(_ name: RegionName) throws(SharedMemoryError) {
        switch name.backend {
        case .sysv: try SystemVSegment.remove(name)
        case .posix: try POSIXObject.remove(name)
        case .file: try MappedFile.remove(name)
        case .anonymous: throw noName(name, "remove")
        }
    }

    /// Every region of a listable backend on this machine: System V segments from /proc/sysvipc/shm (those of
    /// every user, and those marked for removal), POSIX objects from /dev/shm. Other backends have no list:
    /// ``SharedMemoryError/Code/unsupported``.
    public static func list(_ backend: Backend) throws(SharedMemoryError) -> [RegionInfo] {
        switch backend {
        case .sysv: return try SystemVSegment.list()
        case .posix: return try POSIXObject.list()
        case .file, .anonymous:
            throw SharedMemoryError(.unsupported, "\(backend) regions cannot be listed: \(backend == .file ? "a file region can be any file on any file system" : "anonymous memory has no name")")
        }
    }

    /// The kernel's System V limits: the largest and smallest segment (`kernel.shmmax`, SHMMIN), how many
    /// segments may exist (`kernel.shmmni`) and how many pages they may hold in all (`kernel.shmall`).
    ///
    /// The corresponding C call is `shmctl(0, IPC_INFO, ...)`.
    public static func systemVLimits() throws(SharedMemoryError) -> SystemVLimits {
        let limits = try Syscalls.shmLimits()
        return SystemVLimits(maximumSize: limits.shmmax, minimumSize: limits.shmmin,
                             maximumSegments: limits.shmmni, maximumTotalPages: limits.shmall)
    }

    private static func noName(_ name: RegionName, _ operation: String) -> SharedMemoryError {
        SharedMemoryError(.unsupported, "anonymous memory has no name to \(operation): share it with children by creating it before fork, or use a named backend", region: name)
    }
}

/// The kernel's System V shared-memory limits, as ``SharedMemory/systemVLimits()`` reads them.
public struct SystemVLimits: Sendable, Hashable {
    /// The largest segment in bytes (`kernel.shmmax`).
    public var maximumSize: UInt
    /// The smallest segment in bytes (SHMMIN, 1 on Linux).
    public var minimumSize: UInt
    /// How many segments may exist at once (`kernel.shmmni`).
    public var maximumSegments: UInt
    /// How many pages all segments together may hold (`kernel.shmall`).
    public var maximumTotalPages: UInt
}
