// RegionProbe: the second process in SharedMemory's tests. It opens regions by name with the library, in a
// process of its own, and answers on one line: `ok [RESULT]` or `error CODE DESCRIPTION`.
//
//   RegionProbe [--uid UID] [--umask OCTAL] OPERATION ARGUMENTS...
//
//   create NAME SIZE [MODE [process]]
//                               create exclusively (mode in octal, default 0600; with a process lifetime)
//   open NAME ro|rw             attach, print the size
//   read NAME OFFSET COUNT      print the bytes in hex
//   write NAME OFFSET HEX       write the bytes
//   remove NAME                 remove the name without attaching
//   hold NAME ro|rw             attach, print `ok SIZE`, stay attached until standard input closes
//   receive ro|rw [SEALS] ACTION...
//                               receive a region over the Unix socket on standard input (requiring the
//                               comma-separated SEALS, e.g. seals=shrink,grow), print `ok BACKEND SIZE`, then do
//                               each ACTION, one answer line each: read:OFFSET:COUNT, write:OFFSET:HEX,
//                               resize:SIZE, truncate:SIZE (raw ftruncate), mprotect-write (raw mprotect to
//                               PROT_WRITE); last, `fds BEFORE AFTER`: open descriptors before and after
//   ring-send NAME BYTES        (NAME memfd:LABEL: the region arrives over the socket on standard input)
//   ring-send NAME BYTES        attach as a ring's sender and send BYTES in messages (see RingMessages), then
//                               finish; with BYTES 0, send until killed
//   ring-receive NAME           attach as receiver, read to the end, check every message, print COUNT BYTES
//   mutex-add NAME COUNT        COUNT times: lock the mutex at 0, add 1 to the Int at 64, unlock
//   mutex-hold NAME             lock the mutex at 0, print `ok locked`, wait to be killed
//   rw NAME read|write COUNT MICROSECONDS
//                               COUNT times hold the read-write lock at 0 that long; count overlapping readers
//                               at 128 (their maximum at 136) and readers or writers seen inside a write at 152
//   resize NAME SIZE            open read-write and resize
//   create-hold NAME SIZE HEX [process]
//                               create (with a process lifetime if asked), write HEX at 0, print `ok`, wait to
//                               be killed
//   load PREFIX SECONDS COUNTER for SECONDS, over and over on every backend: openOrCreate (create for anonymous
//                               and memfd), write, grow (posix and file, one name in four), remove and detach
//                               regions from a small pool of names shared with other loaders (PREFIX),
//                               adding 1 to the atomic Int at 64 in region COUNTER per operation; prints
//                               `ok OPERATIONS EXPECTED-ERRORS [DISPLACED...]` (see race-remove) or the first
//                               unexpected error
//   ring-serve NAME             attach as a ring's sender, send `hello`, print `ok sent`, and wait to be killed
//                               without touching the sender again
//   ring-wait NAME MILLISECONDS wait that long for a ring to be formatted at 0, attach as its receiver and print
//                               the first message
//   chown NAME UID GID          open and give the region to UID and GID (System V: IPC_SET, the creator keeps
//                               its rights)
//   race-replace NAME SECONDS SIZE [STOPFILE]
//                               for SECONDS (and then, given STOPFILE, until that file exists: at most 120 s), over
//                               and over: unlink whatever the name holds (raw unlink), create a region of SIZE under
//                               it, and check a moment later that it still has its name; prints `ok ROUNDS LOST`,
//                               LOST being successors some other process unlinked
//   race-remove NAME SECONDS SIZE [ROUNDS]
//                               for SECONDS (and then until it has made ROUNDS tries: at most 120 s), over and over:
//                               create a region of SIZE under the name and remove it (remove() of the attachment); a
//                               create that fails (the name is taken, or the file system is full) backs out; prints
//                               `ok ROUNDS CREATED [DISPLACED...]`, DISPLACED the names a successor was left under
//                               when a third object took the name at once. (A count, not only a time: on a busy
//                               machine 4 s held 80 tries, too few to say the race was run.)
//   wait-policy -               print `ok CPUS WAKEUP BUDGET`: what the adaptive wait decides in this process (run
//                               it under `taskset` to give it fewer CPUs)
//   event-wait NAME MILLISECONDS
//                               wait for the event at 0: prints `ok signaled` or `ok timeout`
//
// --uid drops to that user (and group) before anything else, so permission checks apply even when the tests
// run as root; --umask sets the umask first.

import Atomics
import Glibc
@_spi(Tools) import SharedMemory
import SystemPackage

func fail(_ text: String) -> Never {
    print("usage \(text)")
    exit(2)
}

var arguments = Array(CommandLine.arguments.dropFirst())
while let flag = arguments.first, flag.hasPrefix("--") {
    guard arguments.count >= 2 else { fail("\(flag) needs a value") }
    let value = arguments[1]
    arguments.removeFirst(2)
    switch flag {
    case "--uid":
        guard let uid = UInt32(value) else { fail("bad uid \(value)") }
        guard setgroups(0, nil) == 0, setgid(uid) == 0, setuid(uid) == 0 else { fail("cannot become uid \(uid)") }
    case "--umask":
        guard let mask = mode_t(value, radix: 8) else { fail("bad umask \(value)") }
        umask(mask)
    default:
        fail("unknown flag \(flag)")
    }
}
guard arguments.count >= 2 else { fail("OPERATION NAME ...") }

if arguments[0] == "load" {
    load(prefix: arguments[1], seconds: Double(arguments[2])!, counter: arguments[3])
    exit(0)
}

if arguments[0] == "wait-policy" {
    print("ok \(WaitPolicy.cpus) \(WaitPolicy.wakeUpCost) \(WaitPolicy.currentBudget())")
    exit(0)
}

if arguments[0] == "receive" {
    receive(access: access(arguments[1]), Array(arguments.dropFirst(2)))
    exit(0)
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

func bytes(fromHex text: String) -> [UInt8] {
    var result: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        result.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return result
}

/// A region by name; for a memfd: name, the region that arrives over the Unix socket on standard input.
func attach(_ name: RegionName) throws(SharedMemoryError) -> AnyRegion {
    if name.backend == .memfd { return try SharedMemory.receive(from: FileDescriptor(rawValue: 0)) }
    return try SharedMemory.open(name)
}

/// Tells the parent `line`, then keeps `region` attached until the process is killed.
func holdUntilKilled(_ region: consuming some SharedRegion & ~Copyable, saying line: String) -> Never {
    print(line)
    fflush(nil)
    while true {
        pause()
        _ = region.size  // keeps the region attached to the end
    }
}

func access(_ text: String) -> Access { text == "ro" ? .readOnly : .readWrite }

func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count - 3  // ".", "..", and the directory's own descriptor
}

func answer(_ body: () throws(SharedMemoryError) -> String) {
    do {
        let result = try body()
        print(result.isEmpty ? "ok" : "ok \(result)")
    } catch {
        print("error \(error.code.rawValue) \(error)")
    }
}

func system(_ result: Int32) -> String { result == 0 ? "ok" : "error errno \(errno)" }

func receive(access: Access, _ actions: [String]) {
    let before = openDescriptors()
    do {
        var options = ReceiveOptions(access: access)
        var actions = actions
        if let first = actions.first, let list = first.dropPrefix("seals=") {
            let names: [String: Seals] = ["seal": .seal, "shrink": .shrink, "grow": .grow, "write": .write, "futureWrite": .futureWrite]
            options.requiredSeals = Seals(list.split(separator: ",").map { names[String($0)]! })
            actions.removeFirst()
        }
        var region = try SharedMemory.receive(from: FileDescriptor(rawValue: 0), options: options)
        print("ok \(region.backend) \(region.size)")
        for action in actions {
            let parts = action.split(separator: ":").map(String.init)
            switch parts[0] {
            case "read": answer { () throws(SharedMemoryError) in hex(try region.get(count: Int(parts[2])!, at: Int(parts[1])!)) }
            case "write": answer { () throws(SharedMemoryError) in try region.set(bytes: bytes(fromHex: parts[2]), at: Int(parts[1])!); return "" }
            case "resize": answer { () throws(SharedMemoryError) in try region.resize(to: Int(parts[1])!); return "" }
            case "truncate": print(system(ftruncate(region.fileDescriptor!.rawValue, off_t(parts[1])!)))
            case "mprotect-write":
                let base = region.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
                print(system(mprotect(base, region.size, PROT_READ | PROT_WRITE)))
            default: fail("unknown action \(action)")
            }
        }
    } catch {
        print("error \(error.code.rawValue) \(error)")
    }
    print("fds \(before) \(openDescriptors())")
}

extension String {
    func dropPrefix(_ prefix: String) -> Substring? { hasPrefix(prefix) ? dropFirst(prefix.count) : nil }
}

func run(_ operation: String, _ name: RegionName, _ rest: [String]) throws(SharedMemoryError) -> String {
    switch operation {
    case "create":
        let mode = rest.count > 1 ? CModeT(rest[1], radix: 8)! : 0o600
        let lifetime: Lifetime = rest.count > 2 && rest[2] == "process" ? .process : .persistent
        let region = try SharedMemory.create(name, size: Int(rest[0])!, options: .init(permissions: FilePermissions(rawValue: mode), lifetime: lifetime))
        return "\(region.size)"
    case "open":
        let region = try SharedMemory.open(name, options: .init(access: access(rest[0])))
        return "\(region.size)"
    case "read":
        let region = try SharedMemory.open(name, options: .init(access: .readOnly))
        return hex(try region.get(count: Int(rest[1])!, at: Int(rest[0])!))
    case "write":
        let region = try SharedMemory.open(name)
        try region.set(bytes: bytes(fromHex: rest[1]), at: Int(rest[0])!)
        return ""
    case "remove":
        try SharedMemory.remove(name)
        return ""
    case "ring-format":
        // ring-format NAME CAPACITY (for shm inspect's examples and tests)
        return "\(try MessageRing.format(try attach(name), capacity: Int(rest[0])!))"
    case "rr-format":
        // rr-format NAME MAXREQUEST MAXRESPONSE CLIENTS DEPTH
        try RequestResponse.format(try attach(name), maxRequest: Int(rest[0])!, maxResponse: Int(rest[1])!, clients: Int(rest[2])!, depth: Int(rest[3])!)
        return ""
    case "ring-send":
        // ring-send NAME BYTES [interop]: with `interop`, the pattern the C and Python peers use (Interop/).
        let sender = try RingSender(try attach(name))
        let total = Int(rest[0])!, interop = rest.count > 1 && rest[1] == "interop"
        var index = 0, sent = 0
        while total == 0 || sent < total {
            let size = interop ? InteropMessages.size(index, limit: sender.maxMessage) : RingMessages.size(index, limit: sender.maxMessage)
            try sender.sendUnsafe(count: size) { interop ? InteropMessages.fill($0, index: index) : RingMessages.fill($0, index: index) }
            sent += size
            index += 1
        }
        sender.finish()
        return "\(index) \(sent)"
    case "ring-receive":
        let receiver = try RingReceiver(try attach(name))
        let interop = rest.first == "interop"
        var index = 0, received = 0
        let limit = receiver.maxMessage
        while let ok = try receiver.receiveUnsafe({
            interop ? InteropMessages.check($0, index: index, limit: limit) : RingMessages.check($0, index: index, limit: limit)
        }) {
            guard ok else { return "bad message \(index)" }
            received += RingMessages.size(index, limit: limit)
            index += 1
        }
        return "\(index) \(received)"
    case "mutex-add":
        let region = try SharedMemory.open(name)
        let mutex = try ProcessMutex.existing(in: region, at: 0)
        let counter = try region.atomic(Int.self, at: 64)  // read and written plainly, under the lock
        for _ in 0..<Int(rest[0])! {
            _ = try mutex.lock()
            counter.store(counter.load(ordering: .relaxed) + 1, ordering: .relaxed)
            try mutex.unlock()
        }
        return ""
    case "mutex-hold":
        let region = try SharedMemory.open(name)
        _ = try ProcessMutex.existing(in: region, at: 0).lock()
        holdUntilKilled(region, saying: "ok locked")
    case "rw":
        let region = try SharedMemory.open(name)
        let lock = try ProcessRWLock.existing(in: region, at: 0)
        let readers = try region.atomic(Int.self, at: 128), most = try region.atomic(Int.self, at: 136)
        let writers = try region.atomic(Int.self, at: 144), violations = try region.atomic(Int.self, at: 152)
        let hold = UInt32(rest[2])!
        for _ in 0..<Int(rest[1])! {
            if rest[0] == "read" {
                try lock.lockRead()
                let inside = readers.wrappingIncrementThenLoad(ordering: .sequentiallyConsistent)
                var seen = most.load(ordering: .relaxed)
                while inside > seen, !most.compareExchange(expected: seen, desired: inside, ordering: .relaxed).exchanged {
                    seen = most.load(ordering: .relaxed)
                }
                if writers.load(ordering: .sequentiallyConsistent) != 0 { violations.wrappingIncrement(ordering: .relaxed) }
                usleep(hold)
                readers.wrappingDecrement(ordering: .sequentiallyConsistent)
            } else {
                try lock.lockWrite()
                if writers.wrappingIncrementThenLoad(ordering: .sequentiallyConsistent) != 1 { violations.wrappingIncrement(ordering: .relaxed) }
                if readers.load(ordering: .sequentiallyConsistent) != 0 { violations.wrappingIncrement(ordering: .relaxed) }
                usleep(hold)
                writers.wrappingDecrement(ordering: .sequentiallyConsistent)
            }
            try lock.unlock()
            usleep(50)
        }
        return ""
    case "resize":
        var region = try SharedMemory.open(name)
        try region.resize(to: Int(rest[0])!)
        return "\(region.size)"
    case "create-hold":
        let lifetime: Lifetime = rest.count > 2 && rest[2] == "process" ? .process : .persistent
        let region = try SharedMemory.create(name, size: Int(rest[0])!, options: .init(lifetime: lifetime))
        try region.set(bytes: bytes(fromHex: rest[1]), at: 0)
        holdUntilKilled(region, saying: "ok")
    case "event-wait":
        let region = try SharedMemory.open(name)
        let event = try ProcessEvent.existing(in: region, at: 0)
        do {
            try event.wait(timeout: .milliseconds(Int(rest[0])!))
            return "signaled"
        } catch where error.code == .timedOut {
            return "timeout"
        }
    case "ring-serve":
        // The handle is not used after the send: a handle's lifetime must not end the stream.
        let sender = try RingSender(try SharedMemory.open(name))
        try sender.send(Array("hello".utf8))
        print("ok sent")
        fflush(nil)
        while true { pause() }
    case "ring-wait":
        let region = try SharedMemory.open(name)
        try MessageRing.waitUntilFormatted(region, timeout: .milliseconds(Int(rest[0])!))
        let receiver = try RingReceiver(region)
        return String(decoding: try receiver.receive(timeout: .seconds(10)) ?? [], as: UTF8.self)
    case "chown":
        let region = try SharedMemory.open(name)
        try region.setOwner(uid: UInt32(rest[0])!, gid: UInt32(rest[1])!)
        return ""
    case "race-replace":
        let path = name.description.dropPrefix("posix:").map { "/dev/shm" + $0 } ?? String(name.description.dropFirst("file:".count))
        let deadline = ContinuousClock.now + .milliseconds(Int(Double(rest[0])! * 1000)), limit = ContinuousClock.now + .seconds(120)
        let stop = rest.count > 2 ? rest[2] : nil
        var rounds = 0, lost = 0
        while ContinuousClock.now < deadline || (stop.map { access($0, F_OK) != 0 } ?? false && ContinuousClock.now < limit) {
            unlink(path)
            rounds += 1
            guard let region = try? SharedMemory.create(name, size: Int(rest[1])!) else { continue }
            let moment = ContinuousClock.now + .microseconds(20)
            while ContinuousClock.now < moment {}  // the window in which a wrongful unlink would land
            var status = stat()
            fstat(region.fileDescriptor!.rawValue, &status)
            if status.st_nlink == 0 { lost += 1 }  // only this process unlinks, and it has not yet
        }
        return "\(rounds) \(lost)"
    case "race-remove":
        let deadline = ContinuousClock.now + .milliseconds(Int(Double(rest[0])! * 1000)), limit = ContinuousClock.now + .seconds(120)
        let least = rest.count > 2 ? Int(rest[2])! : 0
        var rounds = 0, created = 0, displaced: [String] = []
        while ContinuousClock.now < deadline || (rounds < least && ContinuousClock.now < limit) {
            rounds += 1
            do {
                let region = try SharedMemory.create(name, size: Int(rest[1])!)
                created += 1
                try region.remove()
            } catch where error.code == .removed && error.reason.contains("is now .sm-removing-") {
                // The documented limit: a successor, then a third object, took the name in the instant between.
                displaced.append(String(error.reason.split(separator: " ").last { $0.hasPrefix(".sm-removing-") }!))
            } catch where [.alreadyExists, .noSpace, .removed, .notFound].contains(error.code) {
                continue
            }
        }
        return "\(rounds) \(created)" + displaced.map { " " + $0 }.joined()
    case "hold":
        let region = try SharedMemory.open(name, options: .init(access: access(rest[0])))
        print("ok \(region.size)")
        fflush(nil)
        while readLine() != nil {}
        return "released"
    default:
        if let result = try heapProbe(operation, name, rest) { return result }
        do {
            if let result = try pubSubProbe(operation, name, rest) { return result }
            if let result = try requestResponseProbe(operation, name, rest) { return result }
            if let result = try asyncProbe(operation, name, rest) { return result }
        } catch let error as SharedMemoryError {
            throw error
        } catch {
            fail("\(error)")
        }
        fail("unknown operation \(operation)")
    }
}

do {
    let name = try RegionName(arguments[1])
    let result = try run(arguments[0], name, Array(arguments.dropFirst(2)))
    print(result.isEmpty ? "ok" : "ok \(result)")
} catch {
    print("error \(error.code.rawValue) \(error)")
}

/// The messages of the ring tests: message `index` has a size that cycles through 0 to 64 KiB, and holds its
/// index followed by words computed from it, so the receiver can check order and every byte.
enum RingMessages {
    static let sizes = [0, 8, 24, 104, 4096, 65536, 784, 16]

    static func size(_ index: Int, limit: Int) -> Int { min(limit, sizes[index % sizes.count]) & ~7 }

    static func word(_ index: Int, _ i: Int) -> UInt64 {
        var x = UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i)
        x ^= x >> 31
        return x &* 0xBF58_476D_1CE4_E5B9
    }

    static func fill(_ buffer: UnsafeMutableRawBufferPointer, index: Int) {
        let words = buffer.count / 8
        guard words > 0 else { return }
        buffer.storeBytes(of: UInt64(index), toByteOffset: 0, as: UInt64.self)
        for i in 1..<max(1, words) { buffer.storeBytes(of: word(index, i), toByteOffset: i * 8, as: UInt64.self) }
    }

    static func check(_ buffer: UnsafeRawBufferPointer, index: Int, limit: Int) -> Bool {
        guard buffer.count == size(index, limit: limit) else { return false }
        let words = buffer.count / 8
        guard words > 0 else { return true }
        guard buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == UInt64(index) else { return false }
        for i in 1..<max(1, words) where buffer.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != word(index, i) { return false }
        return true
    }
}

/// The messages the C and Python peers in Interop/ send and check: message i has `RingMessages.sizes[i % 8]` bytes
/// (at most the ring's largest message, rounded down to 8), and byte j of it is (i + j) % 251.
enum InteropMessages {
    static func size(_ index: Int, limit: Int) -> Int { RingMessages.size(index, limit: limit) }

    static func fill(_ buffer: UnsafeMutableRawBufferPointer, index: Int) {
        for j in 0..<buffer.count { buffer[j] = UInt8((index + j) % 251) }
    }

    static func check(_ buffer: UnsafeRawBufferPointer, index: Int, limit: Int) -> Bool {
        guard buffer.count == size(index, limit: limit) else { return false }
        for j in 0..<buffer.count where buffer[j] != UInt8((index + j) % 251) { return false }
        return true
    }
}

/// The load test's loop: churn regions with names shared between processes, and count every operation in a
/// shared atomic counter. alreadyExists and notFound are expected (another loader got there first); anything
/// else is reported.
func load(prefix: String, seconds: Double, counter: String) {
    do {
        let total = try SharedMemory.open(try RegionName(counter))
        let count = try total.atomic(Int.self, at: 64)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var operations = 0, expected = 0, displaced: [String] = []
        var generator = SystemRandomNumberGenerator()
        let backends: [Backend] = [.systemV, .posix, .file, .anonymous, .memfd]
        while ContinuousClock.now < deadline {
            let backend = backends[Int(generator.next() % UInt64(backends.count))]
            let slot = Int(generator.next() % 4)
            let name: RegionName
            switch backend {
            case .systemV: name = try .systemV(key: Int32(bitPattern: 0x5a00_0000 | (stableHash(prefix) & 0xfff) << 8 | UInt32(slot)))
            case .posix: name = try .posix("/\(prefix)-\(slot)")
            case .file: name = try .file(FilePath("/tmp/\(prefix)-\(slot)"))
            case .anonymous: name = .anonymous
            case .memfd: name = try .memfd(prefix)
            }
            do {
                if backend.capabilities.contains(.named) {
                    try churn(try SharedMemory.openOrCreate(name, size: 4096), remove: true, resize: slot == 0 && backend != .systemV)
                } else {
                    try churn(try SharedMemory.create(name, size: 4096), remove: false, resize: false)
                }
            } catch where error.code == .removed && error.reason.contains("is now .sm-removing-") {
                displaced.append(String(error.reason.split(separator: " ").last { $0.hasPrefix(".sm-removing-") }!))
            } catch where [.notFound, .removed].contains(error.code) {
                expected += 1  // another loader removed it first (notFound), or removed it and made another (removed)
            }
            count.wrappingIncrement(ordering: .relaxed)
            operations += 1
        }
        print("ok \(operations) \(expected)" + displaced.map { " " + $0 }.joined())
    } catch {
        print("error \(error.code.rawValue) \(error)")
    }
}

/// FNV-1a: the same in every process (Swift's hashValue is seeded per process).
func stableHash(_ text: String) -> UInt32 {
    text.utf8.reduce(2_166_136_261) { ($0 ^ UInt32($1)) &* 16_777_619 }
}

/// Writes and reads a region, grows it if asked, removes its name if asked, and detaches it.
func churn(_ region: consuming some SharedRegion & ~Copyable, remove: Bool, resize: Bool) throws(SharedMemoryError) {
    try region.set(UInt64(getpid()), at: 8)
    _ = try region.get(UInt64.self, at: 8)
    if resize { try region.resize(to: region.size + 4096) }
    if remove { try region.remove() }
    try region.detach()
}
