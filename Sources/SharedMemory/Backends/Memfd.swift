import CSharedMemory
import Glibc
import SystemPackage

/// A memfd region (`memfd:LABEL`).
public typealias MemfdRegion = Region<MemfdObject>

/// A `memfd_create` object: shared memory with no name in any namespace, so nothing can squat on it and nothing
/// is left after a crash. Other processes get it by `fork` or by receiving its descriptor over a Unix socket
/// (``SharedRegion/send(over:access:)``, ``SharedMemory/receive(from:options:)``). It can be sealed (``Seals``)
/// so that no holder can shrink, grow or write it. Sizing, mapping and resizing are ``FileBackedStorage``'s.
public final class MemfdObject: FileBackedStorage {
    override class func openDescriptor(_ name: RegionName, _ flags: Int32, _ mode: mode_t, hugePages: HugePages?) throws(SharedMemoryError) -> Int32 {
        guard case .memfd(let label) = name.location else { preconditionFailure("not a memfd name") }
        var flags = CSM_MFD_CLOEXEC | CSM_MFD_ALLOW_SEALING
        if case .explicit? = hugePages { flags |= CSM_MFD_HUGETLB | UInt32(bitPattern: hugePages!.sizeBits) }
        do {
            // MFD_NOEXEC_SEAL (Linux 6.3) also seals the mode against exec bits; older kernels say EINVAL.
            return try Syscalls.memfdCreate(label, flags | CSM_MFD_NOEXEC_SEAL, name)
        } catch where error.errno == .invalidArgument {
            return try Syscalls.memfdCreate(label, flags, name)
        }
    }

    override class func unlinkName(_ name: RegionName) throws(SharedMemoryError) {}  // there is no name

    override class func requireName(_ name: RegionName) throws(SharedMemoryError) {
        guard case .memfd = name.location else {
            throw SharedMemoryError(.invalidName, "`\(name)` is not a memfd: name; use SharedMemory.create to pick the backend from the name", region: name)
        }
    }

    override class func path(of name: RegionName) -> String {
        preconditionFailure("a memfd has no path")
    }

    override func remove() throws(SharedMemoryError) {
        throw unsupported("be removed", because: "a memfd has no name; it is freed when the last descriptor and mapping of it are gone")
    }

    override func resize(to newSize: Int) throws(SharedMemoryError) {
        do {
            try super.resize(to: newSize)
        } catch where error.errno == .notPermitted {
            let seals = (try? Seals(descriptor: descriptor, name)) ?? []
            let which = newSize < size ? "shrinking" : "growing"
            throw SharedMemoryError(.sealed, "it is sealed against \(which) (seals: \(seals)); a sealed memfd keeps its size for good", region: name, systemCall: error.systemCall, errno: error.errno)
        }
    }
}

/// Seals on a memfd (`F_ADD_SEALS`): once added, a seal binds every holder of the object, for good.
public struct Seals: OptionSet, Sendable, Hashable, CustomStringConvertible {
    /// The `F_SEAL_*` bits.
    public let rawValue: Int32
    /// Seals from their `F_SEAL_*` bits.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// No more seals can be added (`F_SEAL_SEAL`).
    public static let seal = Seals(rawValue: CSM_F_SEAL_SEAL)
    /// The size can never shrink (`F_SEAL_SHRINK`): a reader can never SIGBUS on it.
    public static let shrink = Seals(rawValue: CSM_F_SEAL_SHRINK)
    /// The size can never grow (`F_SEAL_GROW`).
    public static let grow = Seals(rawValue: CSM_F_SEAL_GROW)
    /// Nobody can write, through any mapping or `write` (`F_SEAL_WRITE`). It cannot be added while a writable
    /// mapping exists (``SharedMemoryError/Code/busy``).
    public static let write = Seals(rawValue: CSM_F_SEAL_WRITE)
    /// No new writable mapping and no `write` (`F_SEAL_FUTURE_WRITE`); mappings that were writable before stay
    /// writable. The way for a creator to keep writing while every peer can only read.
    public static let futureWrite = Seals(rawValue: CSM_F_SEAL_FUTURE_WRITE)
    /// The exec bits of the mode can never be set (`F_SEAL_EXEC`, which `MFD_NOEXEC_SEAL` adds on Linux 6.3+).
    public static let exec = Seals(rawValue: CSM_F_SEAL_EXEC)

    /// The seals by name: `[shrink, grow, seal]`.
    public var description: String {
        let names: [(Seals, String)] = [(.seal, "seal"), (.shrink, "shrink"), (.grow, "grow"), (.write, "write"), (.futureWrite, "futureWrite"), (.exec, "exec")]
        let present = names.filter { contains($0.0) }.map(\.1)
        return "[" + present.joined(separator: ", ") + "]"
    }

    /// The seals on a descriptor. Files outside tmpfs cannot be sealed at all: they have none.
    init(descriptor: Int32, _ name: RegionName) throws(SharedMemoryError) {
        do {
            self.init(rawValue: try Syscalls.seals(descriptor, name))
        } catch where error.errno == .invalidArgument {
            self = []
        }
    }
}

extension Region where Storage == MemfdObject {
    /// Creates a memfd region of exactly `size` bytes (`memfd_create` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`,
    /// and `MFD_NOEXEC_SEAL` where the kernel has it), mode 0600 unless `options` say otherwise.
    ///
    /// The corresponding C calls are `memfd_create`, `fchmod`, `ftruncate`, `posix_fallocate` and `mmap`.
    public static func create(_ name: RegionName, size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> Self {
        Region(try MemfdObject.create(name, size: size, options: options))
    }

    /// Adds seals. Adding ``Seals/write`` while any writable mapping exists (this attachment's included) is
    /// ``SharedMemoryError/Code/busy``; use ``Seals/futureWrite`` to keep writing here while nobody else can.
    /// Any change after ``Seals/seal`` is ``SharedMemoryError/Code/sealed``.
    ///
    /// The corresponding C call is `fcntl(fd, F_ADD_SEALS, seals)`.
    public func addSeals(_ seals: Seals) throws(SharedMemoryError) { try storage.addSeals(seals) }
}

extension MemfdObject {
    func addSeals(_ seals: Seals) throws(SharedMemoryError) {
        do {
            try Syscalls.addSeals(descriptor, seals.rawValue, name)
        } catch where error.errno == .notPermitted {
            throw SharedMemoryError(.sealed, "it is sealed against further seals (seals: \((try? Seals(descriptor: descriptor, name)) ?? []))", region: name, systemCall: error.systemCall, errno: error.errno)
        } catch where error.errno == .resourceBusy {
            throw SharedMemoryError(.busy, "a writable mapping of it exists (this attachment's, or another holder's), so it cannot be sealed against writing; use .futureWrite to keep this mapping writable while no new one can be", region: name, systemCall: error.systemCall, errno: error.errno)
        }
    }
}

extension Region where Storage == RegionStorage {
    /// The seals on the object, as a ``MemfdRegion``'s `seals` (or a posix or file region's) says; sysv and
    /// anonymous regions have no descriptor to seal (``SharedMemoryError/Code/unsupported``).
    ///
    /// The corresponding C call is `fcntl(fd, F_GET_SEALS)`.
    public var seals: Seals {
        get throws(SharedMemoryError) {
            guard let file = storage as? FileBackedStorage else {
                throw storage.unsupported("have seals", because: "they have no file descriptor; only memfd regions can be sealed")
            }
            return try Seals(descriptor: file.descriptor, name)
        }
    }

    /// Adds seals to a memfd region, as a ``MemfdRegion``'s `addSeals` says; any other backend is
    /// ``SharedMemoryError/Code/unsupported``.
    ///
    /// The corresponding C call is `fcntl(fd, F_ADD_SEALS, seals)`.
    public func addSeals(_ seals: Seals) throws(SharedMemoryError) {
        guard let memfd = storage as? MemfdObject else {
            throw storage.unsupported("be sealed", because: "only memfd regions can (memfd_create with MFD_ALLOW_SEALING)")
        }
        try memfd.addSeals(seals)
    }
}

extension Region where Storage: FileBackedStorage {
    /// The seals on the object. Only memfd regions can have any; a POSIX object reports ``Seals/seal`` (it can
    /// never be sealed), a file on another file system none.
    ///
    /// The corresponding C call is `fcntl(fd, F_GET_SEALS)`.
    public var seals: Seals {
        get throws(SharedMemoryError) { try Seals(descriptor: storage.descriptor, name) }
    }
}
