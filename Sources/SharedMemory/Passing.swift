import CSharedMemory
import Glibc
import SystemPackage

// Passing regions between processes: a descriptor over a Unix domain socket (SCM_RIGHTS). The receiver gets
// the same memory, mapped, as a region of the right backend; it can demand what it needs (size, seals, backend)
// before anything is mapped.

/// What a receiver demands of a region before it maps it. A descriptor that fails any demand is closed and
/// reported as ``SharedMemoryError/Code/foreign``.
public struct ReceiveOptions: Sendable, Hashable {
    /// Map read-write (default) or read-only. Read-write fails if the sender shared it read-only
    /// (``SharedMemoryError/Code/readOnly``) or it is sealed against writing (``SharedMemoryError/Code/sealed``).
    public var access: Access
    /// Refuse a region smaller than this. Default 1: an empty region is refused.
    public var minimumSize: Int
    /// Refuse a region larger than this, before anything is mapped, so a peer cannot make this process map,
    /// prefault or reserve more than it meant to (a sparse file of a terabyte costs the sender nothing).
    /// Default: this machine's physical memory.
    public var maximumSize: Int
    /// Refuse a region that does not carry all of these seals (for example ``Seals/shrink``, so that the sender
    /// can never make this process SIGBUS by shrinking it).
    public var requiredSeals: Seals
    /// Refuse any other backend. Default: posix, file and memfd.
    public var backends: Set<Backend>
    /// Map every page now.
    public var prefault: Bool

    /// Demands for a received region; the defaults accept any non-empty posix, file or memfd region no larger
    /// than physical memory, read-write.
    public init(access: Access = .readWrite, minimumSize: Int = 1, maximumSize: Int = ReceiveOptions.physicalMemory,
                requiredSeals: Seals = [], backends: Set<Backend> = [.posix, .file, .memfd], prefault: Bool = false) {
        self.access = access
        self.minimumSize = minimumSize
        self.maximumSize = maximumSize
        self.requiredSeals = requiredSeals
        self.backends = backends
        self.prefault = prefault
    }
}

extension ReceiveOptions {
    /// This machine's physical memory in bytes (`sysconf(_SC_PHYS_PAGES)` pages): the default ``maximumSize``.
    public static var physicalMemory: Int { Int(sysconf(Int32(_SC_PHYS_PAGES))) * Syscalls.pageSize }
}

/// The payload that travels with the descriptor: a magic number and a version, so a receiver knows the message
/// is a region and not something else sent on the same socket.
private let passingMagic: [UInt8] = Array("SMR\u{1}".utf8)

extension SharedRegion where Self: ~Copyable {
    /// Sends this region to the process at the other end of a connected Unix domain socket. With `.readOnly` the
    /// peer gets a new read-only descriptor of the same object (`open("/proc/self/fd/N", O_RDONLY)`), so the
    /// kernel refuses it any writable mapping; this attachment is unchanged.
    ///
    /// The corresponding C call is `sendmsg` with an `SCM_RIGHTS` control message.
    public func send(over socket: FileDescriptor, access: Access = .readWrite) throws(SharedMemoryError) {
        guard let descriptor = fileDescriptor?.rawValue else {
            throw SharedMemoryError(.unsupported, "\(backend) regions have no descriptor to send; share a posix, file or memfd region, or a sysv segment by its name", region: name)
        }
        guard access == .readOnly || self.access == .readWrite else {
            throw SharedMemoryError(.readOnly, "this attachment is read-only, so it can only be sent read-only", region: name)
        }
        if access == .readWrite {
            try Syscalls.sendDescriptor(socket.rawValue, descriptor, passingMagic, name)
            return
        }
        let readOnly = try Syscalls.open("/proc/self/fd/\(descriptor)", O_RDONLY | O_CLOEXEC, 0, name)
        defer { Syscalls.close(readOnly) }
        try Syscalls.sendDescriptor(socket.rawValue, readOnly, passingMagic, name)
    }
}

extension SharedMemory {
    /// Receives a region that another process sent with ``SharedRegion/send(over:access:)``, checks it against
    /// `options`, and maps it. The backend and name come from the descriptor itself (what the kernel says it is),
    /// never from the sender's word.
    ///
    /// The corresponding C call is `recvmsg` with an `SCM_RIGHTS` control message.
    public static func receive(from socket: FileDescriptor, options: ReceiveOptions = .init()) throws(SharedMemoryError) -> AnyRegion {
        let message = try Syscalls.receiveDescriptor(socket.rawValue, capacity: 64)
        let descriptor = message.descriptor
        guard descriptor >= 0 else {
            throw message.payload.isEmpty
                ? SharedMemoryError(.notFound, "no region arrived: the other end closed the socket")
                : SharedMemoryError(.foreign, "a message arrived without a descriptor; the peer did not send a region")
        }
        do throws(SharedMemoryError) {
            guard message.payload == passingMagic, !message.truncated else {
                throw SharedMemoryError(.foreign, "the message is not a SharedMemory region (wrong header, or more than one descriptor)")
            }
            let name = try identify(descriptor)
            let status = try Syscalls.fstat(descriptor, name)
            guard status.st_mode & S_IFMT == S_IFREG else {
                throw SharedMemoryError(.foreign, "the descriptor is \(MappedObject.describe(status)), not a regular file or memfd", region: name)
            }
            guard try Syscalls.statusFlags(descriptor, name) & CSM_O_PATH == 0 else {
                throw SharedMemoryError(.foreign, "the descriptor was opened with O_PATH: it names a file but cannot read or map it", region: name)
            }
            guard options.backends.contains(name.backend) else {
                throw SharedMemoryError(.foreign, "it is a \(name.backend) region, and only \(options.backends.map(\.rawValue).sorted().joined(separator: ", ")) were accepted", region: name)
            }
            let size = Int(status.st_size)
            guard size >= max(1, options.minimumSize) else {
                throw SharedMemoryError(.foreign, "it holds \(size) bytes, fewer than the \(max(1, options.minimumSize)) required", region: name)
            }
            guard size <= options.maximumSize else {
                throw SharedMemoryError(.foreign, "it holds \(size) bytes (\(humanSize(size))), more than the \(options.maximumSize) allowed (ReceiveOptions.maximumSize)", region: name)
            }
            let seals = try Seals(descriptor: descriptor, name)
            guard seals.isSuperset(of: options.requiredSeals) else {
                throw SharedMemoryError(.foreign, "it lacks required seals: it has \(seals), \(options.requiredSeals) were required", region: name)
            }
            if options.access == .readWrite {
                guard try Syscalls.statusFlags(descriptor, name) & O_ACCMODE == O_RDWR else {
                    throw SharedMemoryError(.readOnly, "the sender shared it read-only; receive it with access .readOnly", region: name)
                }
                guard seals.isDisjoint(with: [.write, .futureWrite]) else {
                    throw SharedMemoryError(.sealed, "it is sealed against writing (seals: \(seals)); receive it with access .readOnly", region: name)
                }
            }
            do {
                let object = ObjectName(name)!  // identify made a posix, file or memfd name
                return try MappedObject.adopt(descriptor, name: name, size: size, access: options.access, prefault: options.prefault) {
                    (mapped: consuming MappedObject, mapping: RegionMapping) -> AnyRegion in
                    switch object {
                    case .memfd: .memfd(MemfdRegion(mapped, mapping))
                    case .posix: .posix(POSIXRegion(mapped, mapping))
                    case .file: .file(FileRegion(mapped, mapping))
                    }
                }
            } catch where error.systemCall == "mmap" && [Errno.operationNotSupportedByDevice, .invalidArgument, .badFileDescriptor].contains(error.errno ?? .invalidArgument) {
                throw SharedMemoryError(.foreign, "the kernel will not map it shared: it is a file of a kind that cannot be shared memory (in /proc or /sys, or a device)", region: name, systemCall: error.systemCall, errno: error.errno)
            }
        } catch {
            Syscalls.close(descriptor)
            throw error
        }
    }

    /// What a descriptor is, from its /proc/self/fd link: `/memfd:LABEL (deleted)`, `/dev/shm/NAME`, or a path.
    private static func identify(_ descriptor: Int32) throws(SharedMemoryError) -> RegionName {
        var target = try Syscalls.readLink("/proc/self/fd/\(descriptor)")
        if target.hasSuffix(" (deleted)") { target.removeLast(" (deleted)".count) }
        do {
            if let label = target.dropPrefix("/memfd:") { return try .memfd(String(label)) }
            if let object = target.dropPrefix("/dev/shm/") { return try .posix("/" + object) }
            return try .file(FilePath(target))
        } catch {
            throw SharedMemoryError(.foreign, "the descriptor is `\(target)`, which is not a region SharedMemory can map")
        }
    }
}
