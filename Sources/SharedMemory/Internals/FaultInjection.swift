#if DEBUG
import Synchronization
import SystemPackage

/// Debug builds only: makes chosen system calls fail with a chosen errno, so that every error path (and every
/// back-out after a half-made create) can be tested. The plan is task-local, so tests running in parallel do
/// not see each other's faults.
///
/// ```swift
/// try FaultInjection.$plan.withValue(.init(["mmap": [.noMemory]])) { try SharedMemory.create(name, size: 4096) }
/// ```
enum FaultInjection {
    /// For each call name (as ``SharedMemoryError/systemCall`` spells it), the errnos its next invocations get,
    /// in order; once used up, the call runs for real.
    final class Plan: Sendable {
        let remaining: Mutex<[String: [Errno]]>
        init(_ faults: [String: [Errno]]) { remaining = Mutex(faults) }
        /// The errnos not yet handed out.
        var unused: [String: [Errno]] { remaining.withLock { $0.filter { !$0.value.isEmpty } } }
    }

    @TaskLocal static var plan: Plan?

    static func next(for call: String) -> Errno? {
        guard let plan else { return nil }
        return plan.remaining.withLock { faults in
            guard var list = faults[call], !list.isEmpty else { return nil }
            let first = list.removeFirst()
            faults[call] = list
            return first
        }
    }
}
#endif
