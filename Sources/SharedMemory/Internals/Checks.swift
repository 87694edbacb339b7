import Glibc
import SystemPackage

/// Checks made before any system call, so bad input never reaches the kernel.
enum Checks {
    /// A region size: more than 0.
    static func size(_ size: Int, _ region: RegionName) throws(SharedMemoryError) {
        guard size > 0 else {
            throw SharedMemoryError(.invalidArgument, "the size must be at least 1 byte, not \(size)", region: region)
        }
    }

    /// Creation permissions: only the nine rwx bits, as a `mode_t`.
    static func mode(_ permissions: FilePermissions, _ region: RegionName) throws(SharedMemoryError) -> mode_t {
        guard permissions.rawValue & ~0o777 == 0 else {
            throw SharedMemoryError(
                .invalidArgument,
                "permissions \(octal(permissions.rawValue)) have bits beyond rwx (setuid, setgid, sticky); use 0 to 0777",
                region: region)
        }
        return mode_t(permissions.rawValue)
    }

    /// A fixed attach address must be page-aligned and not 0.
    static func address(_ address: AttachAddress?, _ region: RegionName) throws(SharedMemoryError) {
        guard case .fixed(let value)? = address else { return }
        guard value != 0, value % UInt(Syscalls.pageSize) == 0 else {
            throw SharedMemoryError(
                .invalidArgument,
                "a fixed attach address must be a nonzero multiple of the page size (\(Syscalls.pageSize)), not 0x\(String(value, radix: 16))",
                region: region)
        }
    }

    /// `minimumSize` in ``OpenOptions``: 0 or more.
    static func minimumSize(_ minimum: Int, _ region: RegionName) throws(SharedMemoryError) {
        guard minimum >= 0 else {
            throw SharedMemoryError(.invalidArgument, "the minimum size must be 0 or more, not \(minimum)", region: region)
        }
    }

    /// The owner and mode an opener demands (``OpenOptions/requiredOwner``, ``OpenOptions/requirePrivateMode``,
    /// and the mode ``SharedMemory/openOrCreate(_:size:options:)`` asked for). `creator` is System V's `cuid`: the
    /// creator of a segment keeps its owner's rights whoever the owner is now, so a segment another user created
    /// and then gave away (`IPC_SET`) is neither ours nor private.
    static func trust(owner: UInt32, creator: UInt32?, mode: UInt32, _ options: OpenOptions, _ region: RegionName) throws(SharedMemoryError) {
        if let required = options.requiredOwner, owner != required {
            throw SharedMemoryError(.foreign, "it belongs to uid \(owner), not uid \(required): someone else made this name first; it was not opened", region: region)
        }
        if let required = options.requiredOwner, let creator, creator != required {
            throw SharedMemoryError(.foreign, "it was created by uid \(creator), who keeps an owner's rights over it, and later given to uid \(owner): someone else made this name first; it was not opened", region: region)
        }
        if options.requirePrivateMode, mode & 0o077 != 0 {
            throw SharedMemoryError(.foreign, "its mode \(octal(mode & 0o777)) lets group or others in, and a private region was required", region: region)
        }
        if options.requirePrivateMode, let creator, creator != owner {
            throw SharedMemoryError(.foreign, "it was created by uid \(creator), who keeps an owner's rights over it, so it is not private to uid \(owner)", region: region)
        }
        if let allowed = options.allowedPermissions, mode & 0o777 & ~allowed != 0 {
            throw SharedMemoryError(.foreign, "its mode \(octal(mode & 0o777)) gives more access than the \(octal(allowed)) asked for (someone else may have made or widened it); it was not adopted", region: region)
        }
    }

    /// The region is at least `minimum` bytes.
    static func actualSize(_ size: Int, atLeast minimum: Int, _ region: RegionName) throws(SharedMemoryError) {
        guard size >= minimum else {
            throw SharedMemoryError(
                .invalidArgument,
                "it holds \(size) bytes, fewer than the \(minimum) asked for; opening never grows a region, resize it instead",
                region: region)
        }
    }
}

/// `0640`-style text for a mode.
func octal<T: BinaryInteger>(_ mode: T) -> String {
    let digits = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

/// `1.5 MiB`-style text for a byte count (`100 bytes` below a KiB): the one size formatter, which the `shm` tool
/// uses too (through `@_spi(Formatting)`).
@_spi(Formatting) public func humanSize(_ bytes: Int) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(bytes) bytes" }
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) \(units[unit])"
}
