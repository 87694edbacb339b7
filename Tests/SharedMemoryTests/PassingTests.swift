import Foundation
import SystemPackage
import Testing
@testable import SharedMemory

/// Sending regions to other processes over Unix sockets, and what a receiver can demand.
@Suite("Passing regions")
struct PassingTests {
    static let passable = Backend.allCases.filter { $0.capabilities.contains(.descriptorPassing) }

    @Test("a region sent to another process arrives as the right backend and size, and both sides see each other's bytes", arguments: passable)
    func sendAndReceive(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 12288)
            try region.set(bytes: Array("hello".utf8), at: 0)
            let answers = try Probe.receive(["rw", "read:0:5", "write:100:cafe"]) { socket in try region.send(over: socket) }
            #expect(answers.count == 4)
            #expect(answers.first == "ok \(backend) 12288")
            #expect(answers.dropFirst().first == "ok 68656c6c6f")
            #expect(answers.dropFirst(2).first == "ok")
            #expect(try region.get(count: 2, at: 100) == [0xca, 0xfe])
            let fds = try #require(answers.last?.split(separator: " "))
            #expect(fds.count == 3 && fds[1] == fds[2], "the probe leaked descriptors: \(answers.last!)")
        }
    }

    @Test("read-only sharing is enforced by the kernel, not by convention", arguments: passable)
    func readOnlySharing(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            try region.set(bytes: [7], at: 0)
            let refused = try Probe.receive(["rw"]) { socket in try region.send(over: socket, access: .readOnly) }
            #expect(refused.first?.hasPrefix("error readOnly") == true)
            let answers = try Probe.receive(["ro", "read:0:1", "write:0:01", "mprotect-write", "truncate:1"]) { socket in
                try region.send(over: socket, access: .readOnly)
            }
            #expect(answers.first == "ok \(backend) 4096")
            #expect(answers.dropFirst().first == "ok 07")
            #expect(answers.dropFirst(2).first?.hasPrefix("error readOnly") == true)
            #expect(answers.dropFirst(3).first == "error errno \(EACCES)")  // no write permission can be added
            #expect(answers.dropFirst(4).first?.hasPrefix("error errno") == true)  // nor can it be resized
            #expect(try region.get(count: 1, at: 0) == [7])
            #expect(region.size == 4096)
        }
    }

    @Test("a memfd sealed with futureWrite: the creator keeps writing, every receiver can only read")
    func futureWriteSeal() throws {
        let region = try MemfdRegion.create(try .memfd("future-write"), size: 4096)
        try region.addSeals([.futureWrite])
        try region.set(bytes: Array("after the seal".utf8), at: 0)
        let refused = try Probe.receive(["rw"]) { socket in try region.send(over: socket) }
        #expect(refused.first?.hasPrefix("error sealed") == true)
        let answers = try Probe.receive(["ro", "read:0:5", "mprotect-write"]) { socket in try region.send(over: socket) }
        #expect(answers.first == "ok memfd 4096")
        #expect(answers.dropFirst().first == "ok 6166746572")
        #expect(answers.dropFirst(2).first == "error errno \(EACCES)")  // the mapping may never become writable
    }

    @Test("a region sealed against shrinking cannot be shrunk by a peer, so the reader never gets SIGBUS")
    func shrinkSealProtectsReaders() throws {
        let region = try MemfdRegion.create(try .memfd("no-shrink"), size: 3 * 4096)
        try region.set(bytes: [0xEE], at: 3 * 4096 - 1)
        try region.addSeals([.shrink, .seal])
        let answers = try Probe.receive(["rw", "seals=shrink", "resize:100", "truncate:100", "resize:16384"]) { socket in
            try region.send(over: socket)
        }
        #expect(answers.first == "ok memfd 12288")
        #expect(answers.dropFirst().first?.hasPrefix("error sealed") == true)
        #expect(answers.dropFirst(2).first == "error errno \(EPERM)")
        #expect(answers.dropFirst(3).first == "ok")  // growing is still allowed
        // This reader's last byte is still there: no SIGBUS.
        #expect(try region.get(count: 1, at: 3 * 4096 - 1) == [0xEE])
        expectError(.sealed) { try region.addSeals([.grow]) }
        #expect(try region.seals.isSuperset(of: [.shrink, .seal]))
    }

    @Test("without seals, a peer that shrinks a region makes readers past the new end SIGBUS")
    func unsealedShrinkIsSIGBUS() async {
        await #expect(processExitsWith: .signal(SIGBUS)) {
            var region = try MemfdRegion.create(try .memfd("unsealed"), size: 3 * 4096)
            let reader = try attachAgain(region)
            try region.resize(to: 4096)  // the other attachment still maps three pages
            _ = reader.withUnsafeBytes { $0[3 * 4096 - 1] }
        }
    }

    @Test("the receiver refuses what it did not ask for, and closes it")
    func refusals() throws {
        let unsealed = try MemfdRegion.create(try .memfd("unsealed"), size: 4096)
        var answers = try Probe.receive(["rw", "seals=shrink"]) { socket in try unsealed.send(over: socket) }
        #expect(answers.first?.hasPrefix("error foreign") == true)
        #expect(answers.first?.contains("lacks required seals") == true)
        var fds = answers.last!.split(separator: " ")
        #expect(fds[1] == fds[2])

        // A message without a descriptor, and a descriptor that is not a region.
        answers = try Probe.receive(["rw"]) { socket in
            _ = try socket.writeAll(Array("SMR\u{1}".utf8))
        }
        #expect(answers.first?.hasPrefix("error foreign") == true)
        answers = try Probe.receive(["rw"]) { socket in
            let null = try FileDescriptor.open("/dev/null", .readWrite)
            defer { try? null.close() }
            try Syscalls.sendDescriptor(socket.rawValue, null.rawValue, Array("SMR\u{1}".utf8), nil)
        }
        #expect(answers.first?.hasPrefix("error foreign") == true)
        fds = answers.last!.split(separator: " ")
        #expect(fds[1] == fds[2])
        answers = try Probe.receive(["rw"]) { _ in }  // closed without sending
        #expect(answers.first?.hasPrefix("error notFound") == true)

        // sysv and anonymous regions have no descriptor to send.
        let (a, b) = try socketPair()
        defer { try? a.close(); try? b.close() }
        let anonymous = try SharedMemory.create(.anonymous, size: 4096)
        expectError(.unsupported) { try anonymous.send(over: a) }
    }

    @Test("sending and receiving leaves no descriptor of the region open")
    func noDescriptorLeaks() async {
        // In a process of its own. Every descriptor of the memfd (the original, the read-only one made for
        // sending, the received ones, a refused one) shows in /proc/self/fd as /memfd:leak-check: none may remain.
        await #expect(processExitsWith: .success) {
            do {
                let (a, b) = try socketPair()
                let region = try MemfdRegion.create(try .memfd("leak-check"), size: 4096)
                for access in [Access.readWrite, .readOnly] {
                    try region.send(over: a, access: access)
                    let received = try SharedMemory.receive(from: b, options: .init(access: access))
                    try received.detach()
                }
                try region.send(over: a)
                _ = try? SharedMemory.receive(from: b, options: .init(requiredSeals: [.shrink]))  // refused
                if openDescriptors(matching: "leak-check") != 1 { exit(2) }  // only the region's own
                try region.detach()
                try a.close()
                try b.close()
            }
            exit(openDescriptors(matching: "leak-check") == 0 ? 0 : 1)
        }
    }
}

/// How many of this process's descriptors lead to something whose name contains `text`.
func openDescriptors(matching text: String) -> Int {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return entries.filter { ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) ?? "").contains(text) }.count
}
