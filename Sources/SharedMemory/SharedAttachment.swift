import SystemPackage

/// One attachment that many tasks (or threads) share: a `Sendable`, copyable reference to a region's mapping, from
/// which each task makes its own side or handle. A region (``AnyRegion``, ``POSIXRegion``…) is noncopyable, so a
/// `@Sendable` closure cannot capture it, and without this form 200 tasks waiting on one region needed 200 mappings.
///
/// ```swift
/// let region = try SharedMemory.open(RegionName("posix:/jobs"))
/// let shared = SharedAttachment(region)            // one mapping for every task
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     for i in 0..<200 {
///         group.addTask {
///             let event = try ProcessEvent.existing(in: shared, at: i * 4)   // each task its own handle
///             try await event.waitAsync(timeout: .seconds(30))
///         }
///     }
///     try await group.waitForAll()
/// }
/// ```
///
/// It is a ``SharedRegion``: everything made in a region at an offset (rings' sides, services' handles, locks,
/// events, atomics, seqlock cells) takes it, and its bytes can be read and written. What changes the region itself
/// is the region's owner's to do, so `resize`, `remap`, `remove`, `setPermissions` and `setOwner` are
/// ``SharedMemoryError/Code/unsupported`` here (and while a shared attachment exists, the region cannot be resized or
/// remapped: its mapping is held). The memory stays mapped while any copy of it, or any handle made from it, exists,
/// whatever becomes of the region's own handle.
public struct SharedAttachment: SharedRegion, Sendable {
    public let mapping: RegionMapping

    /// Shares `region`'s mapping. The region may be detached or dropped afterwards.
    public init(_ region: borrowing some SharedRegion & ~Copyable) {
        mapping = region.mapping
    }

    public mutating func resize(to newSize: Int) throws(SharedMemoryError) {
        throw refused("resize")
    }

    @discardableResult
    public mutating func remap() throws(SharedMemoryError) -> Int {
        throw refused("remap")
    }

    public func remove() throws(SharedMemoryError) {
        throw refused("remove the region")
    }

    /// What the kernel reports of the region, looked up by its name (`SharedMemory.info`); `unsupported` for a region
    /// with no name (anonymous, memfd).
    public func info() throws(SharedMemoryError) -> RegionInfo {
        guard backend.capabilities.contains(.named) else { throw refused("report its information without a name") }
        return try SharedMemory.info(name)
    }

    public func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        throw refused("change permissions")
    }

    public func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) {
        throw refused("change its owner")
    }

    /// None: the descriptor belongs to the region's own handle.
    public var fileDescriptor: FileDescriptor? { nil }

    private func refused(_ operation: String) -> SharedMemoryError {
        SharedMemoryError(.unsupported, "a shared attachment cannot \(operation): that is for the region's own handle, which owns it", region: name)
    }
}
