import Glibc

/// Counting mappings of a file from /proc/*/maps: how posix and file regions report an attach count, since the
/// kernel keeps none for them.
enum ProcMaps {
    /// A file's identity as /proc/PID/maps prints it.
    struct FileID: Hashable {
        var major: UInt32
        var minor: UInt32
        var inode: UInt64

        init(device: UInt64, inode: UInt64) {
            // glibc's encoding of dev_t (gnu_dev_major / gnu_dev_minor).
            major = UInt32(truncatingIfNeeded: ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff))
            minor = UInt32(truncatingIfNeeded: (device & 0xff) | ((device >> 12) & ~0xff))
            self.inode = inode
        }

        init(major: UInt32, minor: UInt32, inode: UInt64) {
            self.major = major
            self.minor = minor
            self.inode = inode
        }
    }

    /// For every file mapped by a process whose maps this user may read, how many mappings of it start at offset
    /// 0 (one per `mmap` of the whole region; a mapping split later by `mprotect` still counts once). Processes
    /// whose maps are closed to this user are left out: other users' processes when not root, and, even for root,
    /// processes protected from ptrace (the init of a VM or container). `nil` if /proc cannot be read at all.
    ///
    /// An address space counts once, as System V's `shm_nattch` counts it: a child between `vfork` and `exec` (every
    /// `posix_spawn`, every `Process.run`) lists its parent's mappings as its own, and counted twice it made a
    /// region's count jump while its user spawned anything.
    static func mappingCounts() -> [FileID: Int]? {
        guard let entries = try? Syscalls.listDirectory("/proc", nil) else { return nil }
        var counts: [FileID: Int] = [:]
        // The processes counted so far, by their first mapping (an executable's, fixed for the life of its address
        // space): only those that share it can share an address space, and only they are compared (`kcmp`).
        var counted: [[UInt8]: [Int32]] = [:]
        for pid in entries where pid.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            let contents: [UInt8]
            do {
                contents = try Syscalls.readFile("/proc/\(pid)/maps")
            } catch {
                continue  // it exited, or its maps are closed to us
            }
            guard !contents.isEmpty, let id = Int32(pid) else { continue }  // a kernel thread maps nothing
            // A copy of the line, not a slice: a slice would keep every process's whole maps alive to the end.
            let first = Array(contents.prefix { $0 != UInt8(ascii: "\n") })
            if counted[first]?.contains(where: { Syscalls.sameAddressSpace($0, id) }) == true { continue }
            counted[first, default: []].append(id)
            for line in contents.split(separator: UInt8(ascii: "\n")) {
                if let id = parse(line) { counts[id, default: 0] += 1 }
            }
        }
        return counts
    }

    /// `start-end perms offset major:minor inode [path]`: the file of a mapping at offset 0 with an inode.
    static func parse(_ line: ArraySlice<UInt8>) -> FileID? {
        let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 5, omittingEmptySubsequences: true)
        guard fields.count >= 5,
              let offset = UInt64(String(decoding: fields[2], as: UTF8.self), radix: 16), offset == 0,
              let inode = UInt64(String(decoding: fields[4], as: UTF8.self)), inode != 0
        else { return nil }
        let device = fields[3].split(separator: UInt8(ascii: ":"))
        guard device.count == 2,
              let major = UInt32(String(decoding: device[0], as: UTF8.self), radix: 16),
              let minor = UInt32(String(decoding: device[1], as: UTF8.self), radix: 16)
        else { return nil }
        // A System V segment lives on the kernel's internal tmpfs, as memfds do, and maps prints its segment id as
        // its inode: segment 5234 and the memfd with inode 5234 would be counted as one file. Segments have an
        // exact count of their own (shm_nattch), so they are left out here.
        if fields.count == 6, fields[5].drop(while: { $0 == UInt8(ascii: " ") }).starts(with: "/SYSV".utf8) { return nil }
        return FileID(major: major, minor: minor, inode: inode)
    }
}
