import Glibc
import SystemPackage

/// A file region (`file:/PATH`).
public typealias FileRegion = Region<MappedFile>

/// A file on any file system, opened with `openat` in its directory (reached from `/` without following any
/// symbolic link) and mapped shared. Sizing, mapping and resizing are
/// ``FileBackedStorage``'s.
public final class MappedFile: FileBackedStorage {
    override class func path(of name: RegionName) -> String {
        guard case .file(let path) = name.location else { preconditionFailure("not a file name") }
        return path.string
    }

    /// The file's directory, reached without following a symbolic link in any component.
    override class func parent(of name: RegionName) throws(SharedMemoryError) -> ParentDirectory {
        guard case .file(let path) = name.location else { preconditionFailure("not a file name") }
        return try .walking(to: path, name)
    }

    override class func openDescriptor(_ name: RegionName, _ flags: Int32, _ mode: mode_t, hugePages: HugePages?) throws(SharedMemoryError) -> Int32 {
        let parent = try parent(of: name)
        return try Syscalls.openat(parent.descriptor, parent.entry, flags, mode, name)
    }

    override class func unlinkName(_ name: RegionName) throws(SharedMemoryError) {
        let parent = try parent(of: name)
        try Syscalls.unlinkat(parent.descriptor, parent.entry, name)
    }

    override class func requireName(_ name: RegionName) throws(SharedMemoryError) {
        guard case .file = name.location else {
            throw SharedMemoryError(.invalidName, "`\(name)` is not a file: name; use SharedMemory.create to pick the backend from the name", region: name)
        }
    }
}
