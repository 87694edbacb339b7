import Foundation

/// `shm bench --loaded`: a busy loop on every CPU this process may use, each a child shell spinning for as long as
/// this process lives (`while kill -0 PID; do :; done`), started before the loaded cases and stopped (SIGKILL, then
/// reaped) after them, so that the two-process waits are measured as a user's busy machine runs them.
final class BusyLoad {
    /// What a loaded row's name carries: `…, loaded (N busy loops)`.
    static let rowMark = ", loaded ("

    private var loopsRunning: [Process] = []
    var loops: Int { loopsRunning.count }

    init() throws {
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        for _ in 0..<max(1, cpus) {
            let loop = Process()
            loop.executableURL = URL(fileURLWithPath: "/bin/sh")
            // The loop ends itself once the bench is gone (`kill -0` is the shell's builtin: no process a turn), so a
            // bench killed before `stop()` leaves no loop spinning. $0: a name to find it by.
            loop.arguments = ["-c", "while kill -0 \(getpid()) 2>/dev/null; do :; done", "shm-bench-busy-loop"]
            loop.standardOutput = FileHandle.nullDevice
            loop.standardError = FileHandle.nullDevice
            do { try loop.run() } catch {
                stop()
                throw error
            }
            loopsRunning.append(loop)
        }
        usleep(100_000)  // every loop is on a CPU by now
    }

    /// Stops every loop and waits for it.
    func stop() {
        for loop in loopsRunning where loop.isRunning {
            kill(loop.processIdentifier, SIGKILL)
            loop.waitUntilExit()
        }
        loopsRunning.removeAll()
    }

    deinit { stop() }
}
