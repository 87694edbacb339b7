import CSharedMemory
import Glibc
import SystemPackage

/// A memfd region (`memfd:LABEL`): a `memfd_create` object, shared memory with no name in any namespace, so
/// nothing can squat on it and nothing is left after a crash. Other processes get it by `fork` or by receiving its
/// descriptor over a Unix socket (``SharedRegion/send(over:access:)``, ``SharedMemory/receive(from:options:)``).
/// Resizable, and sealable (``Seals``) so that no holder can shrink, grow or write it.
public struct MemfdRegion: FileBackedRegion, ~Copyable {
    public private(set) var mapping: RegionMapping
    public private(set) var _bytes: _MappedBytes
    let object: MappedObject

    init(_ object: consuming MappedObject, _ mapping: RegionMapping) {
        self.object = object
        self.mapping = mapping
        _bytes = _MappedBytes(mapping)
    }

    /// Creates a memfd region of exactly `size` bytes (`memfd_create` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`,
    /// and `MFD_NOEXEC_SEAL` where the kernel has it), mode 0600 unless `options` say otherwise.
    ///
    /// The corresponding C calls are `memfd_create`, `fchmod`, `ftruncate`, `posix_fallocate` and `mmap`.
    public static func create(_ name: RegionName, size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> MemfdRegion {
        try ObjectName.check(name, for: .memfd)
        return try MappedObject.create(name, size: size, options: options, MemfdRegion.init)
    }

    /// This attachment as an ``AnyRegion``, the type the factory returns; nothing is detached or mapped again.
    public consuming func erased() -> AnyRegion { .memfd(self) }

    public mutating func resize(to newSize: Int) throws(SharedMemoryError) {
        defer { _bytes = _MappedBytes(mapping) }
        do {
            try object.resize(to: newSize, &mapping)
        } catch where error.errno == .notPermitted {
            throw sealedError(error, which: newSize < size ? "shrinking" : "growing")
        }
    }

    /// Grows the memfd without remapping (a heap's growth; see ``MappedObject/extend(to:_:)``).
    func extend(to newSize: Int) throws(SharedMemoryError) {
        do {
            try object.extend(to: newSize, mapping)
        } catch where error.errno == .notPermitted {
            throw sealedError(error, which: "growing")
        }
    }

    private func sealedError(_ error: SharedMemoryError, which: String) -> SharedMemoryError {
        let seals = (try? self.seals) ?? []
        return SharedMemoryError(.sealed, "it is sealed against \(which) (seals: \(seals)); a sealed memfd keeps its size for good", region: name, systemCall: error.systemCall, errno: error.errno)
    }

    @discardableResult
    public mutating func remap() throws(SharedMemoryError) -> Int {
        defer { _bytes = _MappedBytes(mapping) }
        return try object.remap(&mapping)
    }

    public func remove() throws(SharedMemoryError) {
        throw SharedMemoryError(.unsupported, "memfd regions cannot be removed: a memfd has no name; it is freed when the last descriptor and mapping of it are gone", region: name)
    }

    public var descriptor: FileDescriptor { FileDescriptor(rawValue: object.descriptor) }

    /// Adds seals. Adding ``Seals/write`` while any writable mapping exists (this attachment's included) is
    /// ``SharedMemoryError/Code/busy``; use ``Seals/futureWrite`` to keep writing here while nobody else can.
    /// Any change after ``Seals/seal`` is ``SharedMemoryError/Code/sealed``.
    ///
    /// The corresponding C call is `fcntl(fd, F_ADD_SEALS, seals)`.
    public func addSeals(_ seals: Seals) throws(SharedMemoryError) {
        do {
            try Syscalls.addSeals(object.descriptor, seals.rawValue, name)
        } catch where error.errno == .notPermitted {
            throw SharedMemoryError(.sealed, "it is sealed against further seals (seals: \((try? self.seals) ?? []))", region: name, systemCall: error.systemCall, errno: error.errno)
        } catch where error.errno == .resourceBusy {
            throw SharedMemoryError(.busy, "a writable mapping of it exists (this attachment's, or another holder's), so it cannot be sealed against writing; use .futureWrite to keep this mapping writable while no new one can be", region: name, systemCall: error.systemCall, errno: error.errno)
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
