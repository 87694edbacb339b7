import CSharedMemory
import Glibc

/// `mmap` for the backends that map a descriptor (or anonymous memory), with the attach-address rules (a hint
/// may move, a fixed address that is taken is `busy` and never replaces what is there), and what every backend
/// does after mapping: transparent-huge-page advice and prefaulting.
enum Mapping {
    static func map(
        descriptor: Int32, size: Int, access: Access, address: AttachAddress?, flags: Int32, _ region: RegionName
    ) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let protection = access == .readWrite ? PROT_READ | PROT_WRITE : PROT_READ
        var flags = MAP_SHARED | flags
        if case .fixed = address { flags |= MAP_FIXED_NOREPLACE }
        let wanted = address.flatMap { UnsafeMutableRawPointer(bitPattern: $0.address) }
        let mapped: UnsafeMutableRawPointer
        do {
            mapped = try Syscalls.mmap(wanted, size, protection, flags, descriptor, region)
        } catch where error.errno == .fileExists {
            throw busy(address, region)
        }
        if case .fixed = address, mapped != wanted {
            // A kernel older than 4.17 treats MAP_FIXED_NOREPLACE as a hint.
            try? Syscalls.munmap(mapped, size, region)
            throw busy(address, region)
        }
        return mapped
    }

    static func busy(_ address: AttachAddress?, _ region: RegionName) -> SharedMemoryError {
        SharedMemoryError(
            .busy,
            "the fixed attach address 0x\(String(address?.address ?? 0, radix: 16)) is already in use in this process; choose another, or pass it as .hint",
            region: region)
    }

    /// `mmap` (see ``map(descriptor:size:access:address:flags:_:)``), then ``prepare(_:size:access:hugePages:prefault:_:undo:)``;
    /// a failure unmaps what was mapped.
    static func mapPrepared(
        descriptor: Int32, size: Int, access: Access, address: AttachAddress?, flags: Int32, hugePages: HugePages?,
        prefault: Bool, _ region: RegionName
    ) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let base = try map(descriptor: descriptor, size: size, access: access, address: address, flags: flags, region)
        try prepare(base, size: size, access: access, hugePages: hugePages, prefault: prefault, region) {
            try? Syscalls.munmap(base, size, region)
        }
        return base
    }

    /// After a mapping is made: `MADV_HUGEPAGE` for transparent huge pages, and `MADV_POPULATE_WRITE` (or
    /// `_READ` for a read-only mapping) to prefault every page. On failure, `undo` takes the mapping away
    /// (`munmap`, `shmdt`) before the error is thrown.
    static func prepare(
        _ base: UnsafeMutableRawPointer, size: Int, access: Access, hugePages: HugePages?, prefault: Bool,
        _ region: RegionName, undo: () -> Void
    ) throws(SharedMemoryError) {
        do throws(SharedMemoryError) {
            if hugePages == .transparent { try Syscalls.madvise(base, size, MADV_HUGEPAGE, region) }
            if prefault {
                do {
                    try Syscalls.madvise(base, size, access == .readWrite ? CSM_MADV_POPULATE_WRITE : CSM_MADV_POPULATE_READ, region)
                } catch where error.errno == .noMemory || error.errno == .badAddress {
                    throw SharedMemoryError(.noSpace, "there is not enough memory to prefault all \(humanSize(size)); create it without prefault, or free memory", region: region, systemCall: error.systemCall, errno: error.errno)
                }
            }
        } catch {
            undo()
            throw error
        }
    }
}
