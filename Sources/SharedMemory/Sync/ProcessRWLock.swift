import CSharedMemory
import Glibc

/// A read-write lock in shared memory: many readers or one writer, across processes (a process-shared
/// `pthread_rwlock_t`).
///
/// POSIX read-write locks are **not robust**: the kernel does not release them when their holder dies. A writer
/// that dies holding the lock blocks every later reader and writer; a reader that dies holding it blocks every
/// later writer (readers still get in). Nothing reports it. Use the timed ``lockRead(timeout:)`` and
/// ``lockWrite(timeout:)`` where a peer may die, and a ``ProcessMutex`` (robust) where that must be recovered from.
///
/// The lock holds the region's mapping (``RegionMapping``): the memory stays mapped while the lock exists, and the
/// region cannot be resized or remapped meanwhile. It is `Sendable`.
public struct ProcessRWLock: @unchecked Sendable {
    /// Bytes a read-write lock takes in a region (`sizeof(pthread_rwlock_t)`).
    public static let size = Int(csm_rwlock_size())
    /// The alignment its offset needs.
    public static let alignment = 8

    /// Keeps the memory mapped while the lock exists.
    let mapping: RegionMapping
    let address: UnsafeMutableRawPointer
    var region: RegionName { mapping.name }

    private init(_ place: (mapping: RegionMapping, address: UnsafeMutableRawPointer)) {
        mapping = place.mapping
        address = place.address
    }

    /// Makes a new lock at `offset`, once, before any process uses it.
    ///
    /// The corresponding C calls are `pthread_rwlockattr_setpshared` and `pthread_rwlock_init`.
    public static func initialize(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> ProcessRWLock {
        let lock = try existing(in: region, at: offset)
        _ = try Syscalls.pthread("pthread_rwlock_init", region.name) { csm_rwlock_init(lock.address) }
        return lock
    }

    /// The lock another process made at `offset`.
    public static func existing(in region: borrowing some SharedRegion & ~Copyable, at offset: Int) throws(SharedMemoryError) -> ProcessRWLock {
        ProcessRWLock(try region.sharedObjectAddress(at: offset, size: size, alignment: alignment, what: "a read-write lock"))
    }

    private var lock: UnsafeMutablePointer<pthread_rwlock_t> { address.assumingMemoryBound(to: pthread_rwlock_t.self) }

    /// Waits to read. The corresponding C call is `pthread_rwlock_rdlock`.
    public func lockRead() throws(SharedMemoryError) {
        _ = try Syscalls.pthread("pthread_rwlock_rdlock", region) { pthread_rwlock_rdlock(lock) }
    }

    /// Waits to write. The corresponding C call is `pthread_rwlock_wrlock`.
    public func lockWrite() throws(SharedMemoryError) {
        _ = try Syscalls.pthread("pthread_rwlock_wrlock", region) { pthread_rwlock_wrlock(lock) }
    }

    /// Waits to read at most `timeout`. The corresponding C call is `pthread_rwlock_clockrdlock`.
    public func lockRead(timeout: Duration) throws(SharedMemoryError) {
        try timed("pthread_rwlock_clockrdlock", timeout) { csm_rwlock_read_timeout(address, timeout.nanoseconds) }
    }

    /// Waits to write at most `timeout`. The corresponding C call is `pthread_rwlock_clockwrlock`.
    public func lockWrite(timeout: Duration) throws(SharedMemoryError) {
        try timed("pthread_rwlock_clockwrlock", timeout) { csm_rwlock_write_timeout(address, timeout.nanoseconds) }
    }

    /// Reads if no writer holds it; whether it did. The corresponding C call is `pthread_rwlock_tryrdlock`.
    public func tryLockRead() throws(SharedMemoryError) -> Bool {
        try Syscalls.pthread("pthread_rwlock_tryrdlock", region, expected: [EBUSY]) { pthread_rwlock_tryrdlock(lock) } == 0
    }

    /// Writes if nobody holds it; whether it did. The corresponding C call is `pthread_rwlock_trywrlock`.
    public func tryLockWrite() throws(SharedMemoryError) -> Bool {
        try Syscalls.pthread("pthread_rwlock_trywrlock", region, expected: [EBUSY]) { pthread_rwlock_trywrlock(lock) } == 0
    }

    /// Releases a read or write hold. The corresponding C call is `pthread_rwlock_unlock`.
    public func unlock() throws(SharedMemoryError) {
        _ = try Syscalls.pthread("pthread_rwlock_unlock", region) { pthread_rwlock_unlock(lock) }
    }

    /// Runs `body` holding the lock to read. Errors from `body` pass through as they are.
    public func withReadLock<R>(_ body: () throws -> R) throws -> R {
        try lockRead()
        defer { try? unlock() }
        return try body()
    }

    /// Runs `body` holding the lock to write. Errors from `body` pass through as they are.
    public func withWriteLock<R>(_ body: () throws -> R) throws -> R {
        try lockWrite()
        defer { try? unlock() }
        return try body()
    }

    private func timed(_ call: String, _ timeout: Duration, _ body: () -> Int32) throws(SharedMemoryError) {
        guard try Syscalls.pthread(call, region, expected: [ETIMEDOUT], body) != ETIMEDOUT else {
            throw SharedMemoryError(.timedOut, "the read-write lock was still held after \(timeout) (if its holder died, it never will be released: POSIX read-write locks are not robust)", region: region, systemCall: call, errno: .timedOut)
        }
    }
}
