import ArgumentParser
import Foundation
@_spi(Formatting) @_spi(Tools) import SharedMemory
import SystemPackage

// One ParsableCommand per subcommand; they share RegionArgument and OutputOptions.

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List every System V segment and POSIX object on the machine.",
        discussion: "System V segments come from /proc/sysvipc/shm, as ipcs -m shows them (every user's, and those marked for removal); POSIX objects from /dev/shm.")

    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case sysv, posix
    }

    @Option(help: "Only this backend.")
    var backend: Kind?

    @Flag(help: "Say what System V segments hold too (KIND): attaches each read-only for a moment, which the kernel records as its last attach.")
    var attach = false

    @OptionGroup var output: OutputOptions

    func run() throws {
        var regions: [RegionInfo] = []
        for kind in Kind.allCases where backend == nil || backend == kind {
            regions += try SharedMemory.list(Backend(rawValue: kind.rawValue)!)
        }
        let kinds = regions.map { kind(of: $0) }
        if output.json {
            try printJSON(zip(regions, kinds).map { region, kind in
                var json = region.summaryJSON
                json["kind"] = kind.map { $0 as Any } ?? NSNull()
                return json
            })
            return
        }
        let rows = zip(regions, kinds).map { r, kind -> [String] in
            [r.backend.rawValue, printable(r.name.description), kind ?? "?", r.systemVID.map(String.init) ?? "-", humanSize(r.size),
             octalMode(r.permissions) ?? "-", userName(r.ownerUID), r.attachCount.map(String.init) ?? "?",
             r.creatorPID.map(String.init) ?? "?",
             r.creatorIsAlive.map { $0 ? "yes" : "no" } ?? "?", r.lifetime.rawValue, r.isMarkedForRemoval ? "removed" : ""]
        }
        print(table(["BACKEND", "NAME", "KIND", "ID", "SIZE", "MODE", "OWNER", "ATTACHED", "CPID", "ALIVE", "LIFETIME", "STATUS"], rows,
                    rightAligned: [3, 4, 7, 8]))
    }

    /// What the region holds, as `shm inspect` recognises it from its first 8 bytes ("-" for nothing known); nil if
    /// they cannot be read. A POSIX object's are read with pread, never mapped, so that listing changes no attach
    /// count; a System V segment's only with --attach (a segment can only be read attached).
    private func kind(of region: RegionInfo) -> String? {
        var word: UInt64 = 0
        switch region.name.location {
        case .posix(let object):
            let descriptor = open("/dev/shm" + object, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            guard descriptor >= 0 else { return nil }
            defer { close(descriptor) }
            guard pread(descriptor, &word, 8, 0) == 8 else { return region.size < 8 ? "-" : nil }
        case .systemV where attach && !region.isMarkedForRemoval:
            guard let bytes = try? SharedMemory.open(region.name, options: .init(access: .readOnly)).get(count: min(8, region.size), at: 0) else { return nil }
            guard bytes.count == 8 else { return "-" }
            word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        default:
            return nil
        }
        let format = Inspection.recognise(word)
        return format == .none ? "-" : format.rawValue
    }
}

struct Stat: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show everything the kernel knows about a region.")

    @OptionGroup var region: RegionArgument
    @OptionGroup var output: OutputOptions

    func run() throws {
        let info = try SharedMemory.info(try region.name())
        if output.json {
            try printJSON(info.fullJSON)
            return
        }
        var lines: [(String, String)] = [
            ("name", printable(info.name.description)), ("backend", info.backend.rawValue),
            ("size", "\(info.size) (\(humanSize(info.size)))"),
            ("mode", octalMode(info.permissions) ?? "-"),
            ("owner", "\(userName(info.ownerUID)) (uid \(info.ownerUID), gid \(info.ownerGID))"),
        ]
        if let id = info.systemVID { lines.append(("id", "\(id)")) }
        if let key = info.systemVKey { lines.append(("key", String(format: "0x%08x", UInt32(bitPattern: key)))) }
        if let uid = info.creatorUID { lines.append(("creator", "\(userName(uid)) (uid \(uid), gid \(info.creatorGID ?? 0))")) }
        lines.append(("attached", info.attachCount.map(String.init) ?? "unknown"))
        lines.append(("creator pid", info.creatorPID.map { "\($0) (\(info.creatorIsAlive == true ? "running" : "gone"))" } ?? "unknown"))
        lines.append(("lifetime", info.lifetime == .process ? "process (shm gc removes it once its creator is gone and nothing attaches it)" : "persistent (shm gc keeps it)"))
        if let pid = info.lastPID { lines.append(("last pid", "\(pid)")) }
        if info.backend == .systemV {
            lines.append(("last attach", humanTime(info.lastAttachTime)))
            lines.append(("last detach", humanTime(info.lastDetachTime)))
        }
        lines.append(("last change", humanTime(info.lastChangeTime)))
        if let inode = info.inode { lines.append(("device, inode", "\(info.device ?? 0), \(inode)")) }
        if info.isMarkedForRemoval { lines.append(("status", "removed; goes when the last attachment detaches")) }
        let width = lines.map(\.0.count).max() ?? 0
        for (key, value) in lines { print(key + ":" + String(repeating: " ", count: width - key.count + 1) + value) }
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a region (exclusively, unless --open-existing).")

    @OptionGroup var region: RegionArgument

    @Option(parsing: .unconditional, help: ByteCount.help, transform: ByteCount.parseSize)
    var size: Int

    @Option(help: "The exact mode, in octal (default 0600). The umask does not change it.")
    var mode: String = "0600"

    @Flag(help: "Open the region if it exists (it must hold at least --size bytes) instead of failing.")
    var openExisting = false

    @Flag(help: "Mark it temporary: shm gc removes it once nothing attaches it (its creator, this command, is gone at once).")
    var temporary = false

    func validate() throws {
        guard let value = CModeT(mode, radix: 8), value <= 0o777 else {
            throw ValidationError("`\(mode)` is not a mode: give 0 to 0777 in octal, for example 0640")
        }
        let name = try region.name()
        guard name.backend.capabilities.contains(.named) else {
            throw ValidationError("\(name.backend) regions have no name outside the process that makes them: shm create would make one and lose it as it exits. Use posix:/NAME, sysv:KEY or file:/PATH for a region other processes open by name; make \(name.backend) regions in your program and share them across fork\(name.backend == .memfd ? " or by sending the descriptor" : "")")
        }
    }

    func run() throws {
        let name = try region.name()
        let options = CreateOptions(permissions: FilePermissions(rawValue: CModeT(mode, radix: 8)!),
                                    lifetime: temporary ? .process : .persistent)
        let created = openExisting
            ? try SharedMemory.openOrCreate(name, size: size, options: options)
            : try SharedMemory.create(name, size: size, options: options)
        let info = try created.info()
        print("\(openExisting ? "ready" : "created") \(printable(created.name.description)) (\(humanSize(created.size)), mode \(octalMode(info.permissions) ?? "-")\(info.lifetime == .process ? ", temporary" : ""))")
    }
}

struct Write: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write standard input (or --string) into a region.",
        discussion: "Nothing is written unless all of it fits.")

    @OptionGroup var region: RegionArgument

    @Option(parsing: .unconditional, help: "Where to start, in bytes from the beginning.", transform: ByteCount.parseOffset)
    var offset: Int = 0

    @Option(help: "Write this text (UTF-8) instead of standard input.")
    var string: String?

    func run() throws {
        let name = try region.name()
        let bytes = string.map { Array($0.utf8) } ?? Array(FileHandle.standardInput.readDataToEndOfFile())
        let target = try openForWriting(name)
        try target.set(bytes: bytes, at: offset)
    }

    /// Opens read-write; if this user may read but not write, says so as `readOnly`, not as a bare refusal.
    private func openForWriting(_ name: RegionName) throws(SharedMemoryError) -> AnyRegion {
        let failure: SharedMemoryError
        do {
            return try SharedMemory.open(name)
        } catch {
            failure = error
        }
        guard failure.code == .permissionDenied, canRead(name) else { throw failure }
        let info = try? SharedMemory.info(name)
        throw SharedMemoryError(
            .readOnly,
            "this user may read the region but not write it (mode \(octalMode(info?.permissions) ?? "?"), owner \(info.map { userName($0.ownerUID) } ?? "?")); ask its owner for write permission",
            region: name)
    }
}

/// Whether this user may open the region read-only.
private func canRead(_ name: RegionName) -> Bool {
    do {
        let reader = try SharedMemory.open(name, options: .init(access: .readOnly))
        try reader.detach()
        return true
    } catch {
        return false
    }
}

struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy a region's bytes to standard output, raw or as a hex dump.")

    @OptionGroup var region: RegionArgument

    @Option(parsing: .unconditional, help: "Where to start, in bytes from the beginning.", transform: ByteCount.parseOffset)
    var offset: Int = 0

    @Option(parsing: .unconditional, help: "How many bytes (default: to the end).", transform: ByteCount.parseOffset)
    var count: Int?

    @Flag(help: "Print a hex dump (offset, 16 bytes in hex, and as text) instead of raw bytes.")
    var hex = false

    func run() throws {
        let source = try SharedMemory.open(try region.name(), options: .init(access: .readOnly))
        let bytes = try source.get(count: count ?? max(0, source.size - offset), at: offset)
        if hex {
            print(hexDump(bytes, startingAt: offset), terminator: "")
        } else {
            FileHandle.standardOutput.write(Data(bytes))
        }
    }
}

/// `hexdump -C` style: `00000010  68 65 6c 6c 6f 00 ...  |hello.|`.
func hexDump(_ bytes: [UInt8], startingAt start: Int) -> String {
    var text = ""
    for lineStart in stride(from: 0, to: bytes.count, by: 16) {
        let line = bytes[lineStart..<min(lineStart + 16, bytes.count)]
        var hex = line.enumerated().map { i, b in (i == 8 ? " " : "") + String(format: "%02x", b) }.joined(separator: " ")
        hex += String(repeating: " ", count: max(0, 49 - hex.count))
        let ascii = String(line.map { (0x20..<0x7f).contains($0) ? Character(UnicodeScalar($0)) : "." })
        text += String(format: "%08x  ", start + lineStart) + hex + " |" + ascii + "|\n"
    }
    return text
}

struct Resize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Change a region's size (posix and file regions; System V sizes are fixed).",
        discussion: "Contents are kept up to the smaller size; new bytes are zero. Processes that have it mapped keep their old size until they remap.")

    @OptionGroup var region: RegionArgument

    @Option(parsing: .unconditional, help: ByteCount.help, transform: ByteCount.parseSize)
    var size: Int

    func run() throws {
        var target = try SharedMemory.open(try region.name())
        let old = target.size
        try target.resize(to: size)
        print("resized \(target.name) from \(humanSize(old)) to \(humanSize(target.size))")
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove regions' names. Processes that have them attached keep them until they detach.")

    @Argument(help: "The regions: sysv:KEY, sysv-id:ID, posix:/NAME or file:/PATH.")
    var regions: [String]

    func validate() throws {
        guard !regions.isEmpty else { throw ValidationError("name at least one region to remove") }
    }

    func run() throws {
        var failed = false
        for text in regions {
            do {
                let name = try RegionName(text)
                try SharedMemory.remove(name)
                print("removed \(name)")
            } catch {
                Shm.report(error.description)
                failed = true
            }
        }
        if failed { throw ExitCode.failure }
    }
}

struct GarbageCollect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove temporary shared memory whose creator is gone.",
        discussion: """
            Removes regions created with a process lifetime (shm create --temporary, SharedMemory's \
            createUnique, lifetime: .process) whose creator has exited and that nothing attaches, and \
            SharedMemory's records of regions that no longer exist. Everything else stays: regions other programs \
            made (ipcmk, sysv_ipc, C) and persistent ones are listed as kept, with the command that would remove \
            each. Only this user's, unless --all-users.
            """)

    @Flag(help: "Only say what would be removed.")
    var dryRun = false

    @Flag(help: "Also remove other users' temporary regions (root only, in practice).")
    var allUsers = false

    @Flag(help: "Also remove the kept regions: unattached, creator gone, but meant to persist. Each is printed. Never the default; give it again on every run that should.")
    var removePersistentToo = false

    func run() throws {
        let orphans = try SharedMemory.orphans(includingOtherUsers: allUsers)
        let kept = try SharedMemory.leftovers(includingOtherUsers: allUsers)
        var failed = false
        func describe(_ region: RegionInfo) -> String {
            "\(printable(region.name.description)) (\(humanSize(region.size)), owner \(userName(region.ownerUID)), creator \(region.creatorPID.map(String.init) ?? "?") gone)"
        }
        func collect(_ region: RegionInfo, persistent: Bool) {
            let what = (persistent ? "persistent " : "") + describe(region)
            if dryRun {
                print("would remove \(what)")
                return
            }
            do {
                if try SharedMemory.removeOrphan(region, includingOtherUsers: allUsers, includingPersistent: persistent) {
                    print("removed \(what)")
                }
            } catch {
                Shm.report(error.description)
                failed = true
            }
        }
        for orphan in orphans { collect(orphan, persistent: false) }
        if removePersistentToo {
            for region in kept { collect(region, persistent: true) }
        }
        if !dryRun {
            for record in SharedMemory.removeStaleRecordsSaying(includingOtherUsers: allUsers) {
                switch record.reason {
                case .regionGone:
                    print("removed the lifetime record of \(printable(record.name)), which no longer exists")
                case .notBelieved:
                    print("removed a lifetime record that was not believed: it names \(printable(record.name)), which is not the region it was written for (that region is kept as it is)")
                case .unreadable:
                    print("removed \(printable(record.name)), which is not a lifetime record")
                }
            }
        }
        if orphans.isEmpty { print("no temporary regions to remove") }
        if !kept.isEmpty && !removePersistentToo {
            print("kept: unattached, creator gone, not marked temporary (remove one with the command shown):")
            for region in kept {
                print("  \(describe(region))  shm rm \(region.systemVID.map { "sysv-id:\($0)" } ?? shellQuoted(region.name.description))")
            }
        }
        if failed { throw ExitCode.failure }
    }
}

struct Limits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the kernel's shared-memory limits, /dev/shm's size, and huge pages.")

    @OptionGroup var output: OutputOptions

    func run() throws {
        let limits = try SharedMemory.limits()
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let totalBytes = limits.systemVMaximumTotalPages.multipliedReportingOverflow(by: UInt(page))
        if output.json {
            func value(_ x: Int?) -> Any { x.map { $0 as Any } ?? NSNull() }
            try printJSON([
                "shmmax": limits.systemVMaximumSize, "shmmin": limits.systemVMinimumSize,
                "shmmni": limits.systemVMaximumSegments, "shmall": limits.systemVMaximumTotalPages,
                "devShmSize": value(limits.devShmSize), "devShmFree": value(limits.devShmFree),
                "hugePagesTotal": value(limits.hugePagesTotal), "hugePagesFree": value(limits.hugePagesFree),
                "hugePageSize": value(limits.hugePageSize),
                "transparentHugePagesShmem": limits.transparentHugePagesForShmem.map { $0 as Any } ?? NSNull(),
            ] as [String: Any])
            return
        }
        func big(_ x: UInt) -> String { x >= UInt(Int.max) ? "\(x) (no limit)" : "\(x) (\(humanSize(Int(x))))" }
        print("System V (kernel.shm*):")
        print("  shmmax  largest segment      \(big(limits.systemVMaximumSize))")
        print("  shmmin  smallest segment     \(limits.systemVMinimumSize)")
        print("  shmmni  segments at most     \(limits.systemVMaximumSegments)")
        print("  shmall  pages in all         \(limits.systemVMaximumTotalPages)\(totalBytes.overflow ? "" : " = \(big(totalBytes.partialValue))")")
        print("/dev/shm (POSIX):")
        if let size = limits.devShmSize, let free = limits.devShmFree {
            print("  size \(humanSize(size)), free \(humanSize(free))")
        } else {
            print("  not mounted")
        }
        print("Huge pages:")
        print("  reserved \(limits.hugePagesTotal.map(String.init) ?? "?"), free \(limits.hugePagesFree.map(String.init) ?? "?"), size \(limits.hugePageSize.map(humanSize) ?? "?") (vm.nr_hugepages)")
        print("  transparent, for shared memory: \(limits.transparentHugePagesForShmem ?? "?")")
    }
}
