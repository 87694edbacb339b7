import Glibc
import SystemPackage

/// A POSIX shared-memory region (`posix:/NAME`): a file on the tmpfs at /dev/shm, reached by name with
/// `shm_open` and removed with `shm_unlink`. Resizable; survives its creator until removed.
public struct POSIXRegion: FileBackedRegion, ~Copyable {
    public private(set) var mapping: RegionMapping
    public private(set) var _bytes: _MappedBytes
    let object: MappedObject

    init(_ object: consuming MappedObject, _ mapping: RegionMapping) {
        self.object = object
        self.mapping = mapping
        _bytes = _MappedBytes(mapping)
    }

    /// Creates a region of exactly `size` bytes, exclusively: if the name exists it throws
    /// ``SharedMemoryError/Code/alreadyExists`` and leaves that object alone. A failure part-way removes what
    /// was made.
    ///
    /// The corresponding C calls are `shm_open` with `O_CREAT | O_EXCL`, `fchmod`, `ftruncate`, `posix_fallocate`
    /// and `mmap`.
    public static func create(_ name: RegionName, size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> POSIXRegion {
        try ObjectName.check(name, for: .posix)
        return try MappedObject.create(name, size: size, options: options, POSIXRegion.init)
    }

    /// Opens an existing region at its current size.
    ///
    /// The corresponding C calls are `shm_open`, `fstat` and `mmap`.
    public static func open(_ name: RegionName, options: OpenOptions = .init()) throws(SharedMemoryError) -> POSIXRegion {
        try ObjectName.check(name, for: .posix)
        return try MappedObject.open(name, options: options, POSIXRegion.init)
    }

    /// This attachment as an ``AnyRegion``, the type the factory returns; nothing is detached or mapped again.
    public consuming func erased() -> AnyRegion { .posix(self) }

    public mutating func resize(to newSize: Int) throws(SharedMemoryError) {
        defer { _bytes = _MappedBytes(mapping) }
        try object.resize(to: newSize, &mapping)
    }

    @discardableResult
    public mutating func remap() throws(SharedMemoryError) -> Int {
        defer { _bytes = _MappedBytes(mapping) }
        return try object.remap(&mapping)
    }
    public var descriptor: FileDescriptor { FileDescriptor(rawValue: object.descriptor) }
}
