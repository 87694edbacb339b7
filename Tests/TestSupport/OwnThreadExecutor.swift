import Foundation

/// A task executor with one thread of its own: tasks run under it (`withTaskExecutorPreference`) never wait for
/// Swift's cooperative pool. A test that counts what its tasks did within a bound needs that: in the whole suite on
/// two CPUs, the tests that block the pool's threads (children, crash tests) can keep a task from starting for
/// minutes.
public final class OwnThreadExecutor: TaskExecutor, @unchecked Sendable {
    /// The executor the current test runs on, if it runs on one (for `Task(executorPreference:)`: an unstructured
    /// task does not inherit the preference).
    @TaskLocal public static var current: OwnThreadExecutor?

    private let queue = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var ended = false

    public init() {
        let thread = Thread { self.run() }  // holds the executor until its thread ends
        thread.name = "OwnThreadExecutor"
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.lock()
        if ended {  // late: the thread is gone, so the pool runs it
            queue.unlock()
            globalConcurrentExecutor.enqueue(job)
            return
        }
        jobs.append(job)
        queue.signal()
        queue.unlock()
    }

    /// Ends the thread once it has run what is queued. It does not wait for that, so a task may call it while it
    /// runs here.
    public func stop() {
        queue.lock()
        stopping = true
        queue.signal()
        queue.unlock()
    }

    private func run() {
        while true {
            queue.lock()
            while jobs.isEmpty && !stopping { queue.wait() }
            if jobs.isEmpty {
                ended = true
                queue.unlock()
                return
            }
            let job = jobs.removeFirst()
            queue.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
