import Glibc
import SystemPackage

/// Where a region lives: one value that says which mechanism and which name, parsed from and printed to a string.
///
/// | String | Meaning |
/// |---|---|
/// | `sysv:0x5eed`, `sysv:24301` | a System V segment by key (hex or decimal, not 0) |
/// | `sysv:private` | a new System V segment with `IPC_PRIVATE` (create only; it is then known as `sysv-id:ID`) |
/// | `sysv-id:32768` | an existing System V segment by its id |
/// | `posix:/orders` | a POSIX shared-memory object (`shm_open`, lives in /dev/shm) |
/// | `file:/var/lib/app/orders` | a file mapped with `mmap(MAP_SHARED)` |
/// | `anonymous` | anonymous shared memory, shared only with children created by `fork` |
/// | `memfd:orders` | a `memfd_create` object: no name anywhere, shared by passing its descriptor |
///
/// Porting code from one mechanism to another is changing this string. Every name is checked when it is made,
/// before any system call: names the kernel would half-accept (`posix:/.`, a second slash, an embedded NUL) are
/// refused with ``SharedMemoryError/Code/invalidName`` and a sentence saying what is allowed.
public struct RegionName: Hashable, Sendable, CustomStringConvertible, Codable {
    /// The mechanism and the name within it.
    public enum Location: Hashable, Sendable {
        /// A System V segment looked up by key (`shmget(key, ...)`); the key is never 0.
        case systemV(key: Int32)
        /// A new System V segment with no key (`IPC_PRIVATE`).
        case systemVPrivate
        /// An existing System V segment by the id `shmget` returned.
        case systemVID(Int32)
        /// A POSIX shared-memory object; the name starts with its one slash.
        case posix(String)
        /// A file on any file system, mapped shared.
        case file(FilePath)
        /// Anonymous shared memory (`mmap(MAP_SHARED | MAP_ANONYMOUS)`).
        case anonymous
        /// A `memfd_create` object; the label only shows in /proc (`/memfd:LABEL`), it names nothing.
        case memfd(String)
    }

    /// The mechanism and the name within it.
    public let location: Location

    private init(checked location: Location) { self.location = location }

    /// The backend that serves this name.
    public var backend: Backend {
        switch location {
        case .systemV, .systemVPrivate, .systemVID: .systemV
        case .posix: .posix
        case .file: .file
        case .anonymous: .anonymous
        case .memfd: .memfd
        }
    }

    /// The string form: `sysv:0x00005eed`, `sysv:private`, `sysv-id:32768`, `posix:/name`, `file:/path`, `anonymous`.
    public var description: String {
        switch location {
        case .systemV(let key): "sysv:0x" + hex(UInt32(bitPattern: key), width: 8)
        case .systemVPrivate: "sysv:private"
        case .systemVID(let id): "sysv-id:\(id)"
        case .posix(let name): "posix:" + name
        case .file(let path): "file:" + path.string
        case .anonymous: "anonymous"
        case .memfd(let label): "memfd:" + label
        }
    }

    /// Appends ``description`` to `text` (without making it a `String` first, for the lifetime record).
    func describe(into text: inout ASCIIText) {
        switch location {
        case .posix(let name):
            text.append("posix:")
            text.append(contentsOf: name)
        case .file(let path):
            text.append("file:")
            text.append(contentsOf: path.string)
        default:
            text.append(contentsOf: description)
        }
    }

    // MARK: Making names

    /// A System V segment by key. The key may not be 0: that is `IPC_PRIVATE`, written ``systemVPrivate``.
    public static func systemV(key: Int32) throws(SharedMemoryError) -> RegionName {
        guard key != 0 else {
            throw invalid("sysv:0", "key 0 is IPC_PRIVATE; write `sysv:private` to create a segment without a key")
        }
        return RegionName(checked: .systemV(key: key))
    }

    /// A new System V segment without a key (`IPC_PRIVATE`). Only `create` takes it.
    public static let systemVPrivate = RegionName(checked: .systemVPrivate)

    /// An existing System V segment by id, as `shmget` returned it and `ipcs -m` lists it.
    public static func systemV(id: Int32) throws(SharedMemoryError) -> RegionName {
        guard id >= 0 else { throw invalid("sysv-id:\(id)", "a System V id is 0 or more") }
        return RegionName(checked: .systemVID(id))
    }

    /// A POSIX shared-memory object. `name` is one slash followed by 1 to 255 bytes with no other slash and no NUL,
    /// and neither `.` nor `..`.
    public static func posix(_ name: String) throws(SharedMemoryError) -> RegionName {
        func invalid(_ why: String) -> SharedMemoryError {
            Self.invalid("posix:" + name, why + ": a POSIX name is one slash followed by 1 to 255 bytes without another slash or NUL, and not `.` or `..` (for example posix:/orders)")
        }
        // One pass over the bytes (this runs on every create of a posix name).
        var name = name
        let (count, first, slashes, nuls, dots) = name.withUTF8 { bytes in
            var slashes = 0, nuls = 0, dots = 0
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "/"): slashes += 1
                case 0: nuls += 1
                case UInt8(ascii: "."): dots += 1
                default: break
                }
            }
            return (bytes.count, bytes.first, slashes, nuls, dots)
        }
        guard first == UInt8(ascii: "/") else { throw invalid("it must start with a slash") }
        guard count > 1 else { throw invalid("the name after the slash is empty") }
        guard slashes == 1 else { throw invalid("it has a second slash") }
        guard nuls == 0 else { throw invalid("it contains a NUL byte") }
        guard count <= 256 else { throw invalid("it is \(count - 1) bytes long") }
        guard dots != count - 1 || count > 3 else { throw invalid("`.` and `..` name directories") }
        return RegionName(checked: .posix(name))
    }

    /// A file mapped shared. The path is absolute, has no NUL, no component over 255 bytes, at most 4095 bytes
    /// in all, and does not end in a slash.
    public static func file(_ path: FilePath) throws(SharedMemoryError) -> RegionName {
        let text = path.string
        let rule = fileRule
        guard !text.isEmpty else { throw invalid("file:", "the path is empty: " + rule) }
        guard !text.utf8.contains(0) else { throw invalid("file:" + text, "it contains a NUL byte: " + rule) }
        guard path.isAbsolute else { throw invalid("file:" + text, "the path is relative: " + rule) }
        guard text.utf8.count <= 4095 else { throw invalid("file:" + text.prefix(32) + "...", "the path is longer than 4095 bytes: " + rule) }
        guard text.utf8.last != UInt8(ascii: "/"), path.lastComponent != nil else {
            throw invalid("file:" + text, "the path names a directory: " + rule)
        }
        for component in path.components where component.string.utf8.count > 255 {
            throw invalid("file:" + text, "a component is longer than 255 bytes: " + rule)
        }
        return RegionName(checked: .file(path))
    }

    /// Anonymous shared memory, shared only with children created by `fork`.
    public static let anonymous = RegionName(checked: .anonymous)

    /// A memfd region. The label is 1 to 249 bytes without NUL (the kernel's limit); it is shown in /proc for
    /// people, and names nothing: the region is shared by passing its descriptor.
    public static func memfd(_ label: String) throws(SharedMemoryError) -> RegionName {
        func invalid(_ why: String) -> SharedMemoryError {
            Self.invalid("memfd:" + label, why + ": a memfd label is 1 to 249 bytes without NUL (for example memfd:orders)")
        }
        var label = label
        let (count, hasNUL) = label.withUTF8 { ($0.count, $0.contains(0)) }
        guard count > 0 else { throw invalid("the label is empty") }
        guard !hasNUL else { throw invalid("it contains a NUL byte") }
        guard count <= 249 else { throw invalid("the label is \(count) bytes long") }
        return RegionName(checked: .memfd(label))
    }

    /// Parses the string form (see the table above).
    public init(_ string: String) throws(SharedMemoryError) {
        if string == "anonymous" {
            self = .anonymous
        } else if string == "sysv:private" {
            self = .systemVPrivate
        } else if let key = string.dropPrefix("sysv:") {
            guard let value = Self.parseKey(key) else {
                throw Self.invalid(string, "a System V key is a number: decimal, or hex with 0x (for example sysv:0x5eed), or `private`")
            }
            self = try .systemV(key: value)
        } else if let id = string.dropPrefix("sysv-id:") {
            guard let value = Int32(id), value >= 0 else {
                throw Self.invalid(string, "a System V id is a decimal number from 0 to \(Int32.max), as `ipcs -m` shows it")
            }
            self = try .systemV(id: value)
        } else if let name = string.dropPrefix("posix:") {
            self = try .posix(String(name))
        } else if let label = string.dropPrefix("memfd:") {
            self = try .memfd(String(label))
        } else if let path = string.dropPrefix("file:") {
            // FilePath would drop what follows a NUL and a trailing slash: check the text itself first.
            let rule = Self.fileRule
            guard !path.utf8.contains(0) else { throw Self.invalid(string, "it contains a NUL byte: " + rule) }
            guard path.utf8.last != UInt8(ascii: "/") else { throw Self.invalid(string, "the path names a directory: " + rule) }
            self = try .file(FilePath(String(path)))
        } else {
            throw Self.invalid(string, "a region name starts with sysv:, sysv-id:, posix:, file:, memfd:, or is `anonymous` (for example posix:/orders)")
        }
    }

    /// The System V key for a file and a project id, as `ftok(3)` computes it (from the file's inode and device).
    ///
    /// Only the low 8 bits of the project id count, which is why it is a `UInt8`; it may not be 0. Two files can
    /// give the same key (inode and device are folded into 24 bits): prefer a random key or `sysv:private` when
    /// both processes can agree on a name another way. The file must exist.
    ///
    /// The corresponding C function is `ftok`.
    public static func ftok(path: FilePath, projectID: UInt8) throws(SharedMemoryError) -> RegionName {
        guard projectID != 0 else {
            throw SharedMemoryError(.invalidArgument, "ftok's project id must not be 0; use 1 to 255")
        }
        let key = try Syscalls.ftok(path, Int32(projectID))
        return try .systemV(key: key)
    }

    // MARK: Codable as the string form

    /// Decodes the string form, refusing invalid names as ``init(_:)`` does.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        self = try RegionName(try container.decode(String.self))
    }

    /// Encodes the string form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    // MARK: Helpers

    private static func parseKey(_ text: Substring) -> Int32? {
        if let hexDigits = text.dropPrefix("0x") ?? text.dropPrefix("0X") {
            return UInt32(hexDigits, radix: 16).map { Int32(bitPattern: $0) }
        }
        if let negative = Int32(text), negative < 0 { return negative }
        return UInt32(text).map { Int32(bitPattern: $0) }
    }

    private static let fileRule = "a file region needs an absolute path to a file (for example file:/var/tmp/orders)"

    private static func invalid(_ text: String, _ why: String) -> SharedMemoryError {
        SharedMemoryError(.invalidName, "`\(text)` is not a valid region name: \(why)")
    }
}

func hex(_ value: UInt32, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

extension StringProtocol {
    func dropPrefix(_ prefix: String) -> SubSequence? {
        hasPrefix(prefix) ? dropFirst(prefix.count) : nil
    }
}
