// RegionProbe: the second process in SharedMemory's tests. It opens regions by name with the library, in a
// process of its own, and answers on one line: `ok [RESULT]` or `error CODE DESCRIPTION`.
//
//   RegionProbe [--uid UID] [--umask OCTAL] OPERATION ARGUMENTS...
//
//   create NAME SIZE [MODE]     create exclusively (mode in octal, default 0600)
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
//
// --uid drops to that user (and group) before anything else, so permission checks apply even when the tests
// run as root; --umask sets the umask first.

import Glibc
import SharedMemory
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
        let region = try SharedMemory.receive(from: FileDescriptor(rawValue: 0), options: options)
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
        let region = try SharedMemory.create(name, size: Int(rest[0])!, options: .init(permissions: FilePermissions(rawValue: mode)))
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
    case "hold":
        let region = try SharedMemory.open(name, options: .init(access: access(rest[0])))
        print("ok \(region.size)")
        fflush(nil)
        while readLine() != nil {}
        return "released"
    default:
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
