import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// The ring as a wire format (Docs/WireFormat.md): the committed test images, and a C process built against
/// Interop/c/smring.h on the other side of a Swift one. (The Python package's tests run under pytest in .ci/run.)
@Suite("The ring's wire format, in Swift and C")
struct InteropRingTests {
    static let interop = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Interop").path

    /// What expected.txt says of each image: its name, `open`, `finished` or `foreign`, and the messages.
    static func vectors() throws -> [Vector] {
        var vectors: [Vector] = []
        for line in try String(contentsOfFile: interop + "/vectors/expected.txt", encoding: .utf8).split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            var messages: [[UInt8]] = []
            for hex in fields.dropFirst(2) {
                var bytes: [UInt8] = []
                var rest = Substring(hex == "-" ? "" : hex)
                while !rest.isEmpty {
                    bytes.append(UInt8(rest.prefix(2), radix: 16)!)
                    rest = rest.dropFirst(2)
                }
                messages.append(bytes)
            }
            vectors.append(Vector(name: fields[0], verdict: fields[1], messages: messages))
        }
        return vectors
    }

    struct Vector {
        var name: String
        var verdict: String
        var messages: [[UInt8]]
    }

    @Test("every test image reads as expected.txt says")
    func wireVectors() throws {
        let vectors = try Self.vectors()
        #expect(vectors.count >= 17)
        for vector in vectors {
            let image = try Data(contentsOf: URL(fileURLWithPath: Self.interop + "/vectors/\(vector.name).ring"))
            let (verdict, received) = try Self.read(image)
            #expect(verdict == vector.verdict, "\(vector.name)")
            if vector.verdict != "foreign" { #expect(received == vector.messages, "\(vector.name)") }
        }
    }

    /// What a receiver makes of a ring image: `open`, `finished` or `foreign`, and the messages it read.
    static func read(_ image: Data) throws -> (String, [[UInt8]]) {
        let region = try SharedMemory.create(.anonymous, size: image.count)
        try region.set(bytes: image, at: 0)
        var received: [[UInt8]] = []
        do {
            let finished = try drain(region, into: &received)
            return (finished ? "finished" : "open", received)
        } catch {
            guard error.code == .foreign else { throw error }
            return ("foreign", received)
        }
    }

    /// Receives every message there is now into `received`; whether the stream is over.
    static func drain(_ region: borrowing AnyRegion, into received: inout [[UInt8]]) throws(SharedMemoryError) -> Bool {
        let receiver = try RingReceiver(region)
        while let message = try receiver.tryReceive() { received.append(message) }
        return receiver.isFinished
    }

    /// Builds a C program from Interop/c with the system's cc into `directory`.
    static func compile(_ source: String, in directory: String) throws -> String {
        let binary = directory + "/" + source.replacingOccurrences(of: ".c", with: "")
        let result = try ChildProcess.run("/usr/bin/cc", ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o", binary, interop + "/c/" + source, "-lrt"])
        try #require(result.status == 0, "cc \(source): \(result.error)")
        return binary
    }

    static func withDirectory<R>(_ body: (String) throws -> R) throws -> R {
        let directory = "/tmp/smtest-\(getpid())-interop-\(UInt32.random(in: 0...0xffff_ffff))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try body(directory)
    }

    @Test("the C header reads every test image as expected.txt says, also under AddressSanitizer and UBSan")
    func cVectors() throws {
        try Self.runCImageTest("test_smring.c")
    }

    /// Builds the C image reader `source` (Interop/c) as it is and with AddressSanitizer and UBSan, and runs each on
    /// Interop/vectors: both must agree with every image.
    static func runCImageTest(_ source: String) throws {
        try withDirectory { directory in
            let test = try compile(source, in: directory)
            let result = try ChildProcess.run(test, [interop + "/vectors"])
            #expect(result.status == 0, "\(result.output)\(result.error)")
            let checked = test + "_checked"
            let build = try ChildProcess.run("/usr/bin/cc", ["-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                                                             "-o", checked, interop + "/c/" + source, "-lrt"])
            try #require(build.status == 0, "\(build.error)")
            let sanitized = try ChildProcess.run(checked, [interop + "/vectors"])
            #expect(sanitized.status == 0, "\(sanitized.output)\(sanitized.error)")
        }
    }

    @Test("64 MiB each way between a Swift process and a C one, every byte checked; a C receiver sees the Swift sender die")
    func cStreams() throws {
        try Self.withDirectory { directory in
            let peer = try Self.compile("smring_peer.c", in: directory)
            try Names.with(.posix) { name in
                guard case .posix(let object) = name.location else { return }
                let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 20))
                let total = 64 << 20
                // Swift sends, C receives.
                try MessageRing.format(region)
                let receiver = try ChildProcess(peer, ["receive", object])
                let sent = try Probe.run(["ring-send", name.description, "\(total)", "interop"])
                #expect(receiver.finish().lastLine == sent.dropFirst("ok ".count).description, "\(sent)")
                // C sends, Swift receives.
                try MessageRing.format(region)
                let received = try Probe.start(["ring-receive", name.description, "interop"])
                let cSent = try ChildProcess.run(peer, ["send", object, "\(total)"])
                #expect(cSent.status == 0, "\(cSent.output)")
                #expect(received.finish().lastLine == "ok " + cSent.lastLine)
                // A Swift sender killed mid-stream: the C receiver reads what was sent, then says peerDied.
                try MessageRing.format(region)
                let dying = try ChildProcess(peer, ["receive", object])
                let sender = try Probe.start(["ring-send", name.description, "0", "interop"])
                usleep(200_000)
                sender.kill()
                let ended = ContinuousClock.now
                let result = dying.finish()
                #expect(result.status == 3 && result.lastLine.hasPrefix("peerDied"), "\(result.output)")
                #expect(ContinuousClock.now - ended < .seconds(2))
            }
        }
    }
}
