import Glibc
import SystemPackage

/// Where SharedMemory writes down which regions were created with ``Lifetime/process``, so that `shm gc` can
/// tell a region meant to die with its creator from one meant to outlive it. System V has no extended
/// attributes, and an extended attribute on a posix object can be set by anyone who may write the object, so
/// the records live apart from the regions, where only their user can write:
///
/// - **Location.** One directory per user, `/dev/shm/.sharedmemory-UID`, mode 0700, owned by that user. /dev/shm
///   is a tmpfs, so the records go at reboot together with the System V segments and POSIX objects they describe.
///   A directory that is not a directory, not owned by UID, or writable by group or others is never used: for
///   that user records cannot be written (``SharedMemoryError/Code/foreign`` at create) and none are believed.
/// - **Records.** One file per region, named by what identifies it while it exists: `sysv-ID`, `posix-DEV-INO`,
///   `file-DEV-INO`. Its text is `sharedmemory-lifetime 1`, a line `creator PID STARTTIME`, a line
///   `born SECONDS NANOSECONDS` (the object's birth time from `statx`, 0 0 for System V or where the file system
///   keeps none) and a line `name REGION`. A record is believed only if it is a regular file of that user with
///   one link, and only for a region that user created (System V: `cuid` is UID and `shm_cpid` is PID; posix and
///   file: the object at the name has that device, inode and birth time, and is owned by UID: a file system that
///   reuses inode numbers at once, as ext4 does, cannot pass a new file off as the recorded one).
/// - **Writing.** A record is written to a temporary name and renamed into place, so a reader never sees half
///   of one; no lock is needed, since each record has one writer. The directory is made on the first record and
///   removed when its last record goes (a creator that finds it gone in between makes it again).
/// - **Missing or corrupt.** A region without a believable record is persistent: nothing removes it. A record
///   whose region is gone, or that cannot be read, claims nothing, and `shm gc` removes it. So a lost record
///   can only keep a region that should have been collected; it can never get a region removed.
enum LifetimeRecords {
    /// A record's first line.
    static let magic: StaticString = "sharedmemory-lifetime 1"

    /// A user's record directory (this user's is made once: every removal asks for it).
    static func path(_ uid: UInt32) -> String { uid == own.uid ? own.path : "/dev/shm/.sharedmemory-\(uid)" }
    private static let own = (uid: geteuid(), path: "/dev/shm/.sharedmemory-\(geteuid())")

    /// The record's file name for a region: `sysv-ID`, `posix-DEV-INO`, `file-DEV-INO`.
    static func recordName(_ name: RegionName, id: Int32?, device: UInt64?, inode: UInt64?) -> String? {
        var text = ASCIIText(capacity: 48)
        switch name.backend {
        case .systemV:
            guard let id else { return nil }
            text.append("sysv-")
            text.append(decimal: id)
        case .posix, .file:
            guard let device, let inode else { return nil }
            text.append(name.backend == .posix ? "posix-" : "file-")
            text.append(decimal: device)
            text.append("-")
            text.append(decimal: inode)
        case .anonymous, .memfd:
            return nil
        }
        return text.string
    }

    /// What a record says.
    struct Record: Hashable {
        var owner: UInt32
        var file: String
        var name: RegionName
        var creator: Creator
        var born: Timestamp?

        /// Whether the record describes an object born at `time` (where both are known).
        func matches(born time: Timestamp?) -> Bool { born == nil || time == nil || born == time }
    }

    /// Writes the record of a region this process just created (as this user).
    static func write(_ name: RegionName, id: Int32? = nil, device: UInt64? = nil, inode: UInt64? = nil, born: Timestamp? = nil) throws(SharedMemoryError) {
        guard let file = recordName(name, id: id, device: device, inode: inode) else { return }
        try ASCIIText.withStack(capacity: 256) { text throws(SharedMemoryError) in
            try write(name, file, born: born, into: &text)
        }
    }

    /// Writes the record into `file`, with `text` (empty) to assemble it in.
    private static func write(_ name: RegionName, _ file: String, born: Timestamp?, into text: inout ASCIIText) throws(SharedMemoryError) {
        let me = Creator.current
        text.append(magic)
        text.append("\ncreator ")
        text.append(decimal: me.pid)
        text.append(" ")
        text.append(decimal: me.startTime ?? 0)
        text.append("\nborn ")
        text.append(decimal: born?.seconds ?? 0)
        text.append(" ")
        text.append(decimal: born?.nanoseconds ?? 0)
        text.append("\nname ")
        name.describe(into: &text)
        for _ in 0..<10 {
            let directory = try openDirectory(geteuid(), creating: true, name)!
            defer { Syscalls.close(directory) }
            let temporary = randomName(".tmp-")
            let fd: Int32
            do {
                fd = try Syscalls.openat(directory, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600, name)
            } catch where error.code == .notFound {
                continue  // the directory was removed (its last record went) after we opened it: make it again
            }
            do {
                defer { Syscalls.close(fd) }
                try text.withBytes { bytes throws(SharedMemoryError) in try Syscalls.write(fd, bytes, name) }
                try Syscalls.renameat(directory, temporary, file, name)
                return
            } catch {
                try? Syscalls.unlinkat(directory, temporary, name)
                throw error
            }
        }
        throw SharedMemoryError(.busy, "the lifetime record directory \(path(geteuid())) kept disappearing while the record was written", region: name)
    }

    /// Removes a region's record, if there is one, from its owner's directory, and the directory once empty. Most
    /// regions have none: then it costs one `open` of a directory that is not there.
    static func remove(_ name: RegionName, owner: UInt32, id: Int32? = nil, device: UInt64? = nil, inode: UInt64? = nil) {
        guard let directory = try? openDirectory(owner, creating: false, nil) else { return }
        guard let file = recordName(name, id: id, device: device, inode: inode) else {
            Syscalls.close(directory)
            return
        }
        remove(file, in: directory, owner: owner)
    }

    /// Removes one record file of `owner`'s, and the directory once empty.
    static func removeFile(_ file: String, owner: UInt32) {
        guard let directory = try? openDirectory(owner, creating: false, nil) else { return }
        remove(file, in: directory, owner: owner)
    }

    /// Unlinks `file` in the open `directory` (and closes it), then the directory if that was its last record.
    private static func remove(_ file: String, in directory: Int32, owner: UInt32) {
        let removed = (try? Syscalls.unlinkat(directory, file, nil)) != nil
        Syscalls.close(directory)
        if removed {  // and the directory with it if that was the last (fails while it is not empty)
            try? Syscalls.unlinkat(AT_FDCWD, path(owner), removingDirectory: true, nil)
        }
    }

    /// The record of an existing region, if its owner's directory holds a believable one that matches it: the
    /// same id (System V, with `creatorPID` the segment's `shm_cpid`) or the same name, device and inode.
    static func record(for name: RegionName, owner: UInt32, id: Int32? = nil, creatorPID: Int32? = nil,
                       device: UInt64? = nil, inode: UInt64? = nil, born: Timestamp? = nil) -> Record? {
        guard let file = recordName(name, id: id, device: device, inode: inode),
              let directory = try? openDirectory(owner, creating: false, nil)
        else { return nil }
        defer { Syscalls.close(directory) }
        guard let record = read(file, in: directory, owner: owner) else { return nil }
        switch name.backend {
        case .systemV: return record.name.backend == .systemV && record.creator.pid == creatorPID ? record : nil
        default: return record.name == name && record.matches(born: born) ? record : nil
        }
    }

    /// Whether a record still describes a region that exists (not marked for removal), as its user made it.
    static func isCurrent(_ record: Record) -> Bool { standing(record) == .current }

    /// What a record is worth now: it describes a region that exists (`current`); the region it was written for is
    /// gone (`gone`); or the region it was written for (the object its file is named after) still exists, but the
    /// record's words do not describe it (another name, creator or birth: `notBelieved`; a record is input: anyone
    /// who can write the directory's files could have written it, and a name read from one is shown escaped).
    enum Standing: Equatable { case current, gone, notBelieved }

    static func standing(_ record: Record) -> Standing {
        let parts = record.file.split(separator: "-")
        switch record.name.backend {
        case .systemV:
            guard parts.count == 2, let id = Int32(parts[1]), let ds = try? Syscalls.shmStat(id, nil) else { return .gone }
            return ds.shm_perm.cuid == record.owner && ds.shm_cpid == record.creator.pid && ds.shm_perm.mode & 0o1000 == 0
                ? .current : .notBelieved
        case .posix, .file:
            guard parts.count == 3, let device = UInt64(parts[1]), let inode = UInt64(parts[2]) else { return .gone }
            if let parent = try? ObjectName(record.name)?.parent(record.name), let status = try? parent.status(record.name) {
                if UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode && status.st_uid == record.owner
                    && record.matches(born: try? Syscalls.birthTime(parent.descriptor, parent.entry, record.name)) {
                    return .current
                }
                return .notBelieved  // the name is another object's now, or the record's words are not its
            }
            // The name is not there. The region the record was written for may be, under another name (posix: /dev/shm
            // is one directory, so it can be looked for; a file could be anywhere).
            if record.name.backend == .posix, (try? Syscalls.listDirectory("/dev/shm", nil))?.contains(where: { entry in
                guard let status = try? Syscalls.fstatat(AT_FDCWD, "/dev/shm/" + entry, nil) else { return false }
                return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
            }) == true {
                return .notBelieved
            }
            return .gone
        case .anonymous, .memfd:
            return .notBelieved
        }
    }

    /// Every record of `owner` (or of every user whose directory this process may read, with `owner` nil), and
    /// the files that are not believable records (to be removed by `shm gc`).
    static func all(owner: UInt32?) -> (records: [Record], unreadable: [(owner: UInt32, file: String)]) {
        var owners: [UInt32] = []
        if let owner {
            owners = [owner]
        } else {
            for entry in (try? Syscalls.listDirectory("/dev/shm", nil)) ?? [] {
                if let uid = entry.dropPrefix(".sharedmemory-").flatMap({ UInt32($0) }) { owners.append(uid) }
            }
        }
        var records: [Record] = [], unreadable: [(UInt32, String)] = []
        for uid in owners.sorted() {
            guard let directory = try? openDirectory(uid, creating: false, nil) else { continue }
            defer { Syscalls.close(directory) }
            for file in (try? Syscalls.listDirectory("/proc/self/fd/\(directory)", nil)) ?? [] {
                if file.hasPrefix(".tmp-") {
                    // Being written now, or left by a writer that died: removed only once a minute old.
                    if let status = try? Syscalls.fstatat(directory, file, nil), status.st_mtim.tv_sec + 60 < time(nil) {
                        unreadable.append((uid, file))
                    }
                } else if let record = read(file, in: directory, owner: uid) {
                    records.append(record)
                } else {
                    unreadable.append((uid, file))
                }
            }
        }
        return (records, unreadable)
    }

    /// The user's record directory, open, if it is a directory that only that user can write; with `creating`,
    /// made first if missing (then a directory that fails the checks is `foreign`). /dev/shm is the system's, so
    /// it is reached by path; the directory itself is opened with `O_NOFOLLOW`, and checked on the descriptor.
    private static func openDirectory(_ uid: UInt32, creating: Bool, _ region: RegionName?) throws(SharedMemoryError) -> Int32? {
        let path = path(uid)
        for _ in 0..<10 {
            if creating {
                do {
                    try Syscalls.mkdirat(AT_FDCWD, path, 0o700, region)
                } catch where error.code == .alreadyExists {}
            }
            let opened: Int32?
            do throws(SharedMemoryError) {
                opened = try Syscalls.openIfPresent(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, region)
            } catch {
                guard creating else { return nil }
                throw SharedMemoryError(.foreign, "\(path), where SharedMemory records which regions die with their process, is not a directory (someone may have planted it); remove it", region: region, systemCall: error.systemCall, errno: error.errno)
            }
            guard let directory = opened else {
                if creating { continue }  // removed with its last record between mkdir and open: make it again
                return nil
            }
            guard let status = try? Syscalls.fstat(directory, region), status.st_uid == uid, status.st_mode & 0o022 == 0 else {
                Syscalls.close(directory)
                guard creating else { return nil }
                throw SharedMemoryError(.foreign, "\(path), where SharedMemory records which regions die with their process, belongs to another user or lets others write: it was not used, and a process-lifetime region cannot be recorded until it is removed", region: region)
            }
            if creating && status.st_mode & 0o700 != 0o700 { try? Syscalls.fchmod(directory, 0o700, region) }  // a umask of 0700
            return directory
        }
        throw SharedMemoryError(.busy, "\(path) kept disappearing while a record was written", region: region)
    }

    /// One record file, if it is believable: a regular file of `owner` with one link, small, in the format.
    private static func read(_ file: String, in directory: Int32, owner: UInt32) -> Record? {
        guard let fd = try? Syscalls.openat(directory, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0, nil) else { return nil }
        defer { Syscalls.close(fd) }
        guard let status = try? Syscalls.fstat(fd, nil), status.st_mode & S_IFMT == S_IFREG, status.st_uid == owner,
              status.st_nlink == 1, status.st_size < 8192,
              let bytes = try? Syscalls.readAll(fd)
        else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", maxSplits: 3, omittingEmptySubsequences: false)
        guard lines.count == 4, lines[0] == magic.description,
              let creatorLine = lines[1].dropPrefix("creator "), let bornLine = lines[2].dropPrefix("born "),
              let nameText = lines[3].dropPrefix("name "), let name = try? RegionName(String(nameText))
        else { return nil }
        let parts = creatorLine.split(separator: " "), born = bornLine.split(separator: " ")
        guard parts.count == 2, let pid = Int32(parts[0]), pid > 0, let start = UInt64(parts[1]),
              born.count == 2, let seconds = Int(born[0]), let nanoseconds = Int(born[1])
        else { return nil }
        return Record(owner: owner, file: file, name: name, creator: Creator(pid: pid, startTime: start == 0 ? nil : start),
                      born: seconds == 0 ? nil : Timestamp(seconds: seconds, nanoseconds: nanoseconds))
    }
}
