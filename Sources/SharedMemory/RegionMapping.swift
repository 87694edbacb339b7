import CSharedMemory
import Glibc

/// One mapping of a region in this process: where it is, how big, and whether it may be written.
///
/// A region's handle holds its mapping, and so does every object made in it (``ProcessMutex``,
/// ``ProcessRWLock``, ``ProcessEvent``, ``SharedAtomic``, ``RingSender``, ``RingReceiver``): the memory stays
/// mapped while any of them exists, and is unmapped (`munmap`, or `shmdt` for System V) when the last one goes.
/// So a lock can never point at memory that is no longer mapped, whatever becomes of the handle, and it can be
/// shared by any number of threads and tasks: it is `Sendable`, and its address never changes while they hold it
/// (``SharedRegion/resize(to:)`` and ``SharedRegion/remap()`` move a mapping only when the handle is its only
/// holder, and are ``SharedMemoryError/Code/busy`` otherwise).
///
/// A mapping offers no access to the bytes by itself: that is the region's (``SharedRegion/withBytes(_:)``) or the
/// objects'.
public final class RegionMapping: @unchecked Sendable {
    // Sendable: `base` and `size` change only in a resize or remap, which a region does only while it holds the
    // one reference (no other thread or object can see this instance then), and in `unmap`, which runs at detach
    // under the same condition or in deinit.

    /// The region's name.
    public let name: RegionName
    /// Whether this mapping may be written.
    public let access: Access
    /// Where the region is mapped; `nil` only while it is mapped at size 0 or after it was unmapped.
    @usableFromInline @exclusivity(unchecked) var base: UnsafeMutableRawPointer?
    /// The size of the mapping in bytes.
    @exclusivity(unchecked) public internal(set) var size: Int
    /// How the memory was attached, so how to detach it.
    private let attachedBy: AttachedBy

    enum AttachedBy { case mmap, shmat }

    init(name: RegionName, access: Access, base: UnsafeMutableRawPointer?, size: Int, attachedBy: AttachedBy) {
        self.name = name
        self.access = access
        self.base = base
        self.size = size
        self.attachedBy = attachedBy
    }

    deinit { try? unmap() }

    /// Unmaps now (`munmap` or `shmdt`); a second call does nothing.
    func unmap() throws(SharedMemoryError) {
        guard let base else { return }
        self.base = nil
        defer { size = 0 }  // with base: nil only at size 0
        switch attachedBy {
        case .mmap: try Syscalls.munmap(base, size, name)
        case .shmat: try Syscalls.shmdt(base, name)
        }
    }

    /// A region's detach: unmaps now and reports the error if the region holds the only reference; otherwise
    /// the objects made in it keep it, and the last of them unmaps it.
    static func release(_ mapping: inout RegionMapping) throws(SharedMemoryError) {
        if isKnownUniquelyReferenced(&mapping) { try mapping.unmap() }
    }

    /// Throws ``SharedMemoryError/Code/busy`` unless the region's handle holds the only reference, as it must to
    /// move the mapping (`what`: "be resized", "be remapped").
    static func requireSoleHolder(_ mapping: inout RegionMapping, to what: String) throws(SharedMemoryError) {
        guard isKnownUniquelyReferenced(&mapping) else {
            throw SharedMemoryError(.busy, "it cannot \(what) while objects made in it (a ProcessMutex, ProcessRWLock, ProcessEvent, SharedAtomic or ring side) still hold its mapping: moving the mapping would leave them pointing at nothing; drop them first", region: mapping.name)
        }
    }

    /// Throws ``SharedMemoryError/Code/outOfBounds`` unless `offset..<offset+count` lies inside the mapping.
    @inlinable
    func checkBounds(offset: Int, count: Int) throws(SharedMemoryError) {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw outOfBoundsError(offset: offset, count: count)
        }
    }

    /// Why ``_MappedBytes``' `load` or `store` refused `count` bytes at `offset`: out of bounds, or else a
    /// read-only mapping.
    @usableFromInline
    func accessError(offset: Int, count: Int) -> SharedMemoryError {
        guard offset >= 0, offset <= size, count <= size - offset else { return outOfBoundsError(offset: offset, count: count) }
        return readOnlyError()
    }

    @usableFromInline
    func outOfBoundsError(offset: Int, count: Int) -> SharedMemoryError {
        .outOfBounds(offset: offset, count: count, size: size, region: name)
    }

    @usableFromInline
    func readOnlyError() -> SharedMemoryError {
        SharedMemoryError(.readOnly, "this attachment was opened read-only; open the region with access .readWrite to write", region: name)
    }

    func requireWritable() throws(SharedMemoryError) {
        guard access == .readWrite else { throw readOnlyError() }
    }

    // MARK: Making a mapping

    /// `mmap` for the backends that map a descriptor (or anonymous memory), with the attach-address rules (a hint
    /// may move, a fixed address that is taken is `busy` and never replaces what is there).
    static func map(
        descriptor: Int32, size: Int, access: Access, address: AttachAddress?, flags: Int32, _ region: RegionName
    ) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let protection = access == .readWrite ? PROT_READ | PROT_WRITE : PROT_READ
        var flags = MAP_SHARED | flags
        if case .fixed = address { flags |= MAP_FIXED_NOREPLACE }
        let wanted = address.flatMap { UnsafeMutableRawPointer(bitPattern: $0.address) }
        let mapped: UnsafeMutableRawPointer
        do {
            mapped = try Syscalls.mmap(wanted, size, protection, flags, descriptor, region)
        } catch where error.errno == .fileExists {
            throw addressBusy(address, region)
        }
        if case .fixed = address, mapped != wanted {
            // A kernel older than 4.17 treats MAP_FIXED_NOREPLACE as a hint.
            try? Syscalls.munmap(mapped, size, region)
            throw addressBusy(address, region)
        }
        return mapped
    }

    static func addressBusy(_ address: AttachAddress?, _ region: RegionName) -> SharedMemoryError {
        SharedMemoryError(
            .busy,
            "the fixed attach address 0x\(String(address?.address ?? 0, radix: 16)) is already in use in this process; choose another, or pass it as .hint",
            region: region)
    }

    /// `mmap` (see ``map(descriptor:size:access:address:flags:_:)``), then ``prepare(_:size:access:hugePages:prefault:_:undo:)``;
    /// a failure unmaps what was mapped.
    static func mapPrepared(
        descriptor: Int32, size: Int, access: Access, address: AttachAddress?, flags: Int32, hugePages: HugePages?,
        prefault: Bool, _ region: RegionName
    ) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let base = try map(descriptor: descriptor, size: size, access: access, address: address, flags: flags, region)
        try prepare(base, size: size, access: access, hugePages: hugePages, prefault: prefault, region) {
            try? Syscalls.munmap(base, size, region)
        }
        return base
    }

    /// After a mapping is made: `MADV_HUGEPAGE` for transparent huge pages, and `MADV_POPULATE_WRITE` (or
    /// `_READ` for a read-only mapping) to prefault every page. On failure, `undo` takes the mapping away
    /// (`munmap`, `shmdt`) before the error is thrown.
    static func prepare(
        _ base: UnsafeMutableRawPointer, size: Int, access: Access, hugePages: HugePages?, prefault: Bool,
        _ region: RegionName, undo: () -> Void
    ) throws(SharedMemoryError) {
        do throws(SharedMemoryError) {
            if hugePages == .transparent { try Syscalls.madvise(base, size, MADV_HUGEPAGE, region) }
            if prefault {
                do {
                    try Syscalls.madvise(base, size, access == .readWrite ? CSM_MADV_POPULATE_WRITE : CSM_MADV_POPULATE_READ, region)
                } catch where error.errno == .noMemory || error.errno == .badAddress {
                    throw SharedMemoryError(.noSpace, "there is not enough memory to prefault all \(humanSize(size)); create it without prefault, or free memory", region: region, systemCall: error.systemCall, errno: error.errno)
                }
            }
        } catch {
            undo()
            throw error
        }
    }
}

/// Where a region's mapping is, how big it is and whether it may be written, as plain values: what
/// ``SharedRegion/get(_:at:)`` and ``SharedRegion/set(_:at:)`` check and use. Opaque outside the library: it is
/// there for them, not for direct use.
///
/// A region keeps this copy beside its ``RegionMapping`` and renews it in its `resize` and `remap`, which need the
/// region itself: while the region is borrowed it cannot change. So in a loop over a region the optimiser sees
/// values that cannot change and checks the bounds once, before the loop, as a C compiler does with its checks
/// (reading the mapping object instead, it must read them again after every store into the region, which might
/// have changed them). Through `any SharedRegion` it comes back from a witness as three words, with no reference
/// count to take and drop, as the mapping would have.
@frozen
public struct _MappedBytes: BitwiseCopyable {
    @usableFromInline let base: UnsafeMutableRawPointer?
    @usableFromInline let size: Int
    @usableFromInline let writable: Bool

    @usableFromInline
    init(_ mapping: RegionMapping) {
        base = mapping.base
        size = mapping.size
        writable = mapping.access == .readWrite
    }

    /// A region's `get`: checks the bounds and loads (any alignment); `nil` out of bounds, and the caller throws
    /// ``RegionMapping/accessError(offset:count:)``.
    @inlinable
    func load<T: BitwiseCopyable>(_ type: T.Type, at offset: Int) -> T? {
        guard offset >= 0, offset <= size, MemoryLayout<T>.size <= size &- offset else { return nil }
        return UnsafeRawPointer(start(for: T.self)).loadUnaligned(fromByteOffset: offset, as: T.self)
    }

    /// A region's `set`: checks the bounds and the access, and stores (any alignment); `false` if out of bounds
    /// or read-only, and the caller throws ``RegionMapping/accessError(offset:count:)``.
    @inlinable
    func store<T: BitwiseCopyable>(_ value: T, at offset: Int) -> Bool {
        guard offset >= 0, offset <= size, MemoryLayout<T>.size <= size &- offset, writable else { return false }
        start(for: T.self).storeBytes(of: value, toByteOffset: offset, as: T.self)
        return true
    }

    /// Where a value of `T` that passed the bounds check is read or written from: a value of nonzero size fits
    /// only in a mapping of nonzero size, which has a base (`base` is nil only at size 0); one of size zero touches
    /// no memory, so any aligned address serves. (Folded away where `T` is known.)
    @inlinable
    func start<T>(for type: T.Type) -> UnsafeMutableRawPointer {
        MemoryLayout<T>.size == 0 ? UnsafeMutableRawPointer(bitPattern: MemoryLayout<T>.alignment).unsafelyUnwrapped : base.unsafelyUnwrapped
    }
}
