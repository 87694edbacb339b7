import CSharedMemory
import Glibc
import SystemPackage

/// The directory that holds a name, open as a descriptor, and the name's last component (`entry`). Everything
/// done to the name afterwards (open, stat, rename, remove) is an `*at` call on that descriptor, so no other
/// process can redirect it by swapping a directory on the way for a symbolic link.
struct ParentDirectory: ~Copyable {
    /// The directory (`O_PATH | O_DIRECTORY`), closed when this goes.
    let descriptor: Int32
    /// The last component of the name.
    let entry: String

    private init(descriptor: Int32, entry: String) {
        self.descriptor = descriptor
        self.entry = entry
    }

    deinit { Syscalls.close(descriptor) }

    /// `entry` in a directory the system owns (/dev/shm), opened as the system has it (it may be a link to /run/shm).
    static func system(_ path: String, entry: String, _ region: RegionName) throws(SharedMemoryError) -> ParentDirectory {
        ParentDirectory(descriptor: try Syscalls.open(path, CSM_O_PATH | O_DIRECTORY | O_CLOEXEC, 0, region), entry: entry)
    }

    /// The directory holding `path`, reached from `/` one component at a time with `O_NOFOLLOW`: a symbolic link
    /// anywhere on the way is ``SharedMemoryError/Code/foreign``, naming the component, because another user who
    /// can write a directory on the way could otherwise point the rest of the path anywhere.
    static func walking(to path: FilePath, _ region: RegionName) throws(SharedMemoryError) -> ParentDirectory {
        let components = Array(path.components)
        guard let last = components.last else {
            throw SharedMemoryError(.invalidName, "the path has no file name", region: region)
        }
        var current = try Syscalls.open("/", CSM_O_PATH | O_DIRECTORY | O_CLOEXEC, 0, region)
        var walked = FilePath("/")
        for component in components.dropLast() {
            walked.append(component)
            let next: Int32
            do {
                next = try Syscalls.openat(current, component.string, CSM_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, region)
            } catch {
                defer { Syscalls.close(current) }
                throw explain(error, at: walked, in: current, component.string, region)
            }
            Syscalls.close(current)
            current = next
        }
        return ParentDirectory(descriptor: current, entry: last.string)
    }

    /// Why a directory on the way could not be entered, in words.
    private static func explain(_ error: SharedMemoryError, at walked: FilePath, in directory: Int32, _ component: String,
                                _ region: RegionName) -> SharedMemoryError {
        switch error.errno {
        case .noSuchFileOrDirectory?:
            return SharedMemoryError(.notFound, "the directory \(walked) does not exist; create it first", region: region, systemCall: error.systemCall, errno: error.errno)
        case .notDirectory?, .tooManySymbolicLinkLevels?:
            if let status = try? Syscalls.fstatat(directory, component, region), status.st_mode & S_IFMT == S_IFLNK {
                return SharedMemoryError(.foreign, "\(walked) is a symbolic link, and SharedMemory follows none in a file: path (another user could point it anywhere); give the path it leads to (`realpath \(walked)`)", region: region, systemCall: error.systemCall, errno: error.errno)
            }
            return SharedMemoryError(.foreign, "\(walked) is not a directory", region: region, systemCall: error.systemCall, errno: error.errno)
        default:
            return error
        }
    }

    /// `/proc/self/fd/N/ENTRY`: a path to the entry that goes through this descriptor, for the calls that take
    /// only paths (`lgetxattr`).
    var entryPath: String { "/proc/self/fd/\(descriptor)/\(entry)" }

    /// What is at the name now, without following a link (`fstatat(AT_SYMLINK_NOFOLLOW)`).
    func status(_ region: RegionName) throws(SharedMemoryError) -> stat {
        try Syscalls.fstatat(descriptor, entry, region)
    }

    /// Removes the name only if it still holds the object with this device and inode; anything else found there
    /// is left alone and reported as ``SharedMemoryError/Code/removed``.
    ///
    /// No system call unlinks "this inode, if it is still under this name", so the name is first renamed to a
    /// random one in the same directory (atomic: whatever the name held at that instant is now under a name no
    /// one else knows), checked there, and unlinked if it is ours. If it is not ours (the object was removed and
    /// another made under the name in the microseconds between the check and the rename), it is renamed back
    /// with `RENAME_NOREPLACE`; only if a third object took the name in that instant too does the successor stay
    /// under the random name, which the error then gives.
    ///
    /// With `born` (the object's birth time), an object that merely reuses the inode number is not taken for it
    /// either; callers that hold the object open need not pass it, since its inode cannot be reused meanwhile.
    func remove(ifStill device: UInt64, _ inode: UInt64, born: Timestamp? = nil, _ region: RegionName) throws(SharedMemoryError) {
        func isOurs(_ status: stat) -> Bool { UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode }
        func replaced() -> SharedMemoryError {
            SharedMemoryError(.removed, "this attachment's object was removed and the name now belongs to another object, which was left alone", region: region)
        }
        let now: stat
        do {
            now = try status(region)
        } catch where error.code == .notFound {
            throw SharedMemoryError(.notFound, "it was already removed", region: region, systemCall: error.systemCall, errno: error.errno)
        }
        guard isOurs(now) else { throw replaced() }
        let aside = randomName(".sm-removing-")
        do {
            try Syscalls.renameNoReplace(descriptor, entry, aside, region)
        } catch where error.code == .notFound {
            throw SharedMemoryError(.notFound, "it was already removed", region: region, systemCall: error.systemCall, errno: error.errno)
        } catch where error.errno == .invalidArgument {
            // A file system without renameat2's flags: the check above is all there is.
            try Syscalls.unlinkat(descriptor, entry, region)
            return
        }
        let moved = try Syscalls.fstatat(descriptor, aside, region)
        if isOurs(moved), born == nil || (try? Syscalls.birthTime(descriptor, aside, region)) == born {
            try Syscalls.unlinkat(descriptor, aside, region)
            return
        }
        do {
            try Syscalls.renameNoReplace(descriptor, aside, entry, region)
        } catch where error.code == .alreadyExists {
            throw SharedMemoryError(.removed, "this attachment's object was removed, and the object made under its name in its place could not be put back because a third took the name at the same instant: that one is now \(aside) in the same directory", region: region)
        }
        throw replaced()
    }
}
