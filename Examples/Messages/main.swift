// A server and a client exchanging messages through shared memory, over any backend:
//
//   swift run messages server --region posix:/demo &
//   swift run messages client --region posix:/demo hello world
//
// The region holds two message rings: requests (client to server) and replies (server to client). Change
// `--region` to sysv:0x5eed or file:/dev/shm/demo and nothing else changes.
//
// The classic mistakes of C tutorials, and what this does instead:
// - a server that fails on its second run because the segment still exists: a region left by a server that
//   died is recognised (its creator no longer runs) and replaced; a live server's region is refused;
// - forgetting to detach: regions detach when they go out of scope;
// - 0666 permissions: regions are 0600 unless asked otherwise;
// - no synchronisation: the rings are the synchronisation.

import Glibc
import SharedMemory

let capacity = 1 << 16
let replies = MessageRing.size(capacity: capacity)  // offset of the second ring

/// One line on standard error, and exit status 1: how an example fails.
func fail(_ message: String) -> Never {
    let line = "messages: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

/// A note on standard error (standard output carries the answers).
func note(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Creates the server's region; one left by a server that died is replaced, one a live server uses is refused.
func createRegion(_ name: RegionName) throws(SharedMemoryError) -> AnyRegion {
    let size = 2 * MessageRing.size(capacity: capacity)
    do {
        return try SharedMemory.create(name, size: size)
    } catch where error.code == .alreadyExists {
        let info = try SharedMemory.info(name)
        guard info.creatorIsAlive == false else {
            fail("\(name) belongs to a server that is still running (pid \(info.creatorPID.map(String.init) ?? "?"))")
        }
        print("server: replacing \(name), left by process \(info.creatorPID.map(String.init) ?? "?"), which is gone")
        try SharedMemory.remove(name)
        return try SharedMemory.create(name, size: size)
    }
}

func server(_ name: RegionName) throws(SharedMemoryError) {
    let region = try createRegion(name)
    try MessageRing.format(region, at: 0, capacity: capacity)
    try MessageRing.format(region, at: replies, capacity: capacity)
    print("server: listening on \(region.name)")
    // Both rings live in the one region; each side holds the mapping, so one attachment serves both.
    let requests = try RingReceiver(region)
    let answers = try RingSender(region, at: replies)
    while let request = try requests.receive(timeout: .seconds(30)) {
        let text = String(decoding: request, as: UTF8.self)
        if text == "bye" { break }
        try answers.send(Array(text.uppercased().utf8))
    }
    try region.remove()  // nobody can open it any more; it goes when the client detaches
    print("server: done")
}

/// Opens the server's region, waiting up to 10 seconds for the server to create it and format both rings: the
/// client may start first.
func openServerRegion(_ name: RegionName) throws(SharedMemoryError) -> AnyRegion {
    let started = ContinuousClock.now, deadline = started + .seconds(10)
    var said = false
    while true {
        if !said, ContinuousClock.now - started >= .seconds(1) {
            note("client: waiting for \(name) to be created and formatted by its server (up to 10 s)…")
            said = true
        }
        do {
            let region = try SharedMemory.open(name, options: .init(minimumSize: 2 * MessageRing.size(capacity: capacity)))
            try MessageRing.waitUntilFormatted(region, at: 0, timeout: .seconds(10))
            try MessageRing.waitUntilFormatted(region, at: replies, timeout: .seconds(10))
            return region
        } catch where [.notFound, .notReady, .invalidArgument].contains(error.code) && ContinuousClock.now < deadline {
            usleep(10_000)  // not created, not sized, or a dead server's smaller region not yet replaced
        }
    }
}

func client(_ name: RegionName, _ words: [String]) throws(SharedMemoryError) {
    let region = try openServerRegion(name)
    let requests = try RingSender(region)
    let answers = try RingReceiver(region, at: replies)
    for word in words {
        try requests.send(Array(word.utf8))
        guard let reply = try answers.receive(timeout: .seconds(10)) else { fail("the server finished early") }
        print("client: \(word) -> \(String(decoding: reply, as: UTF8.self))")
    }
    try requests.send(Array("bye".utf8))
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count >= 3, arguments[1] == "--region" else {
    fail("usage: messages server|client --region NAME [WORDS...]")
}
do {
    let name = try RegionName(arguments[2])
    switch arguments[0] {
    case "server": try server(name)
    case "client": try client(name, Array(arguments.dropFirst(3)))
    default: fail("usage: messages server|client --region NAME [WORDS...]")
    }
} catch {
    fail("\(error)")
}
