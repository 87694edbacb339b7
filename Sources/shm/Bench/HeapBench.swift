import Foundation
import Glibc
import SharedMemory

/// The heap experiment (`shm bench --experiments heap`): the same workloads through SharedMemory's heap and through
/// Boost.Interprocess's `managed_shared_memory` (its default allocator, rbtree_best_fit), a C++ program the
/// harness compiles at run time against the system's Boost headers (Debian's libboost-dev). Both sides create a
/// POSIX object, touch all of it once before timing (so neither measures the kernel allocating pages), and run in
/// processes of their own.
enum HeapBench {
    /// 1024 slots; each operation picks one, frees its block if it has one, else allocates 16 B to 64 KiB (a power
    /// of two picked uniformly, then a size in it) and writes its first byte. The same generator as the C++ side.
    static func mixedWorkload(_ heap: inout SharedHeap, seed: UInt64, operations: Int) throws {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var held = [HeapPointer<UInt8>](repeating: .null, count: 1024)
        for _ in 0..<operations {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            let slot = Int(state % 1024)
            if !held[slot].isNull {
                try heap.deallocate(held[slot])
                held[slot] = .null
            } else {
                let base = 16 << Int((state >> 10) % 13)
                let size = min(base + Int((state >> 20) % UInt64(base)), 65536)
                let block = try heap.allocate(byteCount: size)
                try heap.store(1, to: block)
                held[slot] = block
            }
        }
        for block in held where !block.isNull { try heap.deallocate(block) }
    }

    static func region(_ megabytes: Int) throws -> RegionName {
        let name = try RegionName.posix("/shmbench-heap-swift-\(getpid())")
        try? SharedMemory.remove(name)
        return name
    }

    /// Allocates the largest free block, writes it all, frees it.
    static func touch(_ heap: inout SharedHeap) throws {
        let largest = try heap.statistics().largestFreeBlock - 16
        let all = try heap.allocate(byteCount: largest)
        try heap.withMutableSpan(all) { span in for index in span.indices { span[index] = 0 } }
        try heap.deallocate(all)
    }

    /// `processes` processes (forked, each attaching by name) run the mixed workload on one heap of 128 MiB;
    /// nanoseconds per operation, all processes together, from the first fork to the last exit.
    static func mixed(processes: Int, operations: Int) throws -> Double {
        let name = try region(128)
        var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 128 << 20, options: .init(lifetime: .process)))
        defer { try? SharedMemory.remove(name) }
        try touch(&heap)
        let start = nanoseconds()
        var children: [pid_t] = []
        for index in 0..<processes {
            let child = fork()
            if child == 0 {
                do {
                    var mine = try SharedHeap(attaching: try SharedMemory.open(name))
                    try mixedWorkload(&mine, seed: UInt64(index + 1), operations: operations)
                    _exit(0)
                } catch {
                    _exit(1)
                }
            }
            children.append(child)
        }
        var failed = false
        for child in children {
            var status: Int32 = 0
            waitpid(child, &status, 0)
            failed = failed || status != 0
        }
        let elapsed = nanoseconds() - start
        guard !failed else { throw BenchError("a process of the Swift heap workload failed") }
        _ = try heap.verify()
        return Double(elapsed) / Double(operations * processes)
    }

    /// Nanoseconds per construct, find and destroy of `count` named objects (4 UInt64 each, "object-N").
    static func named(count: Int) throws -> [Double] {
        let name = try region(64)
        var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 64 << 20, options: .init(lifetime: .process)))
        defer { try? SharedMemory.remove(name) }
        try touch(&heap)
        let t0 = nanoseconds()
        for index in 0..<count { _ = try heap.construct("object-\(index)", repeating: UInt64(index), count: 4) }
        let t1 = nanoseconds()
        var sum: UInt64 = 0
        for index in 0..<count {
            guard let found = try heap.find("object-\(index)", as: UInt64.self), found.count == 4 else { throw BenchError("object-\(index) not found") }
            sum &+= try heap.load(found, at: 3)
        }
        let t2 = nanoseconds()
        for index in 0..<count where try !heap.destroy("object-\(index)") { throw BenchError("object-\(index) not destroyed") }
        let t3 = nanoseconds()
        guard sum == UInt64(count * (count - 1) / 2) else { throw BenchError("the named objects held the wrong values") }
        return [t1 - t0, t2 - t1, t3 - t2].map { Double($0) / Double(count) }
    }

    /// Bytes of heap a 64-byte block takes beyond its 64, and a named object of one UInt64 ("object-NNNNN") beyond
    /// its 8: how much less is free after `count` of each.
    static func overhead(count: Int) throws -> [Double] {
        let name = try region(64)
        var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 64 << 20, options: .init(lifetime: .process)))
        defer { try? SharedMemory.remove(name) }
        let before = try heap.statistics().freeBytes
        for _ in 0..<count { _ = try heap.allocate(byteCount: 64) }
        let blocks = try heap.statistics().freeBytes
        for index in 0..<count {
            let key = "object-" + String(repeating: "0", count: max(0, 5 - String(index).count)) + String(index)
            _ = try heap.construct(key, repeating: UInt64(index))
        }
        let named = try heap.statistics().freeBytes
        return [Double(before - blocks) / Double(count) - 64, Double(blocks - named) / Double(count) - 8]
    }
}

/// Boost.Interprocess's side of the heap experiment: a C++ program compiled at run time (so an installed `shm`
/// needs no source tree), or the reason it cannot be.
struct BoostPeer {
    let binary: String
    let directory: String

    /// Compiles the peer with the system's C++ compiler; the reason it is skipped when the compiler or Boost's
    /// headers are missing.
    static func prepare() -> Result<BoostPeer, BenchError> {
        guard FileManager.default.fileExists(atPath: "/usr/include/boost/interprocess/managed_shared_memory.hpp") else {
            return .failure(BenchError("Boost not installed (Debian: apt-get install libboost-dev)"))
        }
        guard let compiler = ["/usr/bin/c++", "/usr/bin/g++", "/usr/bin/clang++"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return .failure(BenchError("no C++ compiler (c++, g++ or clang++) to build the Boost side"))
        }
        let directory = NSTemporaryDirectory() + "smbench-boost-\(getpid())"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try source.write(toFile: directory + "/heap.cpp", atomically: true, encoding: .utf8)
            let built = try run(compiler, ["-O2", "-std=c++17", "-o", directory + "/heap", directory + "/heap.cpp", "-lrt", "-pthread"])
            guard built.status == 0 else {
                try? FileManager.default.removeItem(atPath: directory)
                return .failure(BenchError("the Boost side did not compile: \(built.error.prefix(300))"))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            return .failure(BenchError("the Boost side could not be built: \(error)"))
        }
        return .success(BoostPeer(binary: directory + "/heap", directory: directory))
    }

    /// Runs one workload; the numbers it prints.
    func measure(_ arguments: [String]) throws -> [Double] {
        let name = "/shmbench-heap-boost-\(getpid())"
        let result = try run(binary, [arguments[0], name] + arguments.dropFirst())
        let fields = result.output.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        guard result.status == 0, !fields.isEmpty else {
            shm_unlink(name)
            throw BenchError("the Boost heap benchmark \(arguments.joined(separator: " ")) failed (status \(result.status)): \(result.error)")
        }
        return fields
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: directory) }

    static let source = #"""
// The heap experiment's peer: the same workloads as shm bench's Swift side, through Boost.Interprocess's
// managed_shared_memory (rbtree_best_fit, its default allocator, with its default interprocess mutex).
//
//   heap mixed NAME PROCESSES OPERATIONS    ns per operation (all processes together)
//   heap named NAME COUNT                    ns per construct, per find, per destroy
//   heap overhead NAME COUNT                 bytes per 64-byte block, per named object (one 8-byte value)
//   heap mq-pingpong NAME SIZE ROUNDS        SIZE-byte round trips to a forked child through two Boost
//                                            message_queues: median and p99 ns
//   heap mq-stream NAME SIZE BYTES           BYTES in SIZE-byte messages to a forked child: ns in all
#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace bip = boost::interprocess;

static double now() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

struct Random {
    uint64_t state;
    explicit Random(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull | 1) {}
    uint64_t next() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    }
};

// 1024 slots; each operation picks one: frees its block if it has one, else allocates 16 B to 64 KiB
// (a power-of-two class picked uniformly, then a size in it) and writes its first byte.
static void mixed(bip::managed_shared_memory &segment, uint64_t seed, long operations) {
    Random random(seed);
    std::vector<void *> held(1024, nullptr);
    for (long i = 0; i < operations; i++) {
        uint64_t r = random.next();
        size_t slot = r % 1024;
        if (held[slot]) {
            segment.deallocate(held[slot]);
            held[slot] = nullptr;
        } else {
            size_t base = size_t(16) << ((r >> 10) % 13);
            size_t size = base + (r >> 20) % base;
            if (size > 65536) size = 65536;
            char *p = static_cast<char *>(segment.allocate(size, std::nothrow));
            if (p) *p = 1;
            held[slot] = p;
        }
    }
    for (void *p : held)
        if (p) segment.deallocate(p);
}

// Writes every free byte once, so that neither side's timing includes the kernel allocating the pages.
static void touch(bip::managed_shared_memory &segment) {
    size_t size = segment.get_free_memory() - 4096;
    void *all = segment.allocate(size);
    memset(all, 0, size);
    segment.deallocate(all);
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    std::string mode = argv[1];
    const char *name = argv[2];
    bip::shared_memory_object::remove(name);
    if (mode == "mixed" && argc == 5) {
        int processes = atoi(argv[3]);
        long operations = atol(argv[4]);
        bip::managed_shared_memory segment(bip::create_only, name, size_t(128) << 20);
        touch(segment);
        double start = now();
        std::vector<pid_t> children;
        for (int p = 0; p < processes; p++) {
            pid_t child = fork();
            if (child == 0) {
                bip::managed_shared_memory mine(bip::open_only, name);
                mixed(mine, p + 1, operations);
                _exit(0);
            }
            children.push_back(child);
        }
        int failed = 0;
        for (pid_t child : children) {
            int status = 0;
            waitpid(child, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
        }
        double elapsed = now() - start;
        bip::shared_memory_object::remove(name);
        if (failed) return 1;
        printf("%.3f\n", elapsed / (double(operations) * processes));
    } else if (mode == "named") {
        long count = atol(argv[3]);
        bip::managed_shared_memory segment(bip::create_only, name, size_t(64) << 20);
        touch(segment);
        char key[32];
        double t0 = now();
        for (long i = 0; i < count; i++) {
            snprintf(key, sizeof key, "object-%ld", i);
            segment.construct<uint64_t>(key)[4](uint64_t(i));
        }
        double t1 = now();
        uint64_t sum = 0;
        for (long i = 0; i < count; i++) {
            snprintf(key, sizeof key, "object-%ld", i);
            auto found = segment.find<uint64_t>(key);
            if (!found.first || found.second != 4) return 1;
            sum += found.first[3];
        }
        double t2 = now();
        for (long i = 0; i < count; i++) {
            snprintf(key, sizeof key, "object-%ld", i);
            if (!segment.destroy<uint64_t>(key)) return 1;
        }
        double t3 = now();
        bip::shared_memory_object::remove(name);
        if (sum != uint64_t(count) * (count - 1) / 2) return 1;
        printf("%.3f %.3f %.3f\n", (t1 - t0) / count, (t2 - t1) / count, (t3 - t2) / count);
    } else if (mode == "overhead") {
        long count = atol(argv[3]);
        bip::managed_shared_memory segment(bip::create_only, name, size_t(64) << 20);
        size_t before = segment.get_free_memory();
        for (long i = 0; i < count; i++) segment.allocate(64);
        size_t blocks = segment.get_free_memory();
        char key[32];
        for (long i = 0; i < count; i++) {
            snprintf(key, sizeof key, "object-%05ld", i);
            segment.construct<uint64_t>(key)(uint64_t(i));
        }
        size_t named = segment.get_free_memory();
        bip::shared_memory_object::remove(name);
        printf("%.3f %.3f\n", double(before - blocks) / count - 64, double(blocks - named) / count - 8);
    } else if (mode == "mq-pingpong" || mode == "mq-stream") {
        size_t size = strtoull(argv[3], NULL, 10);
        long count = atol(argv[4]);
        std::string down = std::string(name + 1) + "-down", up = std::string(name + 1) + "-up";
        bip::message_queue::remove(down.c_str());
        bip::message_queue::remove(up.c_str());
        bip::message_queue to(bip::create_only, down.c_str(), 8, size), from(bip::create_only, up.c_str(), 8, size);
        std::vector<char> message(size, 1);
        bool pingpong = mode == "mq-pingpong";
        long messages = pingpong ? count : long(count / size);
        pid_t child = fork();
        if (child == 0) {
            bip::message_queue in(bip::open_only, down.c_str()), out(bip::open_only, up.c_str());
            size_t received;
            unsigned priority;
            for (long i = 0; i < messages; i++) {
                in.receive(message.data(), size, received, priority);
                if (pingpong) out.send(message.data(), size, 0);
            }
            _exit(0);
        }
        std::vector<double> samples;
        size_t received;
        unsigned priority;
        double start = now();
        for (long i = 0; i < messages; i++) {
            double t = now();
            to.send(message.data(), size, 0);
            if (pingpong) {
                from.receive(message.data(), size, received, priority);
                samples.push_back(now() - t);
            }
        }
        int status = 0;
        waitpid(child, &status, 0);
        double elapsed = now() - start;
        bip::message_queue::remove(down.c_str());
        bip::message_queue::remove(up.c_str());
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
        if (pingpong) {
            std::sort(samples.begin(), samples.end());
            printf("%.1f %.1f\n", samples[samples.size() / 2], samples[size_t((samples.size() - 1) * 0.99)]);
        } else {
            printf("%.1f\n", elapsed);
        }
    } else {
        return 2;
    }
    return 0;
}
"""#
}
