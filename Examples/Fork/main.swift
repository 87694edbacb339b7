// Anonymous shared memory with children created by fork: four children add to one counter under a robust
// process-shared mutex, and the parent reads the total.
//
//   swift run fork-counter

import Glibc
import SharedMemory

/// The program; what it throws is printed below as one line.
func run() throws {
    let children = 4, increments = 100_000
    let region = try SharedMemory.create(.anonymous, size: 4096)
    let mutex = try ProcessMutex.initialize(in: region, at: 0)
    let counter = 64  // the byte offset of the counter, after the mutex

    var pids: [pid_t] = []
    for _ in 0..<children {
        let pid = fork()
        if pid == 0 {
            // The child shares the region with the parent: same memory, same mutex.
            for _ in 0..<increments {
                _ = try mutex.lock()
                try region.set(try region.get(Int.self, at: counter) + 1, at: counter)
                try mutex.unlock()
            }
            _exit(0)
        }
        pids.append(pid)
    }
    for pid in pids {
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
    let total = try region.get(Int.self, at: counter)
    print("\(children) children × \(increments) increments = \(total)")
    exit(total == children * increments ? 0 : 1)
}

// An example is what users copy: a failure is one line saying why (the error's description names the region, the
// call and what to do) and exit status 1, never a crash report.
do {
    try run()
} catch {
    let line = "fork-counter: \(error)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }  // standard error
    exit(1)
}
