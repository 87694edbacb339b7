import SystemPackage

/// The one error every SharedMemory call throws.
///
/// It says what failed (``code``), the kernel's answer where there was one (``errno``), which system call gave
/// it (``systemCall``), which region it was about (``region``), and a sentence a person can act on (``reason``).
/// Its ``description`` reads like a good man page:
///
/// ```
/// posix:/orders: shm_open failed (Permission denied): its owner and mode do not let this user do that; check them with `ls -l /dev/shm/orders`
/// ```
public struct SharedMemoryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. Switch on this, not on ``errno``: the same code comes from every backend.
    ///
    /// A struct with a static member per code rather than an enum, so that a new code in a later version does not
    /// break a `switch` that handles the ones it knows (`case .notFound:` reads as it would on an enum; add a
    /// `default:`), as swift-subprocess does with `SubprocessError.Code`.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        /// The code's name, as the static member spells it (`"notFound"`).
        public let rawValue: String
        /// A code from its name; the library's codes are the static members.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The name.
        public var description: String { rawValue }

        /// An argument is out of range: a size of 0 or less, an offset past the end, an option the call cannot take.
        public static let invalidArgument = Code(rawValue: "invalidArgument")
        /// A region name that no backend accepts, refused before any system call.
        public static let invalidName = Code(rawValue: "invalidName")
        /// Exclusive creation found a region with that name; it was left untouched.
        public static let alreadyExists = Code(rawValue: "alreadyExists")
        /// No region has that name (never created, or removed).
        public static let notFound = Code(rawValue: "notFound")
        /// The region's owner and mode do not allow this user the operation.
        public static let permissionDenied = Code(rawValue: "permissionDenied")
        /// The backend cannot do this at all (for example resizing a System V segment).
        public static let unsupported = Code(rawValue: "unsupported")
        /// A write through an attachment that was opened read-only.
        public static let readOnly = Code(rawValue: "readOnly")
        /// An offset and count that reach outside the region.
        public static let outOfBounds = Code(rawValue: "outOfBounds")
        /// Not enough memory or file-system space (a full /dev/shm, an exhausted tmpfs, no address space).
        public static let noSpace = Code(rawValue: "noSpace")
        /// A kernel or process limit is reached (SHMMAX, SHMMNI, SHMALL, open files).
        public static let limitExceeded = Code(rawValue: "limitExceeded")
        /// The address or object is in use (a fixed attach address that is already mapped; a write seal while a
        /// writable mapping exists).
        public static let busy = Code(rawValue: "busy")
        /// A seal forbids the change (a memfd sealed against shrinking, growing, writing or more seals).
        public static let sealed = Code(rawValue: "sealed")
        /// The object was removed, or replaced by another with the same name, while it was in use.
        public static let removed = Code(rawValue: "removed")
        /// The object under the name is not one we can use: not a regular file, a symbolic link, a device.
        public static let foreign = Code(rawValue: "foreign")
        /// The object exists but its creator has not given it a size yet; try again shortly.
        public static let notReady = Code(rawValue: "notReady")
        /// A wait (a timed lock, a ring's send or receive) ran out of time.
        public static let timedOut = Code(rawValue: "timedOut")
        /// A robust mutex whose owner died was unlocked without being marked consistent: it can never be locked again.
        public static let notRecoverable = Code(rawValue: "notRecoverable")
        /// The process at the other end (a ring's sender or receiver) died.
        public static let peerDied = Code(rawValue: "peerDied")
        /// A structure holds another type or configuration than the one asked for: a named object in a
        /// ``SharedHeap`` of another type, or a ring or service that `openOrCreate` found with another configuration
        /// (the reason names each difference).
        public static let typeMismatch = Code(rawValue: "typeMismatch")
        /// The kernel gave an answer this library does not expect; ``SharedMemoryError/errno`` says which.
        public static let unexpected = Code(rawValue: "unexpected")

        /// Every code this version of the library throws.
        public static let all: [Code] = [
            .invalidArgument, .invalidName, .alreadyExists, .notFound, .permissionDenied, .unsupported, .readOnly, .outOfBounds, .noSpace, .limitExceeded, .busy, .sealed, .removed, .foreign, .notReady, .timedOut, .notRecoverable, .peerDied, .typeMismatch, .unexpected,
        ]
    }

    /// What kind of failure this is.
    public var code: Code
    /// The kernel's error number, where a system call failed.
    public var errno: Errno?
    /// The system call that failed (`shmget`, `shm_open`, `mmap`, ...), where one did.
    public var systemCall: String?
    /// The region the call was about, where there was one.
    public var region: RegionName?
    /// Why it failed and what to do about it, as a sentence.
    public var reason: String

    /// Creates an error. The library makes these; tests and wrappers may too.
    public init(_ code: Code, _ reason: String, region: RegionName? = nil, systemCall: String? = nil, errno: Errno? = nil) {
        self.code = code
        self.reason = reason
        self.region = region
        self.systemCall = systemCall
        self.errno = errno
    }

    /// `REGION: CALL failed (ERRNO): REASON`, leaving out what is not known.
    public var description: String {
        var text = ""
        if let region { text += "\(region): " }
        if let systemCall {
            text += "\(systemCall) failed"
            if let errno { text += " (\(errno.description))" }
            text += ": "
        }
        return text + reason
    }
}

extension SharedMemoryError {
    /// `count` bytes at `offset` that do not fit in `size`.
    @usableFromInline
    static func outOfBounds(offset: Int, count: Int, size: Int, region: RegionName) -> SharedMemoryError {
        SharedMemoryError(.outOfBounds, "\(count) bytes at offset \(offset) do not fit in a region of \(size) bytes", region: region)
    }

    /// Turns a failed system call into an error: the code and the advice follow from the errno and the call.
    /// Call sites that know more (which file system is full, which limit applies) replace ``reason`` afterwards.
    init(errno: Errno, call: String, region: RegionName?) {
        let (code, reason) = Self.classify(errno, call: call, region: region)
        self.init(code, reason, region: region, systemCall: call, errno: errno)
    }

    private static func classify(_ errno: Errno, call: String, region: RegionName?) -> (Code, String) {
        let look: String
        switch region?.location {
        case .systemV?, .systemVID?: look = " with `ipcs -m`"
        case .posix(let object)?: look = " with `ls -l /dev/shm\(object)`"
        case .file(let path)?: look = " with `ls -l \(path)`"
        default: look = ""
        }
        switch errno {
        case .fileExists:
            return (.alreadyExists, "a region with this name already exists; open it instead, or remove it first")
        case .noSuchFileOrDirectory:
            return (.notFound, "no region has this name: it was never created, or it was removed (by its owner, `shm rm`, `shm gc`, or systemd's RemoveIPC=yes when its user logged out); create it first")
        case .permissionDenied, .notPermitted:
            return (.permissionDenied, "its owner and mode do not let this user do that; check them\(look)")
        case .noSpace where call == "shmget":
            return (.limitExceeded, "the system-wide System V limit on segments (kernel.shmmni) or on total shared memory (kernel.shmall) is reached; remove unused segments or raise the limit with sysctl")
        case .noSpace:
            return (.noSpace, "the file system holding the region is full; free space or use a smaller size")
        case .noMemory:
            return (.noSpace, "there is not enough memory or address space for a region of this size")
        case .tooManyOpenFiles:
            return (.limitExceeded, "this process has too many open files; close some or raise `ulimit -n`")
        case .tooManyOpenFilesInSystem:
            return (.limitExceeded, "the system has too many open files (fs.file-max)")
        case .fileNameTooLong:
            return (.invalidName, "the name is too long: at most 255 bytes")
        case .fileTooLarge:
            return (.limitExceeded, "the size is larger than the file system allows")
        case .resourceBusy:
            return (.busy, "the object or address is in use")
        case .identifierRemoved:
            return (.removed, "the segment was removed while this call ran")
        case .readOnlyFileSystem:
            return (.permissionDenied, "the file system is mounted read-only")
        case .tooManySymbolicLinkLevels:
            return (.foreign, "the name is a symbolic link, and SharedMemory never follows one (someone may have planted it); remove it if it is not yours")
        case .isDirectory, .notDirectory:
            return (.foreign, "the path leads through or to something that is not a regular file; give the path of a file")
        case .invalidArgument:
            return (.invalidArgument, "the kernel rejected an argument of this call")
        default:
            return (.unexpected, "the kernel gave an error SharedMemory does not expect here")
        }
    }
}
