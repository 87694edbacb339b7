import Glibc
import SystemPackage

/// The one factory: create, open and inspect regions of any backend, chosen by the region name.
///
/// ```swift
/// let name = try RegionName("posix:/orders")         // or "sysv:0x5eed", "file:/var/tmp/orders", "anonymous"
/// let region = try SharedMemory.create(name, size: 1 << 20)
/// try region.set(bytes: Array("hello".utf8), at: 0)
/// // in another process:
/// let peer = try SharedMemory.open(name, options: .init(access: .readOnly))
/// let greeting = try peer.get(count: 5, at: 0)
/// ```
public enum SharedMemory {
    /// Creates a region of exactly `size` bytes and attaches it read-write. Exclusive: if the name exists, throws
    /// ``SharedMemoryError/Code/alreadyExists`` and leaves that region untouched. Mode 0600 unless `options` say
    /// otherwise, applied exactly whatever the umask. A failure part-way removes whatever was made.
    public static func create(
        _ name: RegionName, size: Int, options: CreateOptions = .init()
    ) throws(SharedMemoryError) -> AnyRegion {
        switch name.backend {
        case .systemV: .systemV(try SystemVRegion.create(name, size: size, options: options))
        case .posix: .posix(try POSIXRegion.create(name, size: size, options: options))
        case .file: .file(try FileRegion.create(name, size: size, options: options))
        case .anonymous: .anonymous(try AnonymousRegion.create(size: size, options: options))
        case .memfd: .memfd(try MemfdRegion.create(name, size: size, options: options))
        }
    }

    /// Attaches an existing region at its current size. Opening never creates, grows or shrinks it.
    /// Anonymous and memfd regions have no name to open (``SharedMemoryError/Code/unsupported``): share them across
    /// `fork`, or send a memfd's descriptor (``SharedRegion/send(over:access:)``).
    public static func open(
        _ name: RegionName, options: OpenOptions = .init()
    ) throws(SharedMemoryError) -> AnyRegion {
        switch name.backend {
        case .systemV: return .systemV(try SystemVRegion.open(name, options: options))
        case .posix: return .posix(try POSIXRegion.open(name, options: options))
        case .file: return .file(try FileRegion.open(name, options: options))
        case .anonymous, .memfd: throw noName(name, "open")
        }
    }

    /// Opens the region if it exists (it must hold at least `size` bytes; it is never resized), and creates it
    /// with `size` bytes if not. Safe against a racing creator: exactly one process creates it, and an opener that
    /// finds it before its creator has sized it waits (up to 2 seconds) rather than fail. An existing region is
    /// adopted only if it is this user's own, from its creation (System V: created by this user, not given to
    /// it), has one name (no hard links), and its mode gives no more access than `options.permissions`: anything
    /// else is ``SharedMemoryError/Code/foreign``, never adopted.
    public static func openOrCreate(
        _ name: RegionName, size: Int, options: CreateOptions = .init()
    ) throws(SharedMemoryError) -> AnyRegion {
        guard name.backend.capabilities.contains(.named) else { throw noName(name, "open") }
        if case .systemVPrivate = name.location {
            throw SharedMemoryError(.invalidArgument, "sysv:private makes a new segment each time and cannot be opened; use create", region: name)
        }
        let openOptions = OpenOptions(existing: options, size: size)
        let deadline = ContinuousClock.now + .seconds(2)
        // Create exclusively; if someone else has it, open theirs; if it vanished in between, try again.
        var vanished = 0
        while vanished < 100 {
            do {
                return try create(name, size: size, options: options)
            } catch where error.code == .removed {
                vanished += 1  // another process removed it while we were making it
            } catch where error.code == .alreadyExists {
                do {
                    return try open(name, options: openOptions)
                } catch where error.code == .notFound {
                    vanished += 1
                } catch where error.code == .notReady && ContinuousClock.now < deadline {
                    usleep(1000)  // its creator has not sized it yet
                    continue
                }
            }
        }
        throw SharedMemoryError(.busy, "the region kept being created and removed by other processes while this one tried to open it", region: name)
    }

    /// Creates a region under a fresh name that no other process has or can guess, and returns it; read the name
    /// from ``SharedRegion/name`` to tell a peer. It belongs to this process (``Lifetime/process``, whatever
    /// `options` say): once this process is gone and nothing attaches it, `shm gc` removes it.
    ///
    /// posix names are `/sm-` and 16 hex digits (64 bits from the system's secure random generator); file names
    /// are the same in `directory`; a name that exists is never adopted, another is drawn. sysv regions use
    /// `sysv:private`, whose id the kernel guarantees fresh. Anonymous memory has no name and is simply created.
    public static func createUnique(
        _ backend: Backend, size: Int, options: CreateOptions = .init(), directory: FilePath = "/tmp"
    ) throws(SharedMemoryError) -> AnyRegion {
        var options = options
        options.lifetime = .process
        for _ in 0..<100 {
            let random = randomName("sm-")
            let name: RegionName
            switch backend {
            case .systemV: name = .systemVPrivate
            case .posix: name = try .posix("/" + random)
            case .file: name = try .file(directory.appending(random))
            case .anonymous: name = .anonymous
            case .memfd: name = try .memfd(random)
            }
            do {
                return try create(name, size: size, options: options)
            } catch where error.code == .removed {
                continue  // another process removed it while we were making it
            } catch where error.code == .alreadyExists {
                continue
            }
        }
        throw SharedMemoryError(.alreadyExists, "100 random names in a row were taken; something is creating names in bulk")
    }

    /// What the kernel knows about a region, without attaching it.
    public static func info(_ name: RegionName) throws(SharedMemoryError) -> RegionInfo {
        switch name.backend {
        case .systemV: try SystemVRegion.info(name)
        case .posix, .file: try MappedObject.info(try ObjectName.of(name, for: name.backend), name)
        case .anonymous, .memfd: throw noName(name, "look up")
        }
    }

    /// Removes a region's name without attaching it: System V `IPC_RMID`, `shm_unlink`, `unlink`. Attachments
    /// keep working until they detach. A missing name is ``SharedMemoryError/Code/notFound``.
    public static func remove(_ name: RegionName) throws(SharedMemoryError) {
        do throws(SharedMemoryError) {
            switch name.backend {
            case .systemV: try SystemVRegion.remove(name)
            case .posix, .file: try MappedObject.remove(try ObjectName.of(name, for: name.backend), name)
            case .anonymous, .memfd: throw noName(name, "remove")
            }
        } catch where error.code == .notFound && error.reason.hasPrefix("no region has this name") {
            // The general advice ("create it first") is for opening; here there is simply nothing to remove.
            var error = error
            error.reason = "no region has this name, so there is nothing to remove: it was never created, or it was removed already (by its owner, `shm rm`, `shm gc`, or systemd's RemoveIPC=yes when its user logged out)"
            throw error
        }
    }

    /// Every region of a listable backend on this machine: System V segments from /proc/sysvipc/shm (those of
    /// every user, and those marked for removal), POSIX objects from /dev/shm. Other backends have no list:
    /// ``SharedMemoryError/Code/unsupported``.
    public static func list(_ backend: Backend) throws(SharedMemoryError) -> [RegionInfo] {
        switch backend {
        case .systemV: return try SystemVRegion.list()
        case .posix: return try MappedObject.listPOSIX()
        case .file:
            throw SharedMemoryError(.unsupported, "file regions cannot be listed: a file region can be any file on any file system")
        case .anonymous, .memfd:
            throw SharedMemoryError(.unsupported, "\(backend) regions cannot be listed: they have no name")
        }
    }

    /// Regions created with ``Lifetime/process`` whose creator is gone and that nothing attaches: what `shm gc`
    /// removes. Found through SharedMemory's lifetime records (see ``CreateOptions/lifetime``), so file regions
    /// are among them too. Only this user's, unless `includingOtherUsers`. Never a region that another program
    /// made, or that was created ``Lifetime/persistent`` (see ``leftovers(includingOtherUsers:)``), never one
    /// marked for removal, attached, or whose attach count is unknown.
    ///
    /// The attach count of a posix or file region comes from the /proc/PID/maps this user may read: run as root
    /// to see every process's mappings.
    public static func orphans(includingOtherUsers: Bool = false) throws(SharedMemoryError) -> [RegionInfo] {
        var candidates = try list(.systemV) + list(.posix)
        for record in LifetimeRecords.all(owner: includingOtherUsers ? nil : geteuid()).records where record.name.backend == .file {
            if let info = try? info(record.name) { candidates.append(info) }
        }
        return candidates.filter { isUnused($0, includingOtherUsers: includingOtherUsers) && $0.lifetime == .process }
    }

    /// Regions whose creator is gone and that nothing attaches, but that were not created with
    /// ``Lifetime/process``: made by another program (`ipcmk`, `sysv_ipc`, C), or by SharedMemory as
    /// ``Lifetime/persistent``, the normal state of a region meant to outlive its creator. `shm gc` lists them and
    /// keeps them. System V segments, and posix objects whose creator is recorded.
    public static func leftovers(includingOtherUsers: Bool = false) throws(SharedMemoryError) -> [RegionInfo] {
        (try list(.systemV) + list(.posix)).filter { isUnused($0, includingOtherUsers: includingOtherUsers) && $0.lifetime == .persistent }
    }

    /// Removes a region ``orphans(includingOtherUsers:)`` found, after checking again that it is the same object
    /// and still an orphan; and its lifetime record. With `includingPersistent`, a region from
    /// ``leftovers(includingOtherUsers:)`` too: only ever on a person's explicit word (`shm gc
    /// --remove-persistent-too`), since such a region was meant to outlive its creator. Returns whether it removed
    /// it; `false` means it is gone, has come back to life, or another object has its name now (left alone).
    @discardableResult
    public static func removeOrphan(_ orphan: RegionInfo, includingOtherUsers: Bool = false, includingPersistent: Bool = false) throws(SharedMemoryError) -> Bool {
        // By id for System V, so a new segment that took the key in the meantime is never touched.
        let name = try orphan.systemVID.map { id throws(SharedMemoryError) in try RegionName.systemV(id: id) } ?? orphan.name
        let now: RegionInfo
        do {
            now = try info(name)
        } catch where error.code == .notFound {
            return false
        }
        guard now.inode == orphan.inode, now.device == orphan.device, now.creationTime == orphan.creationTime,
              now.systemVID == orphan.systemVID, now.creatorPID == orphan.creatorPID,
              isUnused(now, includingOtherUsers: includingOtherUsers), now.lifetime == .process || includingPersistent
        else { return false }
        do {
            switch name.backend {
            case .systemV:
                try remove(name)
            case .posix, .file:
                try MappedObject.remove(try ObjectName.of(name, for: name.backend), name, ifStill: now.device!, now.inode!,
                                        born: now.creationTime, owner: now.ownerUID)
            case .anonymous, .memfd:
                return false
            }
        } catch where error.code == .notFound || error.code == .removed {
            return false
        }
        return true
    }

    /// Removes SharedMemory's lifetime records that no longer describe a region (it was removed by something
    /// other than SharedMemory, such as `ipcrm`, or its remover died before removing the record) and record files
    /// that cannot be read. Returns the names of the regions whose records it removed (or the paths of unreadable
    /// ones). Only this user's, unless `includingOtherUsers`. A record only ever makes a region collectable, so
    /// removing one never removes a region.
    @discardableResult
    public static func removeStaleRecords(includingOtherUsers: Bool = false) -> [String] {
        removeStaleRecordsSaying(includingOtherUsers: includingOtherUsers).map(\.name)
    }

    /// ``removeStaleRecords(includingOtherUsers:)``, saying of each record why it went (`shm gc` prints it).
    @discardableResult
    public static func removeStaleRecordsSaying(includingOtherUsers: Bool = false) -> [RemovedRecord] {
        let found = LifetimeRecords.all(owner: includingOtherUsers ? nil : geteuid())
        var removed: [RemovedRecord] = []
        for record in found.records {
            let standing = LifetimeRecords.standing(record)
            guard standing != .current else { continue }
            LifetimeRecords.removeFile(record.file, owner: record.owner)
            removed.append(RemovedRecord(name: record.name.description, reason: standing == .gone ? .regionGone : .notBelieved))
        }
        for (owner, file) in found.unreadable {
            LifetimeRecords.removeFile(file, owner: owner)
            removed.append(RemovedRecord(name: LifetimeRecords.path(owner) + "/" + file, reason: .unreadable))
        }
        return removed
    }

    /// Unattached, creator gone, not marked for removal, and this user's unless `includingOtherUsers`.
    private static func isUnused(_ region: RegionInfo, includingOtherUsers: Bool) -> Bool {
        guard includingOtherUsers || region.ownerUID == geteuid(),
              !region.isMarkedForRemoval, region.attachCount == 0, region.creatorIsAlive == false
        else { return false }
        return true
    }

    /// The limits that decide how much shared memory this machine can hand out: System V's sysctls, the size of
    /// /dev/shm (where POSIX objects live), and huge pages.
    ///
    /// The corresponding C calls are `shmctl(0, IPC_INFO, ...)` and `statvfs("/dev/shm")`; the rest is read
    /// from /proc/meminfo and /sys/kernel/mm/transparent_hugepage.
    public static func limits() throws(SharedMemoryError) -> SystemLimits {
        let sysv = try Syscalls.shmLimits()
        let shm = Syscalls.fileSystem(at: "/dev/shm")
        let meminfo = String(decoding: (try? Syscalls.readFile("/proc/meminfo")) ?? [], as: UTF8.self)
        func field(_ key: String) -> Int? {
            guard let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return nil }
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        }
        return SystemLimits(
            systemVMaximumSize: sysv.shmmax, systemVMinimumSize: sysv.shmmin,
            systemVMaximumSegments: sysv.shmmni, systemVMaximumTotalPages: sysv.shmall,
            devShmSize: shm.map { Int($0.f_blocks) * Int($0.f_frsize) },
            devShmFree: shm.map { Int($0.f_bavail) * Int($0.f_frsize) },
            hugePagesTotal: field("HugePages_Total"), hugePagesFree: field("HugePages_Free"),
            hugePageSize: field("Hugepagesize").map { $0 * 1024 },
            transparentHugePagesForShmem: HugePages.transparentPolicy)
    }

    private static func noName(_ name: RegionName, _ operation: String) -> SharedMemoryError {
        let share = name.backend == .memfd
            ? "share it by sending its descriptor (send(over:)) or across fork"
            : "share it with children by creating it before fork"
        return SharedMemoryError(.unsupported, "\(name.backend) regions have no name to \(operation): \(share), or use a named backend", region: name)
    }
}

/// What ``SharedMemory/limits()`` reads: how much shared memory this machine can hand out.
public struct SystemLimits: Sendable, Hashable {
    /// The largest System V segment in bytes (`kernel.shmmax`).
    public var systemVMaximumSize: UInt
    /// The smallest System V segment in bytes (SHMMIN, 1 on Linux).
    public var systemVMinimumSize: UInt
    /// How many System V segments may exist at once (`kernel.shmmni`).
    public var systemVMaximumSegments: UInt
    /// How many pages all System V segments together may hold (`kernel.shmall`).
    public var systemVMaximumTotalPages: UInt
    /// The size of the tmpfs at /dev/shm in bytes (where POSIX objects live); `nil` if it is not mounted.
    public var devShmSize: Int?
    /// Its free space in bytes.
    public var devShmFree: Int?
    /// Huge pages reserved (`vm.nr_hugepages`, HugePages_Total in /proc/meminfo).
    public var hugePagesTotal: Int?
    /// Reserved huge pages not in use.
    public var hugePagesFree: Int?
    /// The default huge page size in bytes.
    public var hugePageSize: Int?
    /// The transparent-huge-page policy for shared memory (`always`, `within_size`, `advise`, `never`, ...).
    public var transparentHugePagesForShmem: String?
}
