import Glibc
import SystemPackage

/// A POSIX shared-memory region (`posix:/NAME`).
public typealias POSIXRegion = Region<POSIXObject>

/// A POSIX shared-memory object: a file on the tmpfs at /dev/shm, reached by name with `shm_open` and removed
/// with `shm_unlink`. Sizing, mapping and resizing are ``FileBackedStorage``'s.
public final class POSIXObject: FileBackedStorage {
    override class func path(of name: RegionName) -> String {
        guard case .posix(let object) = name.location else { preconditionFailure("not a posix name") }
        return "/dev/shm" + object
    }

    override class func parent(of name: RegionName) throws(SharedMemoryError) -> ParentDirectory {
        guard case .posix(let object) = name.location else { preconditionFailure("not a posix name") }
        return try .system("/dev/shm", entry: String(object.dropFirst()), name)
    }

    override class func openDescriptor(_ name: RegionName, _ flags: Int32, _ mode: mode_t, hugePages: HugePages?) throws(SharedMemoryError) -> Int32 {
        guard case .posix(let object) = name.location else { preconditionFailure("not a posix name") }
        return try Syscalls.shmOpen(object, flags, mode, name)
    }

    override class func unlinkName(_ name: RegionName) throws(SharedMemoryError) {
        guard case .posix(let object) = name.location else { preconditionFailure("not a posix name") }
        try Syscalls.shmUnlink(object, name)
    }

    override class func requireName(_ name: RegionName) throws(SharedMemoryError) {
        guard case .posix = name.location else {
            throw SharedMemoryError(.invalidName, "`\(name)` is not a posix: name; use SharedMemory.create to pick the backend from the name", region: name)
        }
    }

    override class var noSpaceAdvice: String {
        ". /dev/shm is full: raise its size (in a container, `docker run --shm-size`), remove unused objects, or use a sysv region, which does not count against /dev/shm"
    }

    /// Every POSIX object in /dev/shm, leaving out glibc's named semaphores (`sem.*`) and anything that is not a
    /// regular file.
    static func list() throws(SharedMemoryError) -> [RegionInfo] {
        let counts = ProcMaps.mappingCounts()
        var regions: [RegionInfo] = []
        for entry in try Syscalls.listDirectory("/dev/shm", nil).sorted() where !entry.hasPrefix("sem.") {
            guard let name = try? RegionName.posix("/" + entry),
                  let status = try? Syscalls.lstat(path(of: name), name),  // it may vanish while we look
                  status.st_mode & S_IFMT == S_IFREG
            else { continue }
            regions.append(info(name, status, born: try? Syscalls.birthTime(AT_FDCWD, path(of: name), name),
                                creator: Creator.recorded(on: .path(path(of: name)), status), attachCounts: counts))
        }
        return regions
    }
}
