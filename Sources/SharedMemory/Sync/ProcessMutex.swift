import Atomics
import CSharedMemory
import Glibc
import SystemPackage

/// A mutex in shared memory that threads of any process attached to the region can lock: a process-shared,
/// robust `pthread_mutex_t`.
///
/// Robust means a dead owner does not deadlock everyone else. When a process dies holding the lock, the next
/// `lock()` gets it with ``Acquisition/ownerDied``: the data it protects may be half-updated, so repair it, then
/// call ``markConsistent()`` before unlocking. Unlocking without that makes the mutex `notRecoverable` for good,
/// and every later lock throws ``SharedMemoryError/Code/notRecoverable`` instead of hanging.
///
/// The mutex holds the region's mapping (``RegionMapping``): the memory stays mapped while the mutex exists, even
/// after the region's handle is detached or dropped, and the region cannot be resized or remapped meanwhile
/// (``SharedMemoryError/Code/busy``). Copies share the one mutex; it is `Sendable`, so threads and tasks can
/// share it.
public struct ProcessMutex: @unchecked Sendable {
    /// Bytes a mutex takes in a region (`sizeof(pthread_mutex_t)`).
    public static let size = Int(csm_mutex_size())
    /// The alignment its offset needs.
    public static let alignment = 8

    /// How a lock was acquired.
    public enum Acquisition: Sendable, Hashable {
        /// Normally.
        case acquired
        /// From a process that died holding it: the protected data may be inconsistent. Repair it and call
        /// ``ProcessMutex/markConsistent()`` before unlocking.
        case ownerDied
    }

    /// Keeps the memory mapped while the mutex exists.
    let mapping: RegionMapping
    let mutex: RobustMutex

    private init(_ place: (mapping: RegionMapping, address: UnsafeMutableRawPointer)) {
        mapping = place.mapping
        mutex = RobustMutex(address: place.address, region: place.mapping.name)
    }

    /// Makes a new mutex at `offset`. Do this once, in one process, before any process locks it; doing it again
    /// over a mutex in use is undefined.
    ///
    /// The corresponding C calls are `pthread_mutexattr_setpshared`, `pthread_mutexattr_setrobust` and
    /// `pthread_mutex_init`.
    public static func initialize(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> ProcessMutex {
        let mutex = try existing(in: region, at: offset)
        try mutex.mutex.initialize()
        return mutex
    }

    /// The mutex another process made at `offset` with ``initialize(in:at:)``.
    public static func existing(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> ProcessMutex {
        ProcessMutex(try region.sharedObjectAddress(at: offset, size: size, alignment: alignment, what: "a mutex"))
    }

    /// Waits for the lock.
    ///
    /// The corresponding C call is `pthread_mutex_lock`.
    public func lock() throws(SharedMemoryError) -> Acquisition { try mutex.lock() }

    /// Waits for the lock at most `timeout`, then throws ``SharedMemoryError/Code/timedOut``.
    ///
    /// The corresponding C call is `pthread_mutex_clocklock(CLOCK_MONOTONIC)`.
    public func lock(timeout: Duration) throws(SharedMemoryError) -> Acquisition { try mutex.lock(timeout: timeout) }

    /// Takes the lock if it is free; `nil` if someone holds it.
    ///
    /// The corresponding C call is `pthread_mutex_trylock`.
    public func tryLock() throws(SharedMemoryError) -> Acquisition? { try mutex.tryLock() }

    /// Releases the lock, which this thread must hold.
    ///
    /// The corresponding C call is `pthread_mutex_unlock`.
    public func unlock() throws(SharedMemoryError) { try mutex.unlock() }

    /// After ``Acquisition/ownerDied`` and repairing the data: makes the mutex usable again.
    ///
    /// The corresponding C call is `pthread_mutex_consistent`.
    public func markConsistent() throws(SharedMemoryError) { try mutex.markConsistent() }

    /// Runs `body` holding the lock. If the last owner died holding it, runs `repair` first and marks the mutex
    /// consistent; without a `repair`, a dead owner's lock is passed on as `ownerDied` would be: unrepaired
    /// and so, on unlock, not recoverable. Errors from `repair` and `body` pass through as they are (so this
    /// method throws `any Error`); the lock's own are ``SharedMemoryError``.
    public func withLock<R>(repair: (() throws -> Void)? = nil, _ body: () throws -> R) throws -> R {
        if try lock() == .ownerDied, let repair {
            do {
                try repair()
                try markConsistent()
            } catch {
                try? unlock()
                throw error
            }
        }
        defer { try? unlock() }
        return try body()
    }
}

/// The robust, process-shared `pthread_mutex_t` at an address: what ``ProcessMutex`` does, without holding the
/// mapping. The heap keeps one in its header and holds its region itself (it must be free to remap it).
struct RobustMutex {
    /// glibc's futex word (the first 4 bytes): the owner's thread id in these bits (`FUTEX_TID_MASK`), then
    /// `FUTEX_OWNER_DIED` (set by the kernel when the owner died holding it) and `FUTEX_WAITERS`.
    static let tidMask: UInt32 = 0x3fff_ffff, ownerDiedBit: UInt32 = 0x4000_0000, waitersBit: UInt32 = 0x8000_0000
    /// What glibc leaves in the owner field (`__data.__owner`, the third 32-bit word) of a mutex that can never be
    /// locked again.
    static let notRecoverableOwner: Int32 = 0x7fff_fffe

    /// Who holds the mutex at `address`, read without touching it (`shm inspect` takes no lock).
    enum Holder: Equatable {
        case nobody, thread(Int32), ownerDied, notRecoverable
    }

    static func holder(at address: UnsafeRawPointer) -> Holder {
        if address.load(fromByteOffset: 8, as: Int32.self) == notRecoverableOwner { return .notRecoverable }
        let word = address.load(as: UInt32.self)
        if word & ownerDiedBit != 0 { return .ownerDied }
        let tid = Int32(bitPattern: word & tidMask)
        return tid == 0 ? .nobody : .thread(tid)
    }

    let address: UnsafeMutableRawPointer
    /// For errors; nil for the heap's, which adds its region's name to the errors it passes on.
    let region: RegionName?

    private var mutex: UnsafeMutablePointer<pthread_mutex_t> { address.assumingMemoryBound(to: pthread_mutex_t.self) }

    func initialize() throws(SharedMemoryError) {
        _ = try Syscalls.pthread("pthread_mutex_init", region) { csm_mutex_init(address) }
    }

    /// Locks (the uncontended path inlined into the caller: a publish takes the service's lock on every sample).
    @inline(__always)
    func lock() throws(SharedMemoryError) -> ProcessMutex.Acquisition {
        #if DEBUG
        try checkRecoverable()
        let result = try Syscalls.pthread("pthread_mutex_lock", region, expected: [EOWNERDEAD, ENOTRECOVERABLE]) { pthread_mutex_lock(mutex) }
        return try acquisition(result)
        #else
        // Release builds have no fault injection to route through: the call itself (which never says EINTR), and
        // no array of expected errors made on every lock.
        try checkRecoverable()
        let result = pthread_mutex_lock(mutex)
        return result == 0 ? .acquired : try lockReturned(result)
        #endif
    }

    /// What a `pthread_mutex_lock` that did not simply succeed means.
    @inline(never)
    private func lockReturned(_ result: Int32) throws(SharedMemoryError) -> ProcessMutex.Acquisition {
        guard result == EOWNERDEAD || result == ENOTRECOVERABLE else {
            throw SharedMemoryError(errno: Errno(rawValue: result), call: "pthread_mutex_lock", region: region)
        }
        return try acquisition(result)
    }

    func lock(timeout: Duration) throws(SharedMemoryError) -> ProcessMutex.Acquisition {
        if let acquired = try tryLock() { return acquired }
        let result = try Syscalls.pthread("pthread_mutex_clocklock", region, expected: [EOWNERDEAD, ENOTRECOVERABLE, ETIMEDOUT]) {
            csm_mutex_lock_timeout(address, timeout.nanoseconds)
        }
        guard result != ETIMEDOUT else {
            try checkRecoverable()
            throw SharedMemoryError(.timedOut, "the mutex was still held after \(timeout)", region: region, systemCall: "pthread_mutex_clocklock", errno: .timedOut)
        }
        return try acquisition(result)
    }

    func tryLock() throws(SharedMemoryError) -> ProcessMutex.Acquisition? {
        let result = try Syscalls.pthread("pthread_mutex_trylock", region, expected: [EOWNERDEAD, ENOTRECOVERABLE, EBUSY]) { pthread_mutex_trylock(mutex) }
        if result == EBUSY {
            try checkRecoverable()
            return nil
        }
        return try acquisition(result)
    }

    @inline(__always)
    func unlock() throws(SharedMemoryError) {
        #if !DEBUG
        if pthread_mutex_unlock(mutex) == 0 { return }
        #endif
        try unlockReporting()
    }

    /// Unlocks through the fault-injecting layer (debug builds), or says why the unlock failed.
    @inline(never)
    private func unlockReporting() throws(SharedMemoryError) {
        do {
            _ = try Syscalls.pthread("pthread_mutex_unlock", region) { pthread_mutex_unlock(mutex) }
        } catch where error.errno == .notPermitted {
            throw SharedMemoryError(.invalidArgument, "this thread does not hold the mutex, so it cannot unlock it", region: region, systemCall: error.systemCall, errno: error.errno)
        }
    }

    func markConsistent() throws(SharedMemoryError) {
        _ = try Syscalls.pthread("pthread_mutex_consistent", region) { pthread_mutex_consistent(mutex) }
    }

    /// glibc reports a mutex that is not recoverable only to the first locker after it became so; later
    /// `trylock`s say EBUSY and timed locks wait out their time. Its owner field (`__data.__owner`, the third
    /// 32-bit word) then holds glibc's PTHREAD_MUTEX_NOTRECOVERABLE (0x7ffffffe), which is what this looks at.
    @inline(__always)
    private func checkRecoverable() throws(SharedMemoryError) {
        let owner = UnsafeAtomic<Int32>(at: (address + 8).assumingMemoryBound(to: Int32.AtomicRepresentation.self))
        if owner.load(ordering: .acquiring) == RobustMutex.notRecoverableOwner { _ = try acquisition(ENOTRECOVERABLE) }
    }

    private func acquisition(_ result: Int32) throws(SharedMemoryError) -> ProcessMutex.Acquisition {
        switch result {
        case EOWNERDEAD: return .ownerDied
        case ENOTRECOVERABLE:
            throw SharedMemoryError(.notRecoverable, "a process died holding this mutex and the next owner unlocked it without marking it consistent, so it can never be locked again; initialize a new one (and repair the data it protected)", region: region, systemCall: "pthread_mutex_lock", errno: Errno(rawValue: ENOTRECOVERABLE))
        default: return .acquired
        }
    }
}
