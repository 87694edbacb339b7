import SystemPackage

/// A region whose backend was chosen at run time by its name: what ``SharedMemory/create(_:size:options:)``,
/// ``SharedMemory/open(_:options:)`` and ``SharedMemory/receive(from:options:)`` return. One case per backend,
/// holding that backend's region; a switch over it is exhaustive, and a backend's region becomes one with its
/// `erased()` (or by wrapping it in its case) without detaching or mapping again.
///
/// A concrete type rather than `any SharedRegion`, so a class or an actor can keep one in a stored property and
/// call it (Swift 6.3 cannot open a noncopyable existential it only borrows). What only one backend can do
/// (``seals``, ``addSeals(_:)``, ``systemVID``) is here too, and ``SharedMemoryError/Code/unsupported`` on the
/// others.
///
/// Regions are not `Sendable`: ``resize(to:)`` and ``remap()`` move the mapping that every other call reads. To
/// use one from many tasks, keep it in an actor, as below; a fresh region can be handed to the actor (or to one
/// task) as it is. Objects made in a region (``ProcessMutex``, ``SharedAtomic``, ...) are `Sendable`: they hold
/// the mapping, not the region.
///
/// ```swift
/// actor OrderBook {
///     let region: AnyRegion
///     init(_ region: consuming AnyRegion) { self.region = region }
///     func count() throws -> UInt64 { try region.get(UInt64.self, at: 0) }
/// }
/// let book = OrderBook(try SharedMemory.open(RegionName("posix:/orders")))
/// ```
public enum AnyRegion: SharedRegion, ~Copyable {
    /// A System V segment.
    case systemV(SystemVRegion)
    /// A POSIX shared-memory object.
    case posix(POSIXRegion)
    /// A mapped file.
    case file(FileRegion)
    /// Anonymous shared memory.
    case anonymous(AnonymousRegion)
    /// A memfd.
    case memfd(MemfdRegion)

    @inlinable
    public var mapping: RegionMapping {
        switch self {
        case .systemV(let region): region.mapping
        case .posix(let region): region.mapping
        case .file(let region): region.mapping
        case .anonymous(let region): region.mapping
        case .memfd(let region): region.mapping
        }
    }

    @inlinable
    public var _bytes: _MappedBytes {
        switch self {
        case .systemV(let region): region._bytes
        case .posix(let region): region._bytes
        case .file(let region): region._bytes
        case .anonymous(let region): region._bytes
        case .memfd(let region): region._bytes
        }
    }

    @inlinable
    public func withUnsafeBytes<R: ~Copyable, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        switch self {
        case .systemV(let region): try region.withUnsafeBytes(body)
        case .posix(let region): try region.withUnsafeBytes(body)
        case .file(let region): try region.withUnsafeBytes(body)
        case .anonymous(let region): try region.withUnsafeBytes(body)
        case .memfd(let region): try region.withUnsafeBytes(body)
        }
    }

    @inlinable
    public func withUnsafeMutableBytes<R: ~Copyable>(
        _ body: (UnsafeMutableRawBufferPointer) throws(SharedMemoryError) -> R
    ) throws(SharedMemoryError) -> R {
        switch self {
        case .systemV(let region): try region.withUnsafeMutableBytes(body)
        case .posix(let region): try region.withUnsafeMutableBytes(body)
        case .file(let region): try region.withUnsafeMutableBytes(body)
        case .anonymous(let region): try region.withUnsafeMutableBytes(body)
        case .memfd(let region): try region.withUnsafeMutableBytes(body)
        }
    }

    public var backend: Backend {
        switch self {
        case .systemV: .systemV
        case .posix: .posix
        case .file: .file
        case .anonymous: .anonymous
        case .memfd: .memfd
        }
    }

    public mutating func resize(to newSize: Int) throws(SharedMemoryError) {
        // Each case takes its region out, resizes it, and puts it back whatever happened (a `defer` cannot put
        // back what a case consumed, in Swift 6.3).
        switch consume self {
        case .systemV(var region):
            do {
                try region.resize(to: newSize)
            } catch {
                self = .systemV(region)
                throw error
            }
            self = .systemV(region)
        case .posix(var region):
            do {
                try region.resize(to: newSize)
            } catch {
                self = .posix(region)
                throw error
            }
            self = .posix(region)
        case .file(var region):
            do {
                try region.resize(to: newSize)
            } catch {
                self = .file(region)
                throw error
            }
            self = .file(region)
        case .anonymous(var region):
            do {
                try region.resize(to: newSize)
            } catch {
                self = .anonymous(region)
                throw error
            }
            self = .anonymous(region)
        case .memfd(var region):
            do {
                try region.resize(to: newSize)
            } catch {
                self = .memfd(region)
                throw error
            }
            self = .memfd(region)
        }
    }

    @discardableResult
    public mutating func remap() throws(SharedMemoryError) -> Int {
        switch consume self {
        case .systemV(var region):
            do {
                let size = try region.remap()
                self = .systemV(region)
                return size
            } catch {
                self = .systemV(region)
                throw error
            }
        case .posix(var region):
            do {
                let size = try region.remap()
                self = .posix(region)
                return size
            } catch {
                self = .posix(region)
                throw error
            }
        case .file(var region):
            do {
                let size = try region.remap()
                self = .file(region)
                return size
            } catch {
                self = .file(region)
                throw error
            }
        case .anonymous(var region):
            do {
                let size = try region.remap()
                self = .anonymous(region)
                return size
            } catch {
                self = .anonymous(region)
                throw error
            }
        case .memfd(var region):
            do {
                let size = try region.remap()
                self = .memfd(region)
                return size
            } catch {
                self = .memfd(region)
                throw error
            }
        }
    }

    // The backend's own detach, specialised, rather than the protocol's default through this enum's witnesses
    // (an outlined copy and destroy of the enum: ~300 of an anonymous lifecycle's instructions).
    public consuming func detach() throws(SharedMemoryError) {
        switch consume self {
        case .systemV(let region): try region.detach()
        case .posix(let region): try region.detach()
        case .file(let region): try region.detach()
        case .anonymous(let region): try region.detach()
        case .memfd(let region): try region.detach()
        }
    }

    public func remove() throws(SharedMemoryError) {
        switch self {
        case .systemV(let region): try region.remove()
        case .posix(let region): try region.remove()
        case .file(let region): try region.remove()
        case .anonymous(let region): try region.remove()
        case .memfd(let region): try region.remove()
        }
    }

    public func info() throws(SharedMemoryError) -> RegionInfo {
        switch self {
        case .systemV(let region): try region.info()
        case .posix(let region): try region.info()
        case .file(let region): try region.info()
        case .anonymous(let region): try region.info()
        case .memfd(let region): try region.info()
        }
    }

    public func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        switch self {
        case .systemV(let region): try region.setPermissions(permissions)
        case .posix(let region): try region.setPermissions(permissions)
        case .file(let region): try region.setPermissions(permissions)
        case .anonymous(let region): try region.setPermissions(permissions)
        case .memfd(let region): try region.setPermissions(permissions)
        }
    }

    public func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) {
        switch self {
        case .systemV(let region): try region.setOwner(uid: uid, gid: gid)
        case .posix(let region): try region.setOwner(uid: uid, gid: gid)
        case .file(let region): try region.setOwner(uid: uid, gid: gid)
        case .anonymous(let region): try region.setOwner(uid: uid, gid: gid)
        case .memfd(let region): try region.setOwner(uid: uid, gid: gid)
        }
    }

    public var fileDescriptor: FileDescriptor? {
        switch self {
        case .systemV: nil
        case .anonymous: nil
        case .posix(let region): region.fileDescriptor
        case .file(let region): region.fileDescriptor
        case .memfd(let region): region.fileDescriptor
        }
    }

    /// Grows the object under the region to at least `newSize` bytes without remapping (see
    /// ``MappedObject/extend(to:_:)``); System V and anonymous regions cannot grow.
    func extendObject(to newSize: Int) throws(SharedMemoryError) {
        switch self {
        case .posix(let region): try region.object.extend(to: newSize, region.mapping)
        case .file(let region): try region.object.extend(to: newSize, region.mapping)
        case .memfd(let region): try region.extend(to: newSize)
        case .systemV:
            throw unsupported("grow", because: "a System V segment keeps the size it was created with")
        case .anonymous:
            throw unsupported("grow", because: "anonymous shared memory keeps the size it was created with")
        }
    }

    // MARK: What only some backends have

    /// The segment id of a System V region, as `ipcs -m` shows it; ``SharedMemoryError/Code/unsupported`` for the
    /// other backends.
    public var systemVID: Int32 {
        get throws(SharedMemoryError) {
            switch self {
            case .systemV(let region): return region.id
            default:
                throw unsupported("have a System V id", because: "only sysv regions are System V segments")
            }
        }
    }

    /// The seals on the object, as a ``MemfdRegion``'s `seals` (or a posix or file region's) says; sysv and
    /// anonymous regions have no descriptor to seal (``SharedMemoryError/Code/unsupported``).
    ///
    /// The corresponding C call is `fcntl(fd, F_GET_SEALS)`.
    public var seals: Seals {
        get throws(SharedMemoryError) {
            switch self {
            case .posix(let region): try region.seals
            case .file(let region): try region.seals
            case .memfd(let region): try region.seals
            case .systemV:
                throw unsupported("have seals", because: "they have no file descriptor; only memfd regions can be sealed")
            case .anonymous:
                throw unsupported("have seals", because: "they have no file descriptor; only memfd regions can be sealed")
            }
        }
    }

    /// Adds seals to a memfd region, as ``MemfdRegion/addSeals(_:)`` says; any other backend is
    /// ``SharedMemoryError/Code/unsupported``.
    ///
    /// The corresponding C call is `fcntl(fd, F_ADD_SEALS, seals)`.
    public func addSeals(_ seals: Seals) throws(SharedMemoryError) {
        switch self {
        case .memfd(let region): try region.addSeals(seals)
        default:
            throw unsupported("be sealed", because: "only memfd regions can (memfd_create with MFD_ALLOW_SEALING)")
        }
    }
}
