import Foundation
import Glibc
import SharedMemory
import SystemPackage

/// The Swift side of the benchmarks: the same loops as Sources/CShmBench/shmbench.c, through SharedMemory. Every
/// region is made with a process lifetime, so `shm gc` collects what a killed run leaves.
enum SwiftBench {
    /// The CPU a receiver uses, in percent of one core, while it waits `seconds` for a sender that lives and sends
    /// nothing (this thread's CPU clock over the wall clock): a wait must sleep, not spin, when its peer is silent.
    static func idleWaitCPU(strategy: WaitStrategy, seconds: Double) throws -> Double {
        let region = try SharedMemory.create(.anonymous, size: MessageRing.size(capacity: 4096))
        try MessageRing.format(region, capacity: 4096)
        let sender = try RingSender(region)  // alive, and silent
        let receiver = try RingReceiver(region, strategy: strategy)
        let cpuBefore: Int = threadCPUNanoseconds()
        let wallBefore: Int = nanoseconds()
        let timeout = Duration.nanoseconds(Int64(seconds * 1e9))
        // `try?`, not a `do`/`catch where`: Swift 6.3's mandatory AllocBoxToStack pass loops for ever on a
        // `catch … where` with noncopyable handles in scope (seen here; the build never ends).
        _ = try? receiver.receive(timeout: timeout)  // times out: nothing is sent
        let cpuUsed = Double(threadCPUNanoseconds() - cpuBefore)
        let wall = Double(nanoseconds() - wallBefore)
        let used: Double = cpuUsed / wall * 100
        sender.finish()
        return used
    }

    /// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
    static func threadCPUNanoseconds() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return now.tv_sec * 1_000_000_000 + now.tv_nsec
    }

    /// A fresh name for iteration `i`: what the C loop uses, with "swift" in place of "c".
    static func name(_ backend: Backend, _ i: Int) throws -> RegionName {
        switch backend {
        case .systemV: .systemVPrivate
        case .posix: try .posix("/shmbench-swift-\(getpid())-\(i)")
        case .file: try .file(FilePath("/tmp/shmbench-swift-\(getpid())-\(i)"))
        case .anonymous: .anonymous
        case .memfd: try .memfd("/shmbench-swift-\(getpid())-\(i)")  // as the C loop names it
        }
    }

    /// create → attach → touch one page → remove → detach, `iterations` times; nanoseconds each. A process lifetime
    /// by default (what the C loop does: the creator's record), or `lifetime`.
    static func lifecycle(_ backend: Backend, iterations: Int, lifetime: Lifetime = .process) throws -> [Double] {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let removable = backend.capabilities.contains(.named)
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        for i in 0..<iterations {
            let name = try name(backend, i)
            let start = nanoseconds()
            let region = try SharedMemory.create(name, size: page, options: .init(lifetime: lifetime))
            try region.withUnsafeMutableBytes { $0[0] = 1 }
            if removable { try region.remove() }
            try region.detach()
            samples.append(Double(nanoseconds() - start))
        }
        return samples
    }

    /// create (plain, prefaulted, or with 2 MiB huge pages) and write one byte in every page; nanoseconds each.
    static func firstTouch(_ backend: Backend, mode: String, bytes: Int, repeats: Int) throws -> [Double] {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let options = CreateOptions(hugePages: mode == "huge" ? .explicit(.size2MiB) : nil, prefault: mode == "prefault", lifetime: .process)
        var samples: [Double] = []
        for i in 0..<repeats {
            let name = try name(backend, i)
            let start = nanoseconds()
            let region = try SharedMemory.create(name, size: bytes, options: options)
            try region.withUnsafeMutableBytes { buffer in
                let base = buffer.baseAddress!
                var offset = 0
                while offset < bytes {
                    base.storeBytes(of: 1, toByteOffset: offset, as: UInt8.self)
                    offset += page
                }
            }
            samples.append(Double(nanoseconds() - start))
            if backend.capabilities.contains(.named) { try region.remove() }
            try region.detach()
        }
        return samples
    }
}

extension SwiftBench {
    /// `total` bytes in `message`-byte messages from this process to a forked child: through a 4 MiB message
    /// ring in a region of `backend`, or through the kernel ("pipe", "pipe1m", "socketpair"). Nanoseconds.
    static func stream(_ kind: String, total: Int, message: Int) throws -> Double {
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: message, alignment: 64)
        defer { payload.deallocate() }
        payload.initializeMemory(as: UInt8.self, repeating: 7)
        if let backend = Backend(rawValue: kind) {
            let region = try SharedMemory.create(try name(backend, 0), size: MessageRing.size(capacity: 4 << 20), options: .init(lifetime: .process))
            let created = region.name
            try MessageRing.format(region)
            let child = fork()
            if child == 0 {
                // The child drains the ring, copying every message out, and leaves.
                do {
                    let receiver = try RingReceiver(region)
                    while try receiver.receiveUnsafe({ payload.copyMemory(from: $0) }) != nil {}
                } catch {
                    _exit(1)
                }
                _exit(0)
            }
            let start = nanoseconds()
            do {
                let sender = try RingSender(region)
                var sent = 0
                while sent < total {
                    try sender.send(UnsafeRawBufferPointer(payload))
                    sent += message
                }
                sender.finish()
                try waitForChild(child)
            }
            let elapsed = Double(nanoseconds() - start)
            if backend.capabilities.contains(.named) { try SharedMemory.remove(created) }
            return elapsed
        }
        let (down, _) = try channel(kind)
        let child = fork()
        if child == 0 {
            var got = 0
            while got < total {
                let n = read(down.read, payload.baseAddress, message)
                if n <= 0 { _exit(1) }
                got += n
            }
            _exit(0)
        }
        let start = nanoseconds()
        var sent = 0
        while sent < total {
            try writeAll(down.write, UnsafeRawBufferPointer(payload))
            sent += message
        }
        try waitForChild(child)
        return Double(nanoseconds() - start)
    }

    /// `size`-byte round trips to a forked child and back, `rounds` times: through two message rings waiting with
    /// `strategy` (4 KiB each, or room for 4 messages of `size`), or through the kernel ("pipe", "socketpair").
    /// Nanoseconds each.
    static func pingPong(_ kind: String, strategy: WaitStrategy, rounds: Int, size: Int = 64) throws -> [Double] {
        var samples = [Double](repeating: 0, count: rounds)
        let message = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        defer { message.deallocate() }
        message.initializeMemory(as: UInt8.self, repeating: 1)
        if kind == "ring" {
            let capacity = max(4096, 1 << (Int.bitWidth - (4 * size + 16).leadingZeroBitCount))
            let there = try SharedMemory.create(.anonymous, size: MessageRing.size(capacity: capacity))
            let back = try SharedMemory.create(.anonymous, size: MessageRing.size(capacity: capacity))
            try MessageRing.format(there)
            try MessageRing.format(back)
            let child = fork()
            if child == 0 {
                do {
                    let receiver = try RingReceiver(there, strategy: strategy)
                    let sender = try RingSender(back, strategy: strategy)
                    for _ in 0..<rounds {
                        _ = try receiver.receiveUnsafe { message.copyMemory(from: $0) }
                        try sender.send(UnsafeRawBufferPointer(message))
                    }
                } catch {
                    _exit(1)
                }
                _exit(0)
            }
            let sender = try RingSender(there, strategy: strategy)
            let receiver = try RingReceiver(back, strategy: strategy)
            for i in 0..<rounds {
                let start = nanoseconds()
                try sender.send(UnsafeRawBufferPointer(message))
                _ = try receiver.receiveUnsafe { message.copyMemory(from: $0) }
                samples[i] = Double(nanoseconds() - start)
            }
            try waitForChild(child)
            return samples
        }
        let (down, up) = try channel(kind)
        let child = fork()
        if child == 0 {
            for _ in 0..<rounds {
                if !readAll(down.read, message) { _exit(1) }
                if (try? writeAll(up.write, UnsafeRawBufferPointer(message))) == nil { _exit(1) }
            }
            _exit(0)
        }
        for i in 0..<rounds {
            let start = nanoseconds()
            try writeAll(down.write, UnsafeRawBufferPointer(message))
            guard readAll(up.read, message) else { throw BenchError("the ping-pong child stopped answering") }
            samples[i] = Double(nanoseconds() - start)
        }
        try waitForChild(child)
        return samples
    }

    /// Two one-way channels: pipes (with a 1 MiB buffer for "pipe1m") or the two ends of a socketpair.
    /// Descriptors are left to close at exit: a benchmark run makes a handful.
    static func channel(_ kind: String) throws -> (down: (read: Int32, write: Int32), up: (read: Int32, write: Int32)) {
        if kind == "socketpair" {
            var ends: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0 else { throw BenchError("socketpair failed") }
            return ((ends[1], ends[0]), (ends[0], ends[1]))
        }
        var down: [Int32] = [0, 0], up: [Int32] = [0, 0]
        guard pipe(&down) == 0, pipe(&up) == 0 else { throw BenchError("pipe failed") }
        if kind == "pipe1m" {
            _ = fcntl(down[1], 1031, 1 << 20)  // F_SETPIPE_SZ
            _ = fcntl(up[1], 1031, 1 << 20)  // F_SETPIPE_SZ
        }
        return ((down[0], down[1]), (up[0], up[1]))
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            guard n > 0 else { throw BenchError("write failed") }
            done += n
        }
    }

    static func readAll(_ fd: Int32, _ bytes: UnsafeMutableRawBufferPointer) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = read(fd, bytes.baseAddress! + done, bytes.count - done)
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    /// Throws if one of `children` has failed (ended with a status other than 0); one that ended with 0 has done
    /// its work and is taken out of the list (it is reaped). Called now and then by a loop that waits for the
    /// children to count something, which would otherwise wait for ever on a child that crashed.
    static func checkChildren(_ children: inout [pid_t]) throws {
        for child in children {
            var status: Int32 = 0
            guard waitpid(child, &status, WNOHANG) == child else { continue }
            guard status == 0 else { throw BenchError("a benchmark child process failed before its work was done (wait status \(status))") }
            children.removeAll { $0 == child }
        }
    }

    static func waitForChild(_ child: pid_t) throws {
        var status: Int32 = 0
        guard waitpid(child, &status, 0) == child, status == 0 else { throw BenchError("the benchmark's child process failed (status \(status))") }
    }
}
