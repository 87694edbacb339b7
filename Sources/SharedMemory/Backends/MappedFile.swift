import Glibc
import SystemPackage

/// A file region (`file:/PATH`).
public typealias FileRegion = Region<MappedFile>

/// A file on any file system, opened with `open` and mapped shared. Sizing, mapping and resizing are
/// ``FileBackedStorage``'s.
public final class MappedFile: FileBackedStorage {
    override class func path(of name: RegionName) -> String {
        guard case .file(let path) = name.location else { preconditionFailure("not a file name") }
        return path.string
    }

    override class func openDescriptor(_ name: RegionName, _ flags: Int32, _ mode: mode_t, hugePages: HugePages?) throws(SharedMemoryError) -> Int32 {
        // O_NONBLOCK: opening a FIFO someone planted at the path must fail (as not a regular file), not hang.
        try Syscalls.open(path(of: name), flags | O_NONBLOCK, mode, name)
    }

    override class func unlinkName(_ name: RegionName) throws(SharedMemoryError) {
        try Syscalls.unlink(path(of: name), name)
    }

    override class func requireName(_ name: RegionName) throws(SharedMemoryError) {
        guard case .file = name.location else {
            throw SharedMemoryError(.invalidName, "`\(name)` is not a file: name; use SharedMemory.create to pick the backend from the name", region: name)
        }
    }
}
