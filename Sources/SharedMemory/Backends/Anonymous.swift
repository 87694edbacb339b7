import Glibc
import SystemPackage

/// Anonymous shared memory (`anonymous`), shared with the children this process creates with `fork`. It has no
/// name, no mode and no owner: nothing outside this process and its forked children can reach it, and it is freed
/// when the last of them unmaps it. Its size is fixed.
public struct AnonymousRegion: SharedRegion, ~Copyable {
    public let mapping: RegionMapping
    public let _bytes: _MappedBytes

    private init(_ mapping: RegionMapping) {
        self.mapping = mapping
        _bytes = _MappedBytes(mapping)
    }

    /// Maps `size` bytes of anonymous shared memory, zero-filled. Children created with `fork` afterwards share it.
    ///
    /// The corresponding C call is `mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)`.
    public static func create(size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> AnonymousRegion {
        let name = RegionName.anonymous
        try Checks.size(size, name)
        _ = try Checks.mode(options.permissions, name)
        guard options.permissions == CreateOptions().permissions else {
            throw SharedMemoryError(.unsupported, "anonymous memory has no mode: only this process and its forked children can reach it; leave permissions at the default", region: name)
        }
        try Checks.address(options.address, name)
        try options.hugePages?.check(size: size, name)
        var flags = MAP_ANONYMOUS | (options.reserve ? 0 : MAP_NORESERVE)
        if case .explicit? = options.hugePages { flags |= MAP_HUGETLB | options.hugePages!.sizeBits }
        do throws(SharedMemoryError) {
            let base = try RegionMapping.mapPrepared(descriptor: -1, size: size, access: .readWrite, address: options.address, flags: flags,
                                                     hugePages: options.hugePages, prefault: options.prefault, name)
            return AnonymousRegion(RegionMapping(name: name, access: .readWrite, base: base, size: size, attachedBy: .mmap))
        } catch {
            throw options.hugePages?.explain(error) ?? error
        }
    }

    /// This attachment as an ``AnyRegion``, the type the factory returns; nothing is detached or mapped again.
    public consuming func erased() -> AnyRegion { .anonymous(self) }

    public mutating func resize(to newSize: Int) throws(SharedMemoryError) {
        throw unsupported("be resized", because: "a shared anonymous mapping is backed by an object of fixed size, so growing it would SIGBUS past the old end; create a new region, or use a posix or file region")
    }

    /// A fixed-size region has nothing to remap: its size.
    @discardableResult
    public mutating func remap() throws(SharedMemoryError) -> Int { size }

    public func remove() throws(SharedMemoryError) {
        throw unsupported("be removed", because: "anonymous memory has no name; it is freed when the last process that maps it detaches or exits")
    }

    public func info() throws(SharedMemoryError) -> RegionInfo {
        RegionInfo(name: name, size: size, permissions: nil, ownerUID: getuid(), ownerGID: getgid(), lifetime: .process,
                   isMarkedForRemoval: false)
    }

    public func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        throw unsupported("change mode", because: "anonymous memory has no mode; only this process and its forked children can reach it")
    }

    public func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) {
        throw unsupported("change owner", because: "anonymous memory has no owner; only this process and its forked children can reach it")
    }

    /// Anonymous memory has no descriptor.
    public var fileDescriptor: FileDescriptor? { nil }

}
