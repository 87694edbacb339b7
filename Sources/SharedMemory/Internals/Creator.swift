import Atomics
import Glibc

/// Who created a posix or file region: the kernel does not record it (System V does, in `shm_cpid`), so
/// SharedMemory writes it into an extended attribute at creation, `user.sharedmemory.creator`, as
/// `PID:STARTTIME` (the process's start time in clock ticks since boot, from /proc/PID/stat). With the start
/// time a reused pid is not mistaken for the creator. File systems without user extended attributes simply
/// have no record: the creator is then unknown.
///
/// Anyone who may write an object may set its user extended attributes, so the record is believed only on an
/// object that its owner alone may write (no write bit for group or others): otherwise another user could have
/// forged it. `shm gc` never decides on it (it uses the lifetime records, see ``LifetimeRecords``).
struct Creator: Hashable {
    static let attributeName: StaticString = "user.sharedmemory.creator"

    var pid: Int32
    var startTime: UInt64?

    /// This process. Its start time is read once (and again in a child after `fork`, which has its own).
    static var current: Creator { currentRecord().pointee.creator }

    /// This process and its attribute's value, `PID:STARTTIME` (at most 31 bytes), made once per process.
    private struct Record {
        var creator = Creator(pid: 0, startTime: nil)
        var length = 0
        var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    }

    /// The record, in memory made once and kept; `recordPid` says whose it is. Every create reads it: with no lock,
    /// once `recordPid` says it is this process's (a lock and a copy of an array cost about 100 instructions of a
    /// memfd's 1 800-instruction lifecycle). It is written only while `recordPid` says it is another process's: under
    /// `making`'s lock, in the process's first create, and again in a forked child's.
    nonisolated(unsafe) private static let record: UnsafeMutablePointer<Record> = {
        let record = UnsafeMutablePointer<Record>.allocate(capacity: 1)
        record.initialize(to: Record())
        return record
    }()
    private static let recordPid = ManagedAtomic<Int32>(0)
    /// The pid the record was made for, under the lock that makes it (a value, not `Locked(())`: see ``Locked``).
    private static let making = Locked(Int32(0))

    private static func currentRecord() -> UnsafeMutablePointer<Record> {
        let pid = getpid()
        if recordPid.load(ordering: .acquiring) != pid {
            making.withLock { madeFor in
                guard madeFor != pid else { return }
                let me = Creator(pid: pid, startTime: startTime(of: pid))
                var value = ASCIIText(capacity: 32)
                value.append(decimal: me.pid)
                value.append(":")
                value.append(decimal: me.startTime ?? 0)
                value.withBytes { text in  // at most 7 digits, a colon and 20 digits: 28 of the 32 bytes
                    let length = min(text.count, MemoryLayout<(UInt64, UInt64, UInt64, UInt64)>.size)
                    withUnsafeMutableBytes(of: &record.pointee.bytes) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(text)[..<length])) }
                    record.pointee.length = length
                }
                record.pointee.creator = me
                madeFor = pid
                recordPid.store(pid, ordering: .releasing)
            }
        }
        return record
    }

    /// Records `current` on a new object's descriptor, as a best effort.
    static func record(on descriptor: Int32) {
        let record = currentRecord()
        _ = withUnsafeBytes(of: record.pointee.bytes) { bytes in
            Syscalls.setAttribute(descriptor, attributeName, UnsafeBufferPointer(start: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: record.pointee.length))
        }
    }

    /// The recorded creator of an object whose `stat` is `status`, if it has a record that only its owner could
    /// have written.
    static func recorded(on target: Syscalls.AttributeTarget, _ status: stat) -> Creator? {
        guard status.st_mode & 0o022 == 0, let text = Syscalls.attribute(of: target, attributeName.description) else { return nil }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let pid = Int32(parts[0]), let start = UInt64(parts[1]) else { return nil }
        return Creator(pid: pid, startTime: start == 0 ? nil : start)
    }

    /// The process a seat or slot in a region names: its pid and the start time its writer recorded there. A
    /// recorded 0 stays 0 rather than "unknown": every writer records its real start time (a user process never
    /// started at tick 0), so a seat naming 0 was written by something else, and ``isAlive`` is false for it however
    /// long that pid lives. (Believing it would let any peer with write access hold a seat for ever as `pid 1,
    /// start 0`.) Records outside regions (the creator attribute, lifetime records) read 0 as unknown instead, and
    /// count it alive: `shm gc` must never remove what it cannot prove dead.
    static func seat(pid: Int32, start: UInt64) -> Creator {
        Creator(pid: pid, startTime: start)
    }

    /// Whether the creator still runs: a process with its pid exists and (where the start time is known) started
    /// at the same moment. A start time of 0 (a seat's, see ``seat(pid:start:)``) is never alive.
    var isAlive: Bool {
        if startTime == 0 { return false }
        guard Syscalls.processExists(pid) else { return false }
        guard let startTime, let now = Self.startTime(of: pid) else { return true }
        return now == startTime
    }

    /// Whether a System V segment's creator still runs. The kernel keeps only its pid, so a process with that
    /// pid counts only if it started no later than the segment was last changed (`shm_ctime`, which is its
    /// creation unless `IPC_SET` came later): a pid reused by a younger process is not the creator.
    static func isAlive(pid: Int32, changed: Int) -> Bool {
        guard Syscalls.processExists(pid) else { return false }
        guard let ticks = startTime(of: pid), let boot = bootTime else { return true }
        let hertz = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        return boot + Int(ticks / hertz) <= changed + 1
    }

    /// When the system booted, in seconds since the epoch (`btime` in /proc/stat): read once, since listing
    /// segments asks for every creator.
    private static let bootTime: Int? = {
        guard let contents = try? Syscalls.readFile("/proc/stat") else { return nil }
        for line in String(decoding: contents, as: UTF8.self).split(separator: "\n") where line.hasPrefix("btime ") {
            return Int(line.dropFirst(6))
        }
        return nil
    }()

    /// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
    static func startTime(of pid: Int32) -> UInt64? {
        guard let contents = try? Syscalls.readFile("/proc/\(pid)/stat"),
              let close = contents.lastIndex(of: UInt8(ascii: ")"))  // the command name may hold spaces
        else { return nil }
        let fields = contents[(close + 1)...].split(separator: UInt8(ascii: " "))
        // After "pid (comm)", field 3 (state) is fields[0], so field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(String(decoding: fields[19], as: UTF8.self))
    }
}
