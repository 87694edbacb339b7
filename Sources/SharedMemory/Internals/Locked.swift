import Glibc

/// Process-local state shared by threads, behind a `pthread_mutex_t`. Not `Synchronization.Mutex`: the standard
/// library is built without ThreadSanitizer's instrumentation, so TSan cannot see that lock's ordering and reports
/// the accesses it protects as races; it does understand pthread mutexes.
///
/// Its value is never empty (`Locked(())` for a bare lock): ThreadSanitizer reports two threads' `withLock` on a
/// zero-sized value as a race although both hold the mutex (seen in the suite, and in a 20-line program with four
/// threads; the same program with an `Int32` is clean). A bare lock guards some value that says what it protects.
final class Locked<Value>: @unchecked Sendable {
    @exclusivity(unchecked) private var value: Value  // the mutex excludes; a dynamic check would cost ~80 instructions a use
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
