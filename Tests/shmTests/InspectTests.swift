import Foundation
import SharedMemory
import TestSupport
import Testing

/// `shm inspect` against every format, a foreign header, a dead participant, `--json`'s schema, and `--watch` in a
/// terminal.
@Suite("shm inspect")
struct InspectTests {
    static let probe = URL(fileURLWithPath: Shm.path).deletingLastPathComponent().appendingPathComponent("RegionProbe").path

    /// The keys of `--json`'s top level and of a participant (Docs/CLI.md, "shm inspect"): a change is a change there.
    static let documentKeys: Set<String> = ["region", "format", "offset", "version", "problem", "facts", "participants", "objects", "notes"]
    static let participantKeys: Set<String> = ["role", "slot", "pid", "alive", "state", "holds"]

    static func json(_ arguments: [String]) throws -> (status: Int32, document: [String: Any]) {
        let result = try Shm.run(["inspect"] + arguments + ["--json"])
        let document = try #require(try JSONSerialization.jsonObject(with: result.outputBytes) as? [String: Any], "\(result.output) \(result.error)")
        #expect(Set(document.keys) == documentKeys)
        for participant in document["participants"] as? [[String: Any]] ?? [] { #expect(Set(participant.keys) == participantKeys) }
        return (result.status, document)
    }

    @Test("a ring: its configuration, what is queued, and the sender")
    func ring() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 1 << 16))
            try MessageRing.format(region, capacity: 1 << 16)
            let sender = try RingSender(region)
            for message in ["one", "two", "three"] { try sender.send(Array(message.utf8)) }
            let result = try Shm.run(["inspect", text])
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.contains("\(text) at offset 0: message ring, format 1.0"))
            #expect(result.output.contains("queued messages  3"), "\(result.output)")
            #expect(result.output.contains("sender"), "\(result.output)")
            let (status, document) = try Self.json([text])
            #expect(status == 0)
            #expect(document["format"] as? String == "ring" && document["region"] as? String == text)
            let facts = try #require(document["facts"] as? [String: Any])
            #expect(facts["capacity"] as? Int == 1 << 16 && facts["queuedMessages"] as? Int == 3 && facts["finished"] as? Bool == false)
            let participants = try #require(document["participants"] as? [[String: Any]])
            #expect(participants.count == 1 && participants[0]["role"] as? String == "sender")
            #expect(participants[0]["pid"] as? Int == Int(getpid()) && participants[0]["alive"] as? Bool == true)
            sender.close()
        }
    }

    @Test("a publish/subscribe service with a dead subscriber: the slot, its pid, and that it is gone")
    func deadSubscriber() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            let region = try SharedMemory.create(name, size: PublishSubscribe.size(maxPayload: 256, subscribers: 2, queueDepth: 4))
            try PublishSubscribe.format(region, maxPayload: 256, subscribers: 2, queueDepth: 4)
            let publisher = try Publisher(region)
            let subscriber = try ChildProcess(Self.probe, ["ps-subscribe", text, "0", "hold"])
            #expect(subscriber.line() == "ok connected")
            _ = try publisher.publish(count: 64) { for _ in 0..<64 { $0.append(7 as UInt8) } }
            #expect(subscriber.line() == "ok holding")
            _ = try publisher.publish(count: 64) { for _ in 0..<64 { $0.append(8 as UInt8) } }
            let dead = subscriber.pid
            subscriber.kill()
            _ = subscriber.finish()
            let result = try Shm.run(["inspect", text])
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.contains("publish/subscribe service, format 3.0"), "\(result.output)")
            #expect(result.output.contains("sample type        bytes"), "\(result.output)")
            let row = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("subscriber") }, "\(result.output)")
            #expect(row.contains("\(dead)") && row.contains("NO") && row.contains("connected") && row.contains("queued 1"), "\(row)")
            let (_, document) = try Self.json([text])
            #expect(document["format"] as? String == "publish-subscribe")
            #expect((document["facts"] as? [String: Any])?["sampleType"] as? String == "bytes")
            let participants = try #require(document["participants"] as? [[String: Any]])
            let entry = try #require(participants.first { $0["role"] as? String == "subscriber" })
            #expect(entry["pid"] as? Int == Int(dead) && entry["alive"] as? Bool == false && entry["slot"] as? Int == 0)
            let holds = try #require(entry["holds"] as? [String: Any])
            #expect(holds["queued"] as? Int == 1 && holds["reading"] as? Bool == true)
            #expect((document["facts"] as? [String: Any])?["published"] as? Int == 2)
            #expect(participants.contains { $0["role"] as? String == "publisher" && $0["alive"] as? Bool == true })
            publisher.finish()
        }
    }

    @Test("a request/response service: the server and a client's outstanding request")
    func requestResponse() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            let region = try SharedMemory.create(name, size: RequestResponse.size(maxRequest: 64, maxResponse: 64, clients: 2, depth: 2))
            try RequestResponse.format(region, maxRequest: 64, maxResponse: 64, clients: 2, depth: 2)
            let server = try Server(region)
            let client = try Client(region)
            _ = try client.send(count: 4) { for byte in "ping".utf8 { $0.append(byte) } }
            let (status, document) = try Self.json([text])
            #expect(status == 0 && document["format"] as? String == "request-response")
            let participants = try #require(document["participants"] as? [[String: Any]])
            #expect(participants.map { $0["role"] as? String } == ["server", "client"])
            let holds = try #require(participants.last?["holds"] as? [String: Any])
            #expect(holds["outstanding"] as? Int == 1 && holds["requestsUnread"] as? Int == 1)
            #expect((document["facts"] as? [String: Any])?["types"] as? String == "bytes")
            client.close()
            server.finish()
        }
        // A typed service says what its requests and responses are.
        try Names.with("posix") { text in
            let name = try RegionName(text)
            let region = try SharedMemory.create(name, size: RequestResponse.size(requestType: UInt64.self, responseType: Double.self, clients: 1, depth: 1))
            try RequestResponse.format(region, requestType: UInt64.self, responseType: Double.self, clients: 1, depth: 1)
            let (_, document) = try Self.json([text])
            #expect((document["facts"] as? [String: Any])?["types"] as? String == "typed: requests size 8, alignment 8; responses size 8, alignment 8")
        }
    }

    @Test("the lock's holder is read from glibc's futex word: a live thread, one that died, a lock that is lost")
    func lockHolder() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            let region = try SharedMemory.create(name, size: RequestResponse.size(maxRequest: 64, maxResponse: 64, clients: 1, depth: 1))
            try RequestResponse.format(region, maxRequest: 64, maxResponse: 64, clients: 1, depth: 1)
            func holder() throws -> (String?, [String]) {
                let (_, document) = try Self.json([text])
                return ((document["facts"] as? [String: Any])?["lockHeldBy"] as? String, document["notes"] as? [String] ?? [])
            }
            let lock = 128  // the service's robust mutex: its futex word, then (at 8) glibc's owner field
            #expect(try holder().0 == "nobody")
            let me = UInt32(getpid())  // the main thread's id is the pid
            try region.set(me, at: lock)
            #expect(try holder().0 == "thread \(me)")
            try region.set(UInt32(0x4000_0000), at: lock)  // FUTEX_OWNER_DIED: the kernel's mark for a dead owner
            let died = try holder()
            #expect(died.0 == "a thread that died" && died.1.contains { $0.contains("died holding the lock") }, "\(died)")
            try region.set(UInt32(0), at: lock)
            try region.set(Int32(0x7fff_fffe), at: lock + 8)  // glibc's PTHREAD_MUTEX_NOTRECOVERABLE
            let lost = try holder()
            #expect(lost.0 == "nobody (not recoverable)" && lost.1.contains { $0.contains("can never be locked again") }, "\(lost)")
        }
    }

    @Test("a heap: size, use, fragmentation, and its named objects with --objects")
    func heap() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 1 << 20))
            _ = try heap.construct("prices", repeating: 1.5, count: 4)
            let scratch = try heap.allocate(UInt64.self, count: 100)
            _ = try heap.allocate(UInt64.self, count: 100)
            try heap.deallocate(scratch)
            let result = try Shm.run(["inspect", text, "--objects"])
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.contains("heap, format 1.0") && result.output.contains("prices") && result.output.contains("Double"), "\(result.output)")
            let (_, document) = try Self.json([text, "--objects"])
            let facts = try #require(document["facts"] as? [String: Any])
            #expect(facts["size"] as? Int == 1 << 20 && facts["namedObjects"] as? Int == 1 && facts["repairPending"] as? Bool == false)
            #expect(facts["freeBlocks"] as? Int == 2, "the freed block and the rest: \(facts)")
            let objects = try #require(document["objects"] as? [[String: Any]])
            #expect(objects.count == 1 && objects[0]["name"] as? String == "prices" && objects[0]["count"] as? Int == 4 && objects[0]["bytes"] as? Int == 32)
        }
    }

    @Test("a seqlock cell is read with --as seqlock; a plain region is no known format")
    func seqlockAndPlain() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            let region = try SharedMemory.create(name, size: 4096)
            let plain = try Shm.run(["inspect", text])
            #expect(plain.status == 0 && plain.output.contains("no known format"), "\(plain.output)")
            _ = try SeqlockCell<UInt64>.format(in: region, at: 64)
            let writer = try SeqlockCell<UInt64>.Writer(in: region, at: 64)
            writer.write(1)
            writer.write(2)
            let (status, document) = try Self.json([text, "--as", "seqlock", "--offset", "64"])
            #expect(status == 0 && document["format"] as? String == "seqlock" && document["offset"] as? Int == 64)
            #expect((document["facts"] as? [String: Any])?["writes"] as? Int == 2)
            #expect((document["participants"] as? [[String: Any]])?.first?["role"] as? String == "writer")
            let wrong = try Shm.run(["inspect", text, "--as", "teapot"])
            #expect(wrong.status != 0 && wrong.error.contains("not a format"))
            let tooOften = try Shm.run(["inspect", text, "--watch", "0"])
            #expect(tooOften.status != 0 && tooOften.error.contains("--watch takes 0.1 to 3600 seconds"), "\(tooOften.error)")
        }
    }

    @Test("a header that does not add up is foreign: the reason, exit 1, and never a crash")
    func foreign() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            try region.set(UInt64(1 << 40), at: 16)  // the capacity
            let result = try Shm.run(["inspect", text])
            #expect(result.status == 1)
            #expect(result.error.split(separator: "\n").count == 1 && result.error.contains("foreign") && result.error.contains("power of two"), "\(result.error)")
            let (status, document) = try Self.json([text])
            #expect(status == 1 && (document["problem"] as? String)?.contains("power of two") == true)
            // A forged service header claiming more than the region holds, and a queue position far away.
            try region.set(UInt64(0x4255_5342_5550_4D53), at: 0)  // "SMPUBSUB" over the ring's header
            #expect(try Shm.run(["inspect", text]).status == 1)
        }
    }

    @Test("a heap that another process changes all the while is shown, never called foreign; a corrupt one is")
    func heapUnderChurn() throws {
        try Names.with("posix") { text in
            let name = try RegionName(text)
            _ = try SharedHeap(formatting: try SharedMemory.create(name, size: 1 << 20))
            let churn = try ChildProcess(Self.probe, ["heap-churn", text, "7"])
            #expect(churn.line() == "ok ready")
            for _ in 0..<20 {
                let result = try Shm.run(["inspect", text])
                #expect(result.status == 0, "\(result.output) \(result.error)")
            }
            churn.kill()
            _ = churn.finish()
        }
        // A block's size word that runs past the heap's end: the same answer on every look, so foreign.
        try Names.with("posix") { text in
            let region = try SharedMemory.create(try RegionName(text), size: 1 << 20)
            let heap = try SharedHeap(formatting: try SharedMemory.open(try RegionName(text)))
            _ = consume heap
            let first = 8720  // HeapLayout.firstBlock: the first block's header
            try region.set(UInt64(1 << 30), at: first + 8)
            let result = try Shm.run(["inspect", text])
            #expect(result.status == 1 && result.error.contains("foreign"), "\(result.output) \(result.error)")
        }
    }

    @Test("shm ls says what each region holds")
    func listKind() throws {
        try Names.with("posix") { text in
            let region = try SharedMemory.create(try RegionName(text), size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            let result = try Shm.run(["ls", "--backend", "posix"])
            #expect(result.output.split(separator: "\n").first?.contains("KIND") == true)
            let row = try #require(result.output.split(separator: "\n").first { $0.contains(text.dropFirst(6)) })
            #expect(row.contains(" ring "), "\(row)")
            let listed = try JSONSerialization.jsonObject(with: try Shm.run(["ls", "--backend", "posix", "--json"]).outputBytes) as? [[String: Any]]
            #expect(listed?.first { ($0["name"] as? String) == text }?["kind"] as? String == "ring")
        }
    }

    @Test("--watch redraws in place on a terminal (run in tmux, read with capture-pane)")
    func watch() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux") else {
            Issue.record("tmux is not installed (.ci/run installs it)")
            return
        }
        try Names.with("posix") { text in
            let region = try SharedMemory.create(try RegionName(text), size: MessageRing.size(capacity: 4096))
            try MessageRing.format(region, capacity: 4096)
            let sender = try RingSender(region)
            // A tmux server of the test's own, its socket in a directory the test removes, started by system() with
            // its output on /dev/null: the server outlives the command, and would hold the pipes ChildProcess.run
            // reads to their end.
            try withTemporaryDirectory { directory in
                let tmux = "TMUX_TMPDIR='\(directory)' /usr/bin/tmux -L inspect"
                let started = system("\(tmux) new-session -d -x 120 -y 40 '\(Shm.path)' inspect '\(text)' --watch 0.2 </dev/null >/dev/null 2>&1")
                try #require(started == 0, "tmux new-session: \(started)")
                defer { _ = system("\(tmux) kill-server </dev/null >/dev/null 2>&1") }
                func screen(showing wanted: String) throws -> String {
                    var last = ""
                    for _ in 0..<100 {
                        last = try ChildProcess.run("/bin/sh", ["-c", "\(tmux) capture-pane -p"]).output
                        if last.contains(wanted) { return last }
                        usleep(50_000)
                    }
                    return last
                }
                #expect(try screen(showing: "queued messages  0").contains("queued messages  0"))
                try sender.send(Array("hello".utf8))
                let after = try screen(showing: "queued messages  1")
                #expect(after.contains("queued messages  1"), "\(after)")
                #expect(after.components(separatedBy: "message ring").count == 2, "drawn in place, once: \(after)")
            }
            sender.close()
        }
    }
}
