import Glibc
import SystemPackage

/// A file region (`file:/PATH`): a file on any file system, opened with `openat` in its directory (reached from `/`
/// without following any symbolic link) and mapped shared. Resizable; the file stays until removed.
public struct FileRegion: FileBackedRegion, ~Copyable {
    public private(set) var mapping: RegionMapping
    public private(set) var _bytes: _MappedBytes
    let object: MappedObject

    init(_ object: consuming MappedObject, _ mapping: RegionMapping) {
        self.object = object
        self.mapping = mapping
        _bytes = _MappedBytes(mapping)
    }

    /// Creates a file of exactly `size` bytes, exclusively: if the path exists it throws
    /// ``SharedMemoryError/Code/alreadyExists`` and leaves that file alone. A failure part-way removes what was
    /// made.
    ///
    /// The corresponding C calls are `openat` with `O_CREAT | O_EXCL`, `fchmod`, `ftruncate`, `posix_fallocate`
    /// and `mmap`.
    public static func create(_ name: RegionName, size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> FileRegion {
        try ObjectName.check(name, for: .file)
        return try MappedObject.create(name, size: size, options: options, FileRegion.init)
    }

    /// Opens an existing file at its current size.
    ///
    /// The corresponding C calls are `openat`, `fstat` and `mmap`.
    public static func open(_ name: RegionName, options: OpenOptions = .init()) throws(SharedMemoryError) -> FileRegion {
        try ObjectName.check(name, for: .file)
        return try MappedObject.open(name, options: options, FileRegion.init)
    }

    /// This attachment as an ``AnyRegion``, the type the factory returns; nothing is detached or mapped again.
    public consuming func erased() -> AnyRegion { .file(self) }

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
