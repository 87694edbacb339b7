// A memfd region, sealed, handed read-only to an unrelated process over a Unix socket:
//
//   swift run sealed-memfd
//
// The parent creates the region, writes it, seals it (no shrinking, growing or new writable mapping, ever),
// starts a second program (itself, with `receive`) and sends it the region. The receiver demands the seals
// before it maps anything, reads, and finds that the kernel refuses it any write.

import Glibc
import SharedMemory

/// One line on standard error, and exit status 1: how an example fails.
func fail(_ message: String) -> Never {
    let line = "sealed-memfd: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

/// The other process: the region arrives on standard input, which is one end of a socket pair. Whether the kernel
/// refused to make it writable.
func receiver() throws -> Bool {
    let region = try SharedMemory.receive(
        from: FileDescriptor(rawValue: 0),
        options: .init(access: .readOnly, requiredSeals: [.shrink, .grow, .futureWrite]))
    let text = String(decoding: try region.get(count: 25, at: 0), as: UTF8.self)
    print("receiver: \(region.backend) region of \(region.size) bytes: \(text)")
    let base = region.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
    let refused = mprotect(base, region.size, PROT_READ | PROT_WRITE) != 0
    print("receiver: making it writable is \(refused ? "refused by the kernel" : "allowed (this should not happen)")")
    return refused
}

/// This process: makes, writes and seals the region, starts the receiver and sends it. The receiver's exit status.
func sender() throws -> Int32 {
    let region = try MemfdRegion.create(try .memfd("sealed-example"), size: 4096)
    try region.set(bytes: Array("sealed, read-only for you".utf8), at: 0)
    try region.addSeals([.shrink, .grow, .futureWrite, .seal])
    print("sender: seals \(try region.seals)")
    fflush(nil)

    var ends: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0 else { fail("socketpair failed: \(String(cString: strerror(errno)))") }

    // Start this program again as the receiver, with the socket as its standard input.
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, ends[1], 0)
    var pid: pid_t = 0
    let executable = CommandLine.arguments[0]
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(executable), strdup("receive"), nil]
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    guard spawned == 0 else { fail("posix_spawn of \(executable) failed: \(String(cString: strerror(spawned)))") }
    close(ends[1])

    try region.send(over: FileDescriptor(rawValue: ends[0]), access: .readOnly)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    print("sender: the receiver exited with status \(status)")
    return status
}

// An example is what users copy: a failure is one line saying why, and exit status 1, never a crash report.
do {
    if CommandLine.arguments.dropFirst().first == "receive" {
        exit(try receiver() ? 0 : 1)
    }
    exit(try sender() == 0 ? 0 : 1)
} catch {
    fail("\(error)")
}
