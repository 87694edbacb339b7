import Foundation
import SystemPackage
import Testing
@testable import SharedMemory

/// What /proc/self/smaps says of the mapping that starts at `base`: resident kilobytes (huge pages are counted
/// apart, as Shared_Hugetlb and Private_Hugetlb) and the page size.
func smaps(of base: UnsafeRawPointer) throws -> (residentKiB: Int, hugetlbKiB: Int, pageSizeKiB: Int) {
    let start = String(UInt(bitPattern: base), radix: 16)
    let text = try procSmaps()
    var inside = false
    var rss: Int?, pageSize: Int?, hugetlb = 0
    for line in text.split(separator: "\n") {
        if let dash = line.firstIndex(of: "-"), line[..<dash].allSatisfy(\.isHexDigit) {
            if inside { break }
            inside = line[..<dash].drop { $0 == "0" } == start.drop { $0 == "0" }
        } else if inside, let value = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) }) {
            if line.hasPrefix("Rss:") { rss = value }
            if line.hasPrefix("KernelPageSize:") { pageSize = value }
            if line.hasPrefix("Shared_Hugetlb:") || line.hasPrefix("Private_Hugetlb:") { hugetlb += value }
        }
    }
    return (try #require(rss), hugetlb, try #require(pageSize))
}

/// /proc/self/smaps, read to its end (its size says 0, so read it as a stream).
func procSmaps() throws -> String {
    let handle = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps"))
    defer { try? handle.close() }
    return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}

/// How many of the region's pages `mincore` reports resident.
func residentPages(_ region: borrowing some SharedRegion & ~Copyable) -> Int {
    region.withUnsafeBytes { bytes in
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (bytes.count + page - 1) / page)
        guard mincore(UnsafeMutableRawPointer(mutating: bytes.baseAddress!), bytes.count, &vector) == 0 else { return -1 }
        return vector.filter { $0 & 1 != 0 }.count
    }
}

@Suite("Prefaulting")
struct PrefaultTests {
    @Test("prefault maps every page at create and at open; without it nothing is mapped until touched", arguments: Backend.allCases)
    func prefault(backend: Backend) throws {
        let size = 64 * 4096
        try Names.with(backend) { name in
            // reserve: false, so that no page exists before it is touched (posix_fallocate would make them all).
            let lazy = try SharedMemory.create(name, size: size, options: .init(reserve: false))
            #expect(try smaps(of: lazy.withUnsafeBytes { $0.baseAddress! }).residentKiB == 0)
        }
        try Names.with(backend) { name in
            let eager = try SharedMemory.create(name, size: size, options: .init(reserve: false, prefault: true))
            #expect(try smaps(of: eager.withUnsafeBytes { $0.baseAddress! }).residentKiB == size / 1024)
            #expect(residentPages(eager) == size / 4096)
            if backend.capabilities.contains(.named) {
                let opened = try SharedMemory.open(name, options: .init(access: .readOnly, prefault: true))
                #expect(try smaps(of: opened.withUnsafeBytes { $0.baseAddress! }).residentKiB == size / 1024)
            }
            if backend.capabilities.contains(.descriptorPassing) {
                let (a, b) = try socketPair()
                defer { try? a.close(); try? b.close() }
                try eager.send(over: a)
                let received = try SharedMemory.receive(from: b, options: .init(access: .readOnly, prefault: true))
                #expect(try smaps(of: received.withUnsafeBytes { $0.baseAddress! }).residentKiB == size / 1024)
            }
        }
    }
}

/// Explicit and transparent huge pages. The machine's huge-page settings are global, so these run one at a
/// time, as root, and put every setting back.
@Suite("Huge pages", .serialized, .enabled(if: geteuid() == 0, "changing vm.nr_hugepages needs root"))
struct HugePagesTests {
    static let hugeBackends = Backend.allCases.filter { $0.capabilities.contains(.hugePages) }
    static let nrHugePages = "/proc/sys/vm/nr_hugepages"
    static let shmemTHP = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

    static func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func write(_ value: String, to path: String) throws {
        try value.write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// Runs `body` with `count` 2 MiB pages reserved, then puts the old number back.
    static func withReservedPages<R>(_ count: Int, _ body: () throws -> R) throws -> R {
        let old = try read(nrHugePages)
        defer { try? write(old, to: nrHugePages) }
        try write("\(count)", to: nrHugePages)
        return try body()
    }

    @Test("with no huge pages reserved the error says so and names the sysctl", arguments: hugeBackends)
    func noneReserved(backend: Backend) throws {
        try Self.withReservedPages(0) {
            try Names.with(backend) { name in
                let error = expectError(.noSpace) { try SharedMemory.create(name, size: 2 << 20, options: .init(hugePages: .explicit(.size2MiB))) }
                #expect(error?.reason.contains("0 free of 0 reserved") == true, "\(String(describing: error))")
                #expect(error?.reason.contains("vm.nr_hugepages") == true)
                if backend.capabilities.contains(.named) { expectError(.notFound) { try SharedMemory.info(name) } }
            }
            let gigantic = expectError(.noSpace) { try SharedMemory.create(.anonymous, size: 1 << 30, options: .init(hugePages: .explicit(.size1GiB))) }
            #expect(gigantic?.reason.contains("hugepages-1048576kB/nr_hugepages") == true)
        }
    }

    @Test("with pages reserved the mapping really is made of 2 MiB pages", arguments: hugeBackends)
    func reserved(backend: Backend) throws {
        try Self.withReservedPages(8) {
            guard try Self.read(Self.nrHugePages) == "8" else {
                Issue.record("the kernel could not reserve 8 huge pages (memory too fragmented?)")
                return
            }
            try Names.with(backend) { name in
                let region = try SharedMemory.create(name, size: 4 << 20, options: .init(hugePages: .explicit(.size2MiB), prefault: true))
                try region.set(bytes: [1, 2, 3], at: (4 << 20) - 3)
                let mapping = try smaps(of: region.withUnsafeBytes { $0.baseAddress! })
                #expect(mapping.pageSizeKiB == 2048)
                #expect(mapping.hugetlbKiB == 4096)
                #expect(try region.get(count: 3, at: (4 << 20) - 3) == [1, 2, 3])
            }
        }
    }

    @Test("a file region on a hugetlbfs mount is made of huge pages without any option")
    func fileOnHugetlbfs() throws {
        let mountPoint = "/tmp/smtest-hugetlbfs-\(getpid())"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        try Self.withReservedPages(8) {
            // In a mount namespace of its own, so the mount goes with it.
            let script = """
                mount -t hugetlbfs none \(mountPoint) || exit 9
                '\(Probe.path)' create file:\(mountPoint)/region 4194304
                '\(Probe.path)' write file:\(mountPoint)/region 0 abcd
                '\(Probe.path)' read file:\(mountPoint)/region 0 2
                grep HugePages_Free /proc/meminfo | tr -s ' '
                '\(Probe.path)' create file:\(mountPoint)/odd 100
                """
            let lines = try run("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script]).output.split(separator: "\n")
            try #require(lines.count == 5, "\(lines)")
            #expect(lines[0] == "ok 4194304")
            #expect(lines[2] == "ok abcd")
            #expect(lines[3] == "HugePages_Free: 6")  // the region's two 2 MiB pages came from the pool
            #expect(lines[4].hasPrefix("error invalidArgument"))  // not a whole number of huge pages
        }
    }

    @Test("sizes must be whole huge pages, and posix and file regions cannot have explicit ones")
    func refusals() throws {
        for backend in Self.hugeBackends {
            try Names.with(backend) { name in
                let error = expectError(.invalidArgument) { try SharedMemory.create(name, size: 3 << 20, options: .init(hugePages: .explicit(.size2MiB))) }
                #expect(error?.reason.contains("multiple of 2097152") == true)
            }
        }
        for backend in [Backend.posix, .file] {
            try Names.with(backend) { name in
                let error = expectError(.unsupported) { try SharedMemory.create(name, size: 2 << 20, options: .init(hugePages: .explicit(.size2MiB))) }
                #expect(error?.reason.contains("hugetlbfs") == true)
                expectError(.notFound) { try SharedMemory.info(name) }
            }
        }
        _ = try Names.with(.file) { name in
            expectError(.unsupported) { try SharedMemory.create(name, size: 2 << 20, options: .init(hugePages: .transparent)) }
        }
    }

    @Test("transparent huge pages: refused while the kernel has them off for shared memory, advised when on")
    func transparent() throws {
        let old = try Self.read(Self.shmemTHP)
        let chosen = old.split(separator: " ").first { $0.hasPrefix("[") }!.dropFirst().dropLast()
        defer { try? Self.write(String(chosen), to: Self.shmemTHP) }
        try Self.write("never", to: Self.shmemTHP)
        let off = expectError(.unsupported) { try SharedMemory.create(.anonymous, size: 4 << 20, options: .init(hugePages: .transparent)) }
        #expect(off?.reason.contains("shmem_enabled") == true)
        try Self.write("advise", to: Self.shmemTHP)
        for backend in [Backend.systemV, .posix, .anonymous, .memfd] {
            try Names.with(backend) { name in
                let region = try SharedMemory.create(name, size: 4 << 20, options: .init(hugePages: .transparent))
                let base = region.withUnsafeBytes { UInt(bitPattern: $0.baseAddress!) }
                let smaps = try procSmaps()
                let block = try #require(smaps.components(separatedBy: "\n" + String(base, radix: 16) + "-").dropFirst().first)
                let flags = try #require(block.split(separator: "\n").first { $0.hasPrefix("VmFlags:") })
                #expect(flags.contains(" hg"), "MADV_HUGEPAGE not applied: \(flags)")
            }
        }
    }
}
