import Glibc
import SystemPackage

/// A region that is a file mapped shared, reached through its open descriptor: ``POSIXRegion``, ``FileRegion`` and
/// ``MemfdRegion``. What they do alike through the descriptor (`fstat`, `fchmod`, `fchown`, `F_GET_SEALS`, removing
/// the name only while it still holds this object) is written here once.
public protocol FileBackedRegion: SharedRegion, ~Copyable {
    /// The open descriptor behind the mapping, `O_RDONLY` for a read-only attachment. It belongs to the region: do
    /// not close it; `dup` it to keep it past detach, or ``SharedRegion/send(over:access:)`` it to another process.
    var descriptor: FileDescriptor { get }
}

extension FileBackedRegion where Self: ~Copyable {
    public var fileDescriptor: FileDescriptor? { descriptor }

    /// Removes the name, if it still holds this object: if the name now belongs to another (this one was removed
    /// and the name made again), throws ``SharedMemoryError/Code/removed`` and leaves the other one alone.
    ///
    /// The corresponding C calls are `fstat`, `renameat2(RENAME_NOREPLACE)` and `unlinkat` (or `shm_unlink`).
    public func remove() throws(SharedMemoryError) {
        guard let object = ObjectName(name) else { throw unsupported("be removed", because: "they have no name") }
        let ours = try Syscalls.fstat(descriptor.rawValue, name)
        try object.parent(name).remove(ifStill: UInt64(ours.st_dev), UInt64(ours.st_ino), name)
        LifetimeRecords.remove(name, owner: ours.st_uid, device: UInt64(ours.st_dev), inode: UInt64(ours.st_ino))
    }

    /// What the kernel knows about the object now.
    ///
    /// The corresponding C call is `fstat`.
    public func info() throws(SharedMemoryError) -> RegionInfo {
        let descriptor = descriptor.rawValue
        let status = try Syscalls.fstat(descriptor, name)
        return MappedObject.info(name, status, born: try? Syscalls.birthTime(descriptor, "", name),
                                 creator: Creator.recorded(on: .descriptor(descriptor), status), attachCounts: ProcMaps.mappingCounts())
    }

    /// Sets the object's nine permission bits exactly.
    ///
    /// The corresponding C call is `fchmod`.
    public func setPermissions(_ permissions: FilePermissions) throws(SharedMemoryError) {
        try Syscalls.fchmod(descriptor.rawValue, try Checks.mode(permissions, name), name)
    }

    /// Gives the object to another owner.
    ///
    /// The corresponding C call is `fchown`.
    public func setOwner(uid: UInt32, gid: UInt32) throws(SharedMemoryError) {
        try Syscalls.fchown(descriptor.rawValue, uid, gid, name)
    }

    /// The seals on the object. Only memfd regions can have any; a POSIX object reports ``Seals/seal`` (it can never
    /// be sealed), a file on another file system none.
    ///
    /// The corresponding C call is `fcntl(fd, F_GET_SEALS)`.
    public var seals: Seals {
        get throws(SharedMemoryError) { try Seals(descriptor: descriptor.rawValue, name) }
    }
}
