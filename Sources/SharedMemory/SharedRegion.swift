import SystemPackage

/// An attachment to a region of shared memory: what every backend's region offers.
///
/// An attachment is a noncopyable handle. Dropping it detaches as a best effort; ``detach()`` does the same and
/// reports errors. Neither removes the region's name: that is always an explicit ``remove()``. The conforming
/// types are the five backends' regions and ``AnyRegion``; the requirements below that have a default come from
/// ``mapping``.
///
/// Every operation borrows the region except ``resize(to:)`` and ``remap()``, which may move the mapping: they are
/// `mutating`, so they need a `var` and cannot run while a view of the bytes (``withBytes(_:)``,
/// ``withUnsafeBytes(_:)``) is in use: the compiler refuses it.
public protocol SharedRegion: ~Copyable {
    /// This attachment's mapping, which the objects made in the region (locks, events, atomics, ring sides) hold
    /// so that the memory stays mapped while they exist. Every other property and the byte access below come
    /// from it.
    var mapping: RegionMapping { get }

    /// Where ``mapping`` is, how big it is and whether it may be written, as plain values, for ``get(_:at:)`` and
    /// ``set(_:at:)``; not for direct use. The backends keep it as a stored copy, renewed by ``resize(to:)`` and
    /// ``remap()``; the default reads it from ``mapping``.
    var _bytes: _MappedBytes { get }

    /// The region's name. For `sysv:private` this is the `sysv-id:ID` another process can open.
    var name: RegionName { get }
    /// The mechanism behind this region.
    var backend: Backend { get }
    /// The size in bytes of this attachment's mapping: exactly what was asked at creation or the last resize.
    var size: Int { get }
    /// Whether this attachment may write.
    var access: Access { get }

    /// Calls `body` with the region's bytes. The pointer is valid only inside `body`: do not store or return it
    /// (a resize may move the mapping, a detach removes it). ``withBytes(_:)`` is the safe way in.
    func withUnsafeBytes<R: ~Copyable, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R

    /// Calls `body` with the region's bytes for writing. Throws ``SharedMemoryError/Code/readOnly`` on a read-only
    /// attachment without calling `body`. The pointer is valid only inside `body`: do not store or return it.
    /// ``withMutableBytes(_:)`` is the safe way in.
    func withUnsafeMutableBytes<R: ~Copyable>(
        _ body: (UnsafeMutableRawBufferPointer) throws(SharedMemoryError) -> R
    ) throws(SharedMemoryError) -> R

    /// Changes the region's size, keeping the contents up to the smaller of the two sizes; new bytes read as
    /// zero. Other attachments keep their old size until they call ``remap()`` (reading past the new end of a
    /// shrunk region from another process is a SIGBUS). Backends that cannot resize throw
    /// ``SharedMemoryError/Code/unsupported``.
    ///
    /// The corresponding C functions are `posix_fallocate`, `ftruncate` and `mremap`.
    ///
    /// It is `mutating`, so it needs exclusive access to the region: resizing while a view of the same region's
    /// bytes is in use (inside ``withUnsafeBytes(_:)``, or with a `let` region) does not compile. While objects
    /// made in the region hold its mapping (``ProcessMutex``, ``SharedAtomic``, a ring side, ...), it throws
    /// ``SharedMemoryError/Code/busy``: moving the mapping would leave them pointing at nothing.
    mutating func resize(to newSize: Int) throws(SharedMemoryError)

    /// Maps the region again at its current size, after another attachment resized it, and returns that size.
    /// If the object is now empty the attachment maps nothing and ``size`` is 0 until it grows again.
    ///
    /// The corresponding C functions are `fstat` and `mremap`.
    @discardableResult
    ///
    /// `mutating`, as ``resize(to:)`` is: the mapping may move, so no view of the bytes may be in use, and
    /// ``SharedMemoryError/Code/busy`` while objects made in the region hold its mapping.
    mutating func remap() throws(SharedMemoryError) -> Int

    /// Removes the region's name now. Attachments, this one included, keep working until they detach; a new
    /// `open` gets ``SharedMemoryError/Code/notFound``. Removing twice is ``SharedMemoryError/Code/notFound``.
    ///
    /// The corresponding C functions are `shmctl(IPC_RMID)`, `shm_unlink` and `unlink`.
    func remove() throws(SharedMemoryError)

    /// What the kernel knows about the region now.
    ///
    /// The corresponding C functions are `shmctl(IPC_STAT)` and `fstat`.
    func info() throws(SharedMemoryError) -> RegionInfo

    /// Sets the region's nine permission bits exactly.
    ///
    /// The corresponding C functions are `shmctl(IPC_SET)` and `fchmod`.
    func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError)

    /// Gives the region to another owner (root only, or the owner for a group it belongs to).
    ///
    /// The corresponding C functions are `shmctl(IPC_SET)` and `fchown`.
    func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError)

    /// The open file descriptor behind the mapping (posix, file and memfd regions; `nil` for sysv and anonymous),
    /// `O_RDONLY` for a read-only attachment. It belongs to the region: do not close it; `dup` it to keep it past
    /// detach, or ``send(over:access:)`` it to another process.
    var fileDescriptor: FileDescriptor? { get }

    /// Detaches now and reports any error. Dropping the attachment does the same silently. While objects made in
    /// the region hold its mapping (``ProcessMutex``, ``SharedAtomic``, a ring side, ...), the memory stays mapped
    /// for them, and the last of them unmaps it.
    ///
    /// The corresponding C functions are `shmdt`, and `munmap` and `close`.
    consuming func detach() throws(SharedMemoryError)
}

extension SharedRegion where Self: ~Copyable {
    @inlinable
    public var _bytes: _MappedBytes { _MappedBytes(mapping) }

    public var name: RegionName { mapping.name }
    public var backend: Backend { mapping.name.backend }
    public var size: Int { mapping.size }
    public var access: Access { mapping.access }

    @inlinable
    public func withUnsafeBytes<R: ~Copyable, E: Error>(
        _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        let mapping = self.mapping
        return try body(UnsafeRawBufferPointer(start: mapping.base, count: mapping.size))
    }

    @inlinable
    public func withUnsafeMutableBytes<R: ~Copyable>(
        _ body: (UnsafeMutableRawBufferPointer) throws(SharedMemoryError) -> R
    ) throws(SharedMemoryError) -> R {
        let mapping = self.mapping
        guard mapping.access == .readWrite else { throw mapping.readOnlyError() }
        return try body(UnsafeMutableRawBufferPointer(start: mapping.base, count: mapping.size))
    }

    /// Calls `body` with the region's bytes as a `RawSpan`: the safe way in. The compiler keeps the span inside
    /// `body` (it cannot be stored, returned or captured), and ``resize(to:)`` cannot be called while it is in use,
    /// so it never outlives or outruns the mapping. Reads are bounds-checked.
    @inlinable
    public func withBytes<R: ~Copyable, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        try withUnsafeBytes { (buffer: UnsafeRawBufferPointer) throws(E) -> R in
            try body(RawSpan(_unsafeBytes: buffer))
        }
    }

    /// Calls `body` with the region's bytes for writing, as a `MutableRawSpan` that cannot leave `body`. Throws
    /// ``SharedMemoryError/Code/readOnly`` on a read-only attachment without calling `body`.
    @inlinable
    public func withMutableBytes<R: ~Copyable>(
        _ body: (inout MutableRawSpan) throws(SharedMemoryError) -> R
    ) throws(SharedMemoryError) -> R {
        try withUnsafeMutableBytes { (buffer: UnsafeMutableRawBufferPointer) throws(SharedMemoryError) -> R in
            var bytes = MutableRawSpan(_unsafeBytes: buffer)
            defer { checkReturned(bytes, buffer) }
            return try body(&bytes)
        }
    }

    /// Detaches now and reports any error: unmaps (`munmap`, `shmdt`) unless objects made in the region still
    /// hold the mapping (then the last of them unmaps it), and closes the descriptor of a posix, file or memfd
    /// region.
    public consuming func detach() throws(SharedMemoryError) {
        var mapping = self.mapping
        _ = consume self  // the region's own resources (a descriptor) go here
        try RegionMapping.release(&mapping)
    }

    /// Swift 6.3 lets a body assign the `inout` span it was lent to a variable outside and put another span in its
    /// place, which the compiler does not see as an escape. The span handed back must be the one lent, so such a
    /// body stops the process here, before the escaped span can be used.
    @usableFromInline
    func checkReturned(_ bytes: borrowing MutableRawSpan, _ buffer: UnsafeMutableRawBufferPointer) {
        let same = bytes.byteCount == buffer.count && bytes.withUnsafeBytes { $0.baseAddress == UnsafeRawPointer(buffer.baseAddress) }
        precondition(same, "withMutableBytes: the body replaced the span it was lent, to keep it past the body; a span of a region cannot outlive the body")
    }

    /// Copies `count` bytes starting at `offset`, or throws ``SharedMemoryError/Code/outOfBounds``.
    @inlinable
    public func get(count: Int, at offset: Int) throws(SharedMemoryError) -> [UInt8] {
        try checkBounds(offset: offset, count: count)
        return withUnsafeBytes { Array($0[offset..<offset + count]) }
    }

    /// Copies `bytes` into the region starting at `offset`, or throws ``SharedMemoryError/Code/outOfBounds`` (and
    /// writes nothing) if they do not fit, or ``SharedMemoryError/Code/readOnly``.
    @inlinable
    public func set(bytes: some Collection<UInt8>, at offset: Int) throws(SharedMemoryError) {
        try checkBounds(offset: offset, count: bytes.count)
        try withUnsafeMutableBytes { buffer in
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + bytes.count])
            if bytes.withContiguousStorageIfAvailable({ target.copyMemory(from: UnsafeRawBufferPointer($0)) }) == nil {
                target.copyBytes(from: bytes)
            }
        }
    }

    // get and set: inlined into the caller, where `T` is known, over one read of `_bytes` each (a stored copy on a
    // concrete region, so a loop checks its bounds once; a witness call returning three words through
    // `any SharedRegion`). As protocol requirements they ran unspecialised for `T` through the existential (354
    // instructions a call); as extension methods not inlined, 145; inlined over `mapping` (retained and released
    // per call), 82; over `_bytes`, 38. The mapping is read only to say what went wrong.

    /// Reads a value of a trivial type at `offset` (any alignment), or throws ``SharedMemoryError/Code/outOfBounds``.
    @inlinable @inline(__always)
    public func get<T: BitwiseCopyable>(_ type: T.Type, at offset: Int) throws(SharedMemoryError) -> T {
        guard let value = _bytes.load(type, at: offset) else {
            throw mapping.accessError(offset: offset, count: MemoryLayout<T>.size)
        }
        return value
    }

    /// Writes a value of a trivial type at `offset` (any alignment), or throws
    /// ``SharedMemoryError/Code/outOfBounds`` or ``SharedMemoryError/Code/readOnly``.
    @inlinable @inline(__always)
    public func set<T: BitwiseCopyable>(_ value: T, at offset: Int) throws(SharedMemoryError) {
        guard _bytes.store(value, at: offset) else {
            throw mapping.accessError(offset: offset, count: MemoryLayout<T>.size)
        }
    }

    /// Throws ``SharedMemoryError/Code/outOfBounds`` unless `offset..<offset+count` lies inside the region,
    /// without overflowing.
    @inlinable
    public func checkBounds(offset: Int, count: Int) throws(SharedMemoryError) {
        try mapping.checkBounds(offset: offset, count: count)
    }
}

extension SharedRegion where Self: ~Copyable {
    /// The error for an operation this backend cannot do: "`posix` regions cannot `operation`: `reason`".
    func unsupported(_ operation: String, because reason: String) -> SharedMemoryError {
        SharedMemoryError(.unsupported, "\(backend) regions cannot \(operation): \(reason)", region: name)
    }
}
