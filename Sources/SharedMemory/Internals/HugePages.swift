import CSharedMemory
import Glibc

/// Huge-page flags, checks and diagnoses shared by the backends that offer huge pages.
extension HugePages {
    /// The flag bits that ask for this page size: `log2(size) << 26` (MAP_HUGE_SHIFT, SHM_HUGE_SHIFT, MFD_HUGE_SHIFT).
    var sizeBits: Int32 {
        guard case .explicit(let size) = self else { return 0 }
        return Int32(size.bytes.trailingZeroBitCount) << CSM_HUGE_SHIFT
    }

    /// Checked before any system call: the backend can have huge pages of this kind, and the size fits them.
    func check(size: Int, _ region: RegionName) throws(SharedMemoryError) {
        switch self {
        case .explicit(let page):
            guard region.backend.capabilities.contains(.hugePages) else {
                throw SharedMemoryError(.unsupported, "\(region.backend) regions cannot have explicit huge pages: /dev/shm and ordinary file systems use small pages; use a sysv, anonymous or memfd region, or a file: region on a hugetlbfs mount", region: region)
            }
            guard size % page.bytes == 0 else {
                throw SharedMemoryError(.invalidArgument, "with \(humanSize(page.bytes)) huge pages the size must be a multiple of \(page.bytes) bytes, not \(size)", region: region)
            }
        case .transparent:
            guard region.backend != .file else {
                throw SharedMemoryError(.unsupported, "file regions cannot have transparent huge pages: the kernel gives them only to shared memory (tmpfs) and anonymous memory", region: region)
            }
            let policy = Self.transparentPolicy
            guard let policy, policy != "never", policy != "deny" else {
                throw SharedMemoryError(.unsupported, "transparent huge pages for shared memory are switched off (/sys/kernel/mm/transparent_hugepage/shmem_enabled is `\(policy ?? "missing")`), so the advice would do nothing; write `advise` there, or use explicit huge pages", region: region)
            }
        }
    }

    /// The policy in /sys/kernel/mm/transparent_hugepage/shmem_enabled: the word in brackets.
    static var transparentPolicy: String? {
        guard let bytes = try? Syscalls.readFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        return text.split(separator: " ").first { $0.hasPrefix("[") }.map { String($0.dropFirst().prefix { $0 != "]" }) }
    }

    /// A failure to get huge pages, explained: how many are reserved and free, and which setting to raise.
    func explain(_ error: SharedMemoryError) -> SharedMemoryError {
        guard case .explicit(let page) = self, error.errno == .noMemory || error.errno == .noSpace else { return error }
        let directory = "/sys/kernel/mm/hugepages/hugepages-\(page.bytes / 1024)kB/"
        func read(_ file: String) -> Int? {
            (try? Syscalls.readFile(directory + file)).flatMap { Int(String(decoding: $0.filter { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self)) }
        }
        let total = read("nr_hugepages"), free = read("free_hugepages")
        var reason = "there are not enough free \(humanSize(page.bytes)) huge pages"
        if let total, let free { reason += " (\(free) free of \(total) reserved)" }
        reason += "; reserve more with `sysctl vm.nr_hugepages=N`"
        if page != .size2MiB || total == nil { reason += " or by writing N to \(directory)nr_hugepages" }
        return SharedMemoryError(.noSpace, reason, region: error.region, systemCall: error.systemCall, errno: error.errno)
    }
}
