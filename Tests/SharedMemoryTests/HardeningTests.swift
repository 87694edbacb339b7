import Foundation
import Synchronization
import SystemPackage
import Testing
@testable import SharedMemory

/// Hostile peers, faults, crashes and load: the promises trusted systems make, each proven here.
@Suite("Hardening")
struct HardeningTests {
    // MARK: Hostile or broken peers

    /// Writers always record their real start time, so a seat naming a live pid with start time 0 was written by
    /// something else. Before, it counted as alive for ever: `pid 1, start 0` held any seat (the ring's sides, a
    /// subscriber slot, the seqlock's writer) for as long as the machine ran.
    @Test("a seat or slot forged as pid 1, start time 0 is not believed: the next comer takes it",
          arguments: ["ring sender", "ring receiver", "subscriber slot", "seqlock writer"])
    func forgedStartTimeZero(_ seat: String) throws {
        #expect(kill(1, 0) == 0 || errno == EPERM, "process 1 runs")
        try Names.with(.posix) { name in
            switch seat {
            case "ring sender", "ring receiver":
                let region = try SharedMemory.create(name, size: MessageRing.size(capacity: 4096))
                try MessageRing.format(region, capacity: 4096)
                let sender = seat == "ring sender"
                try region.set(Int32(1), at: sender ? RingHeader.senderPID.offset : RingHeader.receiverPID.offset)
                try region.set(UInt64(0), at: sender ? RingHeader.senderStart.offset : RingHeader.receiverStart.offset)
                if sender {
                    let side = try RingSender(region)
                    side.close()
                } else {
                    let side = try RingReceiver(region)
                    side.close()
                }
            case "subscriber slot":
                let size = PublishSubscribe.size(maxPayload: 64, subscribers: 1, queueDepth: 4)
                let region = try SharedMemory.create(name, size: size)
                try PublishSubscribe.format(region, maxPayload: 64, subscribers: 1, queueDepth: 4)
                let slot = PublishSubscribe.Layout(maxPayload: 64, subscribers: 1, queueDepth: 4, history: 0).slotsAt
                try region.set(PublishSubscribe.connected, at: slot + SubscriberSlot.state.offset)
                try region.set(Int32(1), at: slot + SubscriberSlot.pid.offset)
                try region.set(UInt64(0), at: slot + SubscriberSlot.start.offset)
                let publisher = try Publisher(region)
                let subscriber = try Subscriber(region)
                try publisher.publish(count: 1) { $0.append(9 as UInt8) }
                #expect(try subscriber.receive(timeout: .seconds(1)) { bytes, _ in bytes.unsafeLoad(as: UInt8.self) } == 9)
                subscriber.close()
                publisher.finish()
            default:
                let region = try SharedMemory.create(name, size: 4096)
                _ = try SeqlockCell<UInt64>.format(in: region, at: 0)
                try region.set(Int32(1), at: SeqlockLayout.writerPID.offset)
                try region.set(UInt64(0), at: SeqlockLayout.writerStart.offset)
                let writer = try SeqlockCell<UInt64>.Writer(in: region, at: 0)
                writer.write(5)
                writer.close()
            }
        }
    }

    @Test("a name another user made first is never adopted", arguments: Backend.named)
    func preCreatedByAnotherUser(backend: Backend) throws {
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096", "666"], uid: 65534) == "ok 4096")
            let error = expectError(.foreign) { try SharedMemory.openOrCreate(name, size: 4096) }
            #expect(error?.reason.contains("belongs to uid 65534") == true)
            expectError(.alreadyExists) { try SharedMemory.create(name, size: 4096) }
            expectError(.foreign) { try SharedMemory.open(name, options: .init(requiredOwner: getuid())) }
            expectError(.foreign) { try SharedMemory.open(name, options: .init(requirePrivateMode: true)) }
            // Opening without demands is allowed (root, or a mode that lets us in), and says whose it is.
            #expect(try SharedMemory.open(name).info().ownerUID == 65534)
        }
    }

    @Test("a private region passes the demands, a group-readable one does not", arguments: Backend.named)
    func privateMode(backend: Backend) throws {
        try Names.with(backend) { name in
            let region = try SharedMemory.create(name, size: 4096)
            _ = try SharedMemory.open(name, options: .init(requiredOwner: getuid(), requirePrivateMode: true))
            try region.setPermissions([.ownerReadWrite, .groupRead])
            expectError(.foreign) { try SharedMemory.open(name, options: .init(requirePrivateMode: true)) }
        }
    }

    @Test("a peer that shrinks an unsealed region makes readers SIGBUS (the risk sealed memfd removes)", arguments: [Backend.posix, .file])
    func shrinkUnderReader(backend: Backend) async {
        let name = Names.unique(backend)
        defer { Names.cleanUp(name) }
        let text = name.description
        await #expect(processExitsWith: .signal(SIGBUS)) { [text = text as String] in
            let name = try RegionName(text)
            var writer = try SharedMemory.create(name, size: 3 * 4096)
            let reader = try SharedMemory.open(name)
            try writer.resize(to: 4096)
            _ = reader.withUnsafeBytes { $0[3 * 4096 - 1] }
        }
    }

    // MARK: Faults

    /// Every system call SharedMemory.create makes, per backend (with prefault, so madvise is among them).
    static let createCalls: [(Backend, String)] = [
        (.systemV, "shmget"), (.systemV, "shmctl(IPC_STAT)"), (.systemV, "shmat"), (.systemV, "madvise"),
        (.posix, "shm_open"), (.posix, "fchmod"), (.posix, "ftruncate"), (.posix, "posix_fallocate"), (.posix, "mmap"), (.posix, "madvise"),
        (.file, "open"), (.file, "fchmod"), (.file, "ftruncate"), (.file, "posix_fallocate"), (.file, "mmap"), (.file, "madvise"),
        (.memfd, "memfd_create"), (.memfd, "fchmod"), (.memfd, "ftruncate"), (.memfd, "posix_fallocate"), (.memfd, "mmap"), (.memfd, "madvise"),
        (.anonymous, "mmap"), (.anonymous, "madvise"),
    ]

    @Test("a failure in any system call of create is reported with that call and backs everything out", arguments: createCalls)
    func everyCreateFailureBacksOut(backend: Backend, call: String) throws {
        for (errno, code) in [(Errno.noMemory, SharedMemoryError.Code.noSpace), (.tooManyOpenFiles, .limitExceeded), (.permissionDenied, .permissionDenied)] {
            try Names.with(backend) { name in
                let error = injecting([call: [errno]]) {
                    expectError(of: [code, .noSpace]) { try SharedMemory.create(name, size: 8192, options: .init(prefault: true)) }
                }
                #expect(error?.systemCall == call)
                #expect(error?.errno == errno)
                if backend.capabilities.contains(.named) {
                    expectError(.notFound) { try SharedMemory.info(name) }
                }
                if case .memfd(let label) = name.location {
                    #expect(openDescriptors(matching: "memfd:" + label) == 0, "a memfd descriptor was left open")
                }
            }
        }
    }

    @Test("resize failures leave the region as it was", arguments: [Backend.posix, .file, .memfd])
    func resizeFailureBacksOut(backend: Backend) throws {
        try Names.with(backend) { name in
            var region = try SharedMemory.create(name, size: 4096)
            try region.set(bytes: [1, 2, 3], at: 4093)
            for call in ["posix_fallocate", "ftruncate", "mremap"] {
                _ = injecting([call: [.noMemory]]) {
                    expectError(of: [.noSpace]) { try region.resize(to: 1 << 20) }
                }
                #expect(region.size == 4096)
                #expect(try region.info().size == 4096)
                #expect(try region.get(count: 3, at: 4093) == [1, 2, 3])
            }
        }
    }

    @Test("a full tmpfs is noSpace at create and at resize, with the hint, and nothing half-made stays")
    func fullTmpfs() throws {
        let mountPoint = "/tmp/smtest-mnt-\(getpid())"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        // A mount namespace of the probe's own: an 8 MiB /dev/shm, and an 8 MiB tmpfs for file regions.
        let script = """
            mount -t tmpfs -o size=8m tmpfs /dev/shm && mount -t tmpfs -o size=8m tmpfs \(mountPoint) || exit 9
            '\(Probe.path)' create posix:/big 16777216
            echo "left: $(ls -A /dev/shm | wc -l)"
            '\(Probe.path)' create posix:/small 4194304
            '\(Probe.path)' resize posix:/small 12582912
            echo "size: $(stat -c %s /dev/shm/small)"
            '\(Probe.path)' create file:\(mountPoint)/big 16777216
            echo "left: $(ls -A \(mountPoint) | wc -l)"
            """
        let result = try run("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script])
        let lines = result.output.split(separator: "\n").map(String.init)
        try #require(lines.count == 7, "\(result.output)")
        #expect(lines[0].hasPrefix("error noSpace"))
        #expect(lines[0].contains("--shm-size"))
        #expect(lines[1] == "left: 0")
        #expect(lines[2] == "ok 4194304")
        #expect(lines[3].hasPrefix("error noSpace"))
        #expect(lines[4] == "size: 4194304")
        #expect(lines[5].hasPrefix("error noSpace"))
        #expect(lines[6] == "left: 0")
    }

    @Test("EINTR storms during create and resize: every call still succeeds")
    func interruptStorm() async {
        await #expect(processExitsWith: .success) {
            // A handler without SA_RESTART, so every slow system call is interrupted.
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in _ = interrupts.add(1, ordering: .relaxed) }
            action.sa_flags = 0
            sigaction(SIGUSR1, &action, nil)
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)  // the test's thread may have it blocked
            let target = pthread_self()
            let storm = Thread {
                while !stop.load(ordering: .relaxed) {
                    pthread_kill(target, SIGUSR1)
                    usleep(20)
                }
            }
            storm.start()
            var failures = 0
            for i in 0..<60 {
                do {
                    let name = try RegionName.posix("/smtest-eintr-\(getpid())-\(i)")
                    var region = try SharedMemory.create(name, size: 8 << 20)
                    try region.resize(to: 16 << 20)
                    try region.remove()
                    _ = try SharedMemory.create(.memfd("eintr"), size: 8 << 20, options: .init(prefault: true))
                } catch {
                    failures += 1
                }
            }
            stop.store(true, ordering: .relaxed)
            if failures > 0 { exit(Int32(min(failures, 100))) }
            exit(interrupts.load(ordering: .relaxed) > 100 ? 0 : 101)
        }
    }

    // MARK: Crashes and cleanup

    @Test("SIGKILL the creator: the region persists, a survivor reads everything, and gc removes it once nobody is attached (process lifetime)", arguments: [Backend.systemV, .posix, .file])
    func creatorKilled(backend: Backend) throws {
        try Names.with(backend) { name in
            let creator = try Probe.start(["create-hold", name.description, "4096", "c0ffee", "process"])
            #expect(creator.line() == "ok")
            let survivor = try SharedMemory.open(name)
            creator.kill()
            #expect(try survivor.get(count: 3, at: 0) == [0xc0, 0xff, 0xee])
            let info = try SharedMemory.info(name)
            #expect(info.creatorIsAlive == false)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })  // we are attached
            try survivor.detach()
            let orphan = try #require(try SharedMemory.orphans().first { $0.name == name })
            #expect(try SharedMemory.removeOrphan(orphan))
            expectError(.notFound) { try SharedMemory.info(name) }
        }
    }

    @Test("systemd's RemoveIPC: every name of a user removed while attached; attachments work on, new opens say why")
    func removeIPC() throws {
        let names = [Names.unique(.systemV), Names.unique(.posix)]
        defer { names.forEach(Names.cleanUp) }
        let sysv = try SharedMemory.create(names[0], size: 4096)
        let posix = try SharedMemory.create(names[1], size: 4096)
        let holder = try Probe.Holder(names[1])
        // What logind does when the user's last session ends.
        for name in names { try SharedMemory.remove(name) }
        try sysv.set(bytes: [1], at: 0)
        try posix.set(bytes: [2], at: 0)
        #expect(try sysv.get(count: 1, at: 0) == [1])
        #expect(try posix.get(count: 1, at: 0) == [2])
        for name in names {
            let error = expectError(.notFound) { try SharedMemory.open(name) }
            #expect(error?.reason.contains("RemoveIPC") == true)
        }
        holder.release()
    }

    // MARK: Load

    @Test("16 processes for 20 s: openOrCreate, write, grow and remove on names shared across every backend; no crash, no error but notFound and removed, no lost count, nothing left")
    func load() throws {
        let counter = Names.unique(.posix)
        defer { Names.cleanUp(counter) }
        let total = try SharedMemory.create(counter, size: 4096)
        let prefix = "smtest-load-\(getpid())"
        let started = ContinuousClock.now
        let loaders = try (0..<16).map { _ in try Probe.start(["load", prefix, "20", counter.description]) }
        let answers = loaders.map { $0.finish().lastLine }
        let elapsed = ContinuousClock.now - started
        var operations = 0, displaced = 0
        for answer in answers {
            let fields = answer.split(separator: " ")
            #expect(fields.first == "ok", "a loader failed: \(answer)")
            operations += fields.count > 1 ? Int(fields[1]) ?? 0 : 0
            // The documented limit of remove(): a successor left under the random name the error gave, in the
            // directory of its name (/dev/shm or /tmp), never unlinked. Remove those here.
            for aside in fields.dropFirst(3) {
                displaced += 1
                #expect(unlink("/dev/shm/\(aside)") == 0 || unlink("/tmp/\(aside)") == 0, "\(aside) is not where the error said")
            }
        }
        print("load: \(displaced) successors displaced by a third object taking their name in the same instant")
        #expect(try total.get(Int.self, at: 64) == operations, "counts were lost")
        #expect(operations > 1000)
        print("load: \(operations) operations by 16 processes in \(elapsed): \(Int(Double(operations) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))) per second")
        // Nothing left: every shared name was removed by whoever last had it.
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: "/dev/shm")).contains { $0.hasPrefix(prefix) })
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: "/tmp")).contains { $0.hasPrefix(prefix) })
        let key = 0x5a00_0000 | (stableHash(prefix) & 0xfff) << 8
        #expect(try SharedMemory.list(.systemV).filter { UInt32(bitPattern: $0.systemVKey ?? 0) & ~0xff == key }.isEmpty)
        #expect(try total.info().attachCount == 1)
    }
}

private let interrupts = Atomic<Int>(0)
private let stop = Atomic<Bool>(false)

/// FNV-1a, as the probe's load loop computes its System V keys.
func stableHash(_ text: String) -> UInt32 {
    text.utf8.reduce(2_166_136_261) { ($0 ^ UInt32($1)) &* 16_777_619 }
}
