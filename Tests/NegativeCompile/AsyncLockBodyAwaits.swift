// withLockAsync's body is synchronous: a POSIX mutex belongs to the thread that locked it, and a task may resume on
// another thread after an await, so the body cannot suspend while it holds the lock.
// expect: cannot pass function of type '() async throws -> ()' to parameter expecting synchronous function type
import SharedMemory

func lockBodyAwaits(_ mutex: ProcessMutex) async throws {
    try await mutex.withLockAsync {
        try await Task.sleep(for: .milliseconds(1))
    }
}
