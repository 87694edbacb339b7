import SystemPackage

/// A region whose backend was chosen at run time by its name: what ``SharedMemory/create(_:size:options:)``,
/// ``SharedMemory/open(_:options:)`` and ``SharedMemory/receive(from:options:)`` return.
///
/// A concrete type rather than `any SharedRegion`, so a class or an actor can keep one in a stored property and
/// call it (Swift 6.3 cannot open a noncopyable existential it only borrows), and so its calls need no dynamic
/// dispatch beyond the backend's own. Any backend's region becomes one with ``Region/erased()``.
///
/// Regions are not `Sendable`: ``SharedRegion/resize(to:)`` and ``SharedRegion/remap()`` move the mapping that
/// every other call reads. To use one from many tasks, keep it in an actor, as below; a fresh region can be
/// handed to the actor (or to one task) as it is.
///
/// ```swift
/// actor OrderBook {
///     let region: AnyRegion
///     init(_ region: consuming AnyRegion) { self.region = region }
///     func count() throws -> UInt64 { try region.get(UInt64.self, at: 0) }
/// }
/// let book = OrderBook(try SharedMemory.open(RegionName("posix:/orders")))
/// ```
public typealias AnyRegion = Region<RegionStorage>

/// An attachment to a region, generic over the backend's storage. Use the backend's name for it:
/// ``SystemVRegion``, ``POSIXRegion``, ``FileRegion``, ``AnonymousRegion``, ``MemfdRegion``; or take an
/// ``AnyRegion`` from ``SharedMemory`` and let the region name choose.
///
/// Each backend adds what only it has in an extension (a System V region's `id`, a file region's
/// descriptor).
public struct Region<Storage: RegionStorage>: SharedRegion, ~Copyable {
    @usableFromInline let storage: Storage

    init(_ storage: Storage) { self.storage = storage }

    deinit {
        if storage.handedOver {
            storage.handedOver = false  // erased(): the new handle owns the attachment now
        } else {
            storage.detachQuietly()
        }
    }

    /// This attachment as an ``AnyRegion``, the type the factory returns; nothing is detached or mapped again.
    public consuming func erased() -> AnyRegion {
        storage.handedOver = true
        return AnyRegion(storage)
    }

    public var name: RegionName { storage.name }
    public var backend: Backend { storage.name.backend }
    public var size: Int { storage.size }
    public var access: Access { storage.access }

    @inlinable
    public func withUnsafeBytes<R: ~Copyable, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.size))
    }

    @inlinable
    public func withUnsafeMutableBytes<R: ~Copyable>(
        _ body: (UnsafeMutableRawBufferPointer) throws(SharedMemoryError) -> R
    ) throws(SharedMemoryError) -> R {
        guard storage.access == .readWrite else { throw storage.readOnlyError() }
        return try body(UnsafeMutableRawBufferPointer(start: storage.base, count: storage.size))
    }

    // get and set here, not only in the protocol's extension: a call through `any SharedRegion` then lands in
    // code that knows the backend: 13 ns instead of 20 for a UInt64 (Benchmarks/, get-UInt64-any-SharedRegion).
    // The bounds check is the storage's, not the protocol's: that one would look up Region<Storage>'s metadata.
    @inlinable
    public func get<T: BitwiseCopyable>(_ type: T.Type, at offset: Int) throws(SharedMemoryError) -> T {
        try storage.checkBounds(offset: offset, count: MemoryLayout<T>.size)
        return UnsafeRawBufferPointer(start: storage.base, count: storage.size).loadUnaligned(fromByteOffset: offset, as: T.self)
    }

    @inlinable
    public func set<T: BitwiseCopyable>(_ value: T, at offset: Int) throws(SharedMemoryError) {
        try storage.checkBounds(offset: offset, count: MemoryLayout<T>.size)
        guard storage.access == .readWrite else { throw storage.readOnlyError() }
        UnsafeMutableRawBufferPointer(start: storage.base, count: storage.size).storeBytes(of: value, toByteOffset: offset, as: T.self)
    }

    public mutating func resize(to newSize: Int) throws(SharedMemoryError) { try storage.resize(to: newSize) }
    @discardableResult
    public mutating func remap() throws(SharedMemoryError) -> Int { try storage.remap() }
    public func remove() throws(SharedMemoryError) { try storage.remove() }
    public func info() throws(SharedMemoryError) -> RegionInfo { try storage.info() }
    public func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        try storage.setPermissions(permissions)
    }
    public func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) { try storage.setOwner(uid: uid, gid: gid) }
    public var fileDescriptor: FileDescriptor? { storage.fileDescriptor.map(FileDescriptor.init(rawValue:)) }
    public consuming func detach() throws(SharedMemoryError) { try storage.detach() }
}

/// The state behind one attachment: where it is mapped, how big it is, and the backend's handle (a System V id,
/// a file descriptor). Each backend is a final subclass; you meet them only as ``Region``'s parameter.
public class RegionStorage {
    /// The region's name.
    final let name: RegionName
    /// Read-write or read-only.
    @usableFromInline final let access: Access
    /// Where the region is mapped; `nil` only while it is mapped at size 0 or after detach.
    @usableFromInline @exclusivity(unchecked) final var base: UnsafeMutableRawPointer?
    /// The size of the mapping.
    @usableFromInline @exclusivity(unchecked) final var size: Int
    /// Whether ``release()`` is still to be done.
    private final var attached = true
    /// Set while one ``Region`` hands this storage to another (``Region/erased()``), so the first one's deinit
    /// leaves it attached.
    final var handedOver = false

    init(name: RegionName, access: Access, base: UnsafeMutableRawPointer?, size: Int) {
        self.name = name
        self.access = access
        self.base = base
        self.size = size
    }

    // MARK: What each backend overrides (all of it but remap, whose default suits fixed-size backends)

    /// Unmaps and closes what the backend holds.
    func release() throws(SharedMemoryError) { preconditionFailure("every backend overrides release") }

    func resize(to newSize: Int) throws(SharedMemoryError) { preconditionFailure("every backend overrides resize") }

    /// The descriptor behind the mapping, for backends that have one.
    var fileDescriptor: Int32? { nil }

    /// A backend whose regions cannot change size has nothing to remap.
    func remap() throws(SharedMemoryError) -> Int { size }

    func remove() throws(SharedMemoryError) { preconditionFailure("every backend overrides remove") }

    func info() throws(SharedMemoryError) -> RegionInfo { preconditionFailure("every backend overrides info") }

    func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        preconditionFailure("every backend overrides setPermissions")
    }

    func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) {
        preconditionFailure("every backend overrides setOwner")
    }

    // MARK: Shared by every backend

    final func detach() throws(SharedMemoryError) {
        guard attached else { return }
        attached = false
        try release()
    }

    final func detachQuietly() {
        do { try detach() } catch {}
    }

    /// Throws ``SharedMemoryError/Code/outOfBounds`` unless `offset..<offset+count` lies inside the mapping.
    @inlinable
    final func checkBounds(offset: Int, count: Int) throws(SharedMemoryError) {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw outOfBoundsError(offset: offset, count: count)
        }
    }

    @usableFromInline
    final func outOfBoundsError(offset: Int, count: Int) -> SharedMemoryError {
        .outOfBounds(offset: offset, count: count, size: size, region: name)
    }

    @usableFromInline
    final func readOnlyError() -> SharedMemoryError {
        SharedMemoryError(.readOnly, "this attachment was opened read-only; open the region with access .readWrite to write", region: name)
    }

    final func unsupported(_ operation: String, because reason: String) -> SharedMemoryError {
        SharedMemoryError(.unsupported, "\(name.backend) regions cannot \(operation): \(reason)", region: name)
    }

    final func requireWritable() throws(SharedMemoryError) {
        guard access == .readWrite else { throw readOnlyError() }
    }
}
