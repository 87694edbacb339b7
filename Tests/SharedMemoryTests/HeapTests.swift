import Foundation
import TestSupport
import Testing
@testable import SharedMemory

/// The heap (Docs/StructuredData.md): allocation, named objects, handles, growth, corrupt metadata, and processes
/// killed in the middle of every operation.
@Suite("Heap")
struct HeapTests {
    struct Point: BitwiseCopyable, Equatable {
        var x: Int32
        var y: Int32
    }

    struct Node: BitwiseCopyable {
        var value: Int
        var next: HeapPointer<Node>
    }

    static let resizable: [Backend] = [.posix, .file, .memfd]

    @Test("allocate, free and allocate again, aligned and zeroed, on every backend", arguments: Backend.allCases)
    func allocateAndFree(backend: Backend) throws {
        try Names.with(backend) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 1 << 20))
            let empty = try heap.verify()
            #expect(empty.size == 1 << 20 && empty.allocatedBlocks == 0 && empty.freeBlocks == 1)
            var blocks: [HeapPointer<UInt8>] = []
            for (size, alignment) in [(0, 16), (1, 1), (16, 16), (100, 8), (4096, 64), (65536, 4096), (3000, 512), (17, 2048)] {
                let block = try heap.allocate(byteCount: size, alignment: alignment)
                #expect((Int(block.offset) + heap.offset) % alignment == 0, "\(block) for alignment \(alignment)")
                #expect(try heap.usableSize(of: block) >= size)
                #expect(block.count == size)
                try heap.withMutableSpan(block) { span in
                    for index in span.indices { span[index] = 0xAB }
                }
                blocks.append(block)
                try heap.verify()
            }
            // No two blocks overlap: each still holds only its own pattern after all were written.
            for block in blocks {
                #expect(try heap.withSpan(block) { span in span.indices.allSatisfy { span[$0] == 0xAB } })
            }
            let used = try heap.verify()
            #expect(used.allocatedBlocks == blocks.count)
            for block in blocks.reversed() { try heap.deallocate(block) }
            let again = try heap.verify()
            #expect(again.allocatedBlocks == 0 && again.freeBlocks == 1 && again.freeBytes == empty.freeBytes)
            // Freed memory comes back zeroed only when asked.
            let dirty = try heap.allocate(byteCount: 4096)
            try heap.withMutableSpan(dirty) { span in for index in span.indices { span[index] = 7 } }
            try heap.deallocate(dirty)
            let clean = try heap.allocate(byteCount: 4096, zeroed: true)
            #expect(try heap.withSpan(clean) { span in span.indices.allSatisfy { span[$0] == 0 } })
            let values = try heap.allocate(repeating: Point(x: 1, y: 2), count: 10)
            #expect(try heap.load(values, at: 9) == Point(x: 1, y: 2))
            try heap.store(Point(x: 3, y: 4), to: values, at: 9)
            #expect(try heap.load(values, at: 9) == Point(x: 3, y: 4))
            expectError(.outOfBounds) { try heap.load(values, at: 10) }
            let zeros = try heap.allocate(UInt64.self, count: 100, zeroed: true)
            #expect(try heap.withSpan(zeros) { span in span.count == 100 && span.indices.allSatisfy { span[$0] == 0 } })
            _ = try heap.construct("shared", repeating: UInt64(99), count: 3)

            // Another attachment (another mapping, at another address) sees the same heap.
            guard Backend.attachable.contains(backend) else { return }
            let region = heap.intoRegion()
            var other = try SharedHeap(attaching: try attachAgain(region))
            let found = try #require(try other.find("shared", as: UInt64.self))
            #expect(try other.load(found, at: 2) == 99)
            #expect(try other.load(values, at: 9) == Point(x: 3, y: 4))
            try other.deallocate(values)
            try other.verify()
        }
    }

    @Test("named objects: construct, find with their type, find-or-construct, destroy, list")
    func namedObjects() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 4 << 20))
            let points = try heap.construct("points", repeating: Point(x: 5, y: 6), count: 50)
            #expect(points.count == 50)
            let found = try #require(try heap.find("points", as: Point.self))
            #expect(found == points)
            #expect(try heap.load(found, at: 49) == Point(x: 5, y: 6))
            #expect(try heap.find("absent", as: Point.self) == nil)
            // Another type is an error, not a reinterpretation, even of the same size.
            let mismatch = expectError(.typeMismatch) { try heap.find("points", as: UInt64.self) }
            #expect(mismatch?.reason.contains("Point") == true)
            expectError(.typeMismatch) { try heap.findOrConstruct("points", repeating: Int64(0)) }
            expectError(.alreadyExists) { try heap.construct("points", repeating: Point(x: 0, y: 0)) }
            let (same, created) = try heap.findOrConstruct("points", repeating: Point(x: 0, y: 0), count: 50)
            #expect(!created && same == points)
            let (fresh, made) = try heap.findOrConstruct("counter", repeating: UInt64(1))
            #expect(made)
            #expect(try heap.load(fresh) == 1)

            // Names: 1 to 1024 bytes of UTF-8, any of them.
            let long = String(repeating: "é", count: 512)
            _ = try heap.construct(long, repeating: UInt8(1), count: 3)
            #expect(try heap.find(long, as: UInt8.self)?.count == 3)
            expectError(.invalidArgument) { try heap.construct(long + "x", repeating: UInt8(1)) }
            expectError(.invalidArgument) { try heap.construct("", repeating: UInt8(1)) }

            // More names than the header's 512 buckets hold at two a bucket: the directory moves to a block of its
            // own (twice: 1024 names, then 4096); each name is still found and destroyed exactly.
            for index in 0..<5000 { _ = try heap.construct("item-\(index)", repeating: Int32(index), count: index % 7) }
            let before = try heap.verify()
            #expect(before.namedObjects == 5003)
            for index in stride(from: 0, to: 5000, by: 2) { #expect(try heap.destroy("item-\(index)")) }
            #expect(try !heap.destroy("item-0"))
            for index in 0..<5000 {
                let item = try heap.find("item-\(index)", as: Int32.self)
                #expect((item == nil) == index.isMultiple(of: 2))
                if let item, item.count > 0 { #expect(try heap.load(item, at: item.count - 1) == Int32(index)) }
            }
            let listed = try heap.namedObjects()
            #expect(listed.count == 2500 + 3)
            let entry = try #require(listed.first { $0.name == "points" })
            #expect(entry.typeName == String(reflecting: Point.self))
            #expect(entry.count == 50 && entry.byteCount == 50 * MemoryLayout<Point>.stride && entry.offset == points.offset)
            #expect(try heap.verify().namedObjects == 2503)
            // A named object is freed by destroy, never by deallocate.
            expectError(.invalidArgument) { try heap.deallocate(points) }
        }
    }

    @Test("structures point to each other with handles that mean the same in every attachment")
    func nestedHandles() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 1 << 20))
            var head = HeapPointer<Node>.null
            for value in 1...100 {
                let node = try heap.allocate(repeating: Node(value: value, next: head))
                head = node
            }
            _ = try heap.construct("list", repeating: head)
            var other = try SharedHeap(attaching: try SharedMemory.open(name))
            var cursor = try other.load(try #require(try other.find("list", as: HeapPointer<Node>.self)))
            var sum = 0
            while !cursor.isNull {
                let node = try other.load(cursor)
                sum += node.value
                cursor = node.next
            }
            #expect(sum == 5050)
        }
    }

    @Test("a handle's slices and casts cover what they say, and handles another process wrote never crash them")
    func slicesAndCasts() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 1 << 20))
            let numbers = try heap.allocate(repeating: UInt64(0), count: 8)
            for i in 0..<8 { try heap.store(UInt64(i * 10), to: try #require(numbers.slice(from: i))) }
            let middle = try #require(numbers.slice(from: 2, count: 3))
            #expect(middle.offset == numbers.offset + 16 && middle.count == 3)
            #expect(try heap.load(try #require(middle.slice(from: 2))) == 40)
            #expect(numbers.slice(from: 8, count: 0)?.count == 0)
            #expect(numbers.slice(from: 8) == nil && numbers.slice(from: -1) == nil && numbers.slice(from: 3, count: 6) == nil)
            let bytes = numbers.cast(to: UInt8.self)
            #expect(bytes.offset == numbers.offset && bytes.count == 64)
            #expect(try heap.load(try #require(bytes.slice(from: 8))) == 10)  // little-endian: the low byte of 10
            #expect(bytes.cast(to: UInt64.self) == numbers)
            #expect(HeapPointer<UInt8>(offset: numbers.offset, count: 7).cast(to: UInt64.self).count == 0)  // as many as fit
            // Handles as another process may have written them into the heap: any bits at all.
            for (offset, stored) in [(UInt64.max - 8, UInt64(Int.max)), (UInt64.max, UInt64.max), (8, UInt64(1) << 63), (1 << 40, UInt64(Int.max) / 4)] {
                let forged = unsafeBitCast((offset, stored), to: HeapPointer<UInt64>.self)
                _ = forged.cast(to: UInt8.self)
                _ = forged.cast(to: (UInt64, UInt64).self)
                for index in [0, 1, Int.max / 16, Int.max / 8 + 1, Int.max] {
                    if let slice = forged.slice(from: index) {
                        expectError(of: [.outOfBounds, .invalidArgument]) { _ = try heap.load(slice) }
                    }
                }
                expectError(of: [.outOfBounds, .invalidArgument]) { _ = try heap.load(forged) }
            }
            try heap.deallocate(numbers)
        }
    }

    /// A heap of 64 KiB between guard pages, with a free block `a` (before three allocated ones, so it merges with
    /// nothing) and the big free rest after them; `forge` writes a peer's word over it, `operation` is what the
    /// victim does next. Before the links were checked to be free blocks, each case read or wrote the 8 bytes just
    /// past the heap (a link to the end marker at `extent - 16`, whose "links" would be at `extent` and `extent + 8`):
    /// a SIGSEGV here, a silent read or write of whatever is mapped next elsewhere.
    @Test("a free list link forged to the end marker is foreign: nothing past the heap is read or written",
          arguments: ["next link, then allocate", "previous link, then allocate", "list head, then free into it",
                      "rest's link, then the full heap's message", "second-level map, then allocate"])
    func forgedFreeLinks(_ forgery: String) throws {
        typealias L = HeapLayout
        try Names.with(.posix) { name in
            try betweenGuardPages(name, size: 65536) { region in
            var heap = try SharedHeap(formatting: region)
            let extent = 65536, endMarker = UInt64(extent - L.blockHeader)
            let a = try heap.allocate(byteCount: 200), b = try heap.allocate(byteCount: 200)
            let c = try heap.allocate(byteCount: 200), d = try heap.allocate(byteCount: 200)
            try heap.deallocate(a)
            let raw = try SharedMemory.open(name)
            let aBlock = Int(a.offset) - L.blockHeader
            let restBlock = Int(d.offset) - L.blockHeader + 224
            #expect(b.offset == a.offset + 224 && c.offset == b.offset + 224)
            let (first, second) = L.sizeClass(224)
            switch forgery {
            case "next link, then allocate":
                try raw.set(endMarker, at: aBlock + 16)
                expectError(.foreign) { try heap.allocate(byteCount: 200) }
            case "previous link, then allocate":
                try raw.set(endMarker, at: aBlock + 24)
                expectError(.foreign) { try heap.allocate(byteCount: 200) }
            case "list head, then free into it":
                // c (between b and d, both used) goes on a's list, whose head now says the end marker.
                try raw.set(endMarker, at: HeapHeader.heads.offset + (first * L.secondLevels + second) * 8)
                expectError(.foreign) { try heap.deallocate(c) }
            case "rest's link, then the full heap's message":
                try raw.set(endMarker, at: restBlock + 16)
                expectError(.foreign) { try heap.allocate(byteCount: 60000) }
            default:
                // A second-level map with bits past the 16 classes it has sends the search to another list's head.
                try raw.set(UInt32.max << 16, at: HeapHeader.secondLevelMaps.offset + first * 4)
                expectError(.foreign) { try heap.allocate(byteCount: 200) }
            }
            }
        }
    }

    /// Docs/StructuredData.md, "Handles": load, store and the spans take no lock, so they check a handle against the
    /// heap's bounds only; through a stale handle they reach the freed block (here its free list links). The
    /// operation that then finds the lists broken is `foreign` and rebuilds them from the block chain, so the heap
    /// lives on. Before, every later operation was `foreign`.
    @Test("a store through a stale handle into a freed block costs one operation a foreign, not the heap its life")
    func staleHandleStore() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
            let a = try heap.allocate(UInt64.self, count: 25), keep = try heap.allocate(UInt64.self, count: 25)
            try heap.store(7, to: keep)
            try heap.deallocate(a)
            expectError(.invalidArgument) { try heap.deallocate(a) }
            expectError(.invalidArgument) { try heap.usableSize(of: a) }
            // The stale write lands in the free block's links (its first 16 payload bytes): inside the heap.
            try heap.store(0xdead_beef, to: a, at: 0)
            try heap.store(0xdead_beef, to: a, at: 1)
            expectError(.foreign) { try heap.allocate(UInt64.self, count: 25) }
            let again = try heap.allocate(UInt64.self, count: 25)
            #expect(again.offset == a.offset)
            #expect(try heap.load(keep) == 7)
            #expect(try heap.verify().allocatedBlocks == 2)
        }
    }

    @Test("a full heap says what is free; bad handles are errors, not crashes")
    func noSpaceAndBadHandles() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
            let error = expectError(.noSpace) { try heap.allocate(byteCount: 1 << 20) }
            let stats = try heap.statistics()
            #expect(error?.reason.contains("\(stats.freeBytes) bytes are free") == true, "\(String(describing: error))")
            #expect(error?.reason.contains("largest free block holds \(stats.largestFreeBlock - 16)") == true)
            // Exactly the largest block fits.
            let whole = try heap.allocate(byteCount: stats.largestFreeBlock - 16)
            expectError(.noSpace) { try heap.allocate(byteCount: 1) }
            try heap.deallocate(whole)
            let block = try heap.allocate(byteCount: 64)
            try heap.deallocate(block)
            expectError(.invalidArgument) { try heap.deallocate(block) }  // twice
            for offset: UInt64 in [0, 8, 100, 8720, 9000, 65520, 1 << 50, .max] {
                expectError(of: [.invalidArgument, .outOfBounds]) { try heap.deallocate(HeapPointer<UInt8>(offset: offset, count: 1)) }
            }
            expectError(.outOfBounds) { try heap.load(HeapPointer<UInt64>(offset: 65536, count: 1)) }
            expectError(.outOfBounds) { try heap.load(HeapPointer<UInt64>(offset: 0, count: 1)) }
            expectError(.outOfBounds) { try heap.withSpan(HeapPointer<UInt64>(offset: 9000, count: 1 << 40)) { _ in } }
            expectError(.invalidArgument) { try heap.load(HeapPointer<UInt64>(offset: 9001, count: 1)) }
            expectError(.invalidArgument) { try heap.allocate(byteCount: 8, alignment: 3) }
            expectError(.invalidArgument) { try heap.allocate(byteCount: 8, alignment: 8192) }
            expectError(.invalidArgument) { try heap.allocate(byteCount: -1) }
            // Counts no heap can hold: errors, not overflows.
            expectError(.invalidArgument) { try heap.allocate(UInt64.self, count: Int.max) }
            expectError(.invalidArgument) { _ = try heap.construct("huge", repeating: UInt64(0), count: Int.max) }
            expectError(.noSpace) { _ = try heap.construct("huge", repeating: UInt64(0), count: Int.max / 8) }
            expectError(.noSpace) { _ = try heap.findOrConstruct("huge", repeating: UInt8(0), count: Int.max) }
            expectError(.noSpace) { try heap.allocate(UInt8.self, count: Int.max) }
            #expect(try heap.find("huge", as: UInt64.self) == nil)
            #expect(try heap.verify().allocatedBlocks == 0)
        }
    }

    @Test("format only over memory that holds nothing; attach only to a heap")
    func formatAndAttachChecks() throws {
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 65536)
            try region.set(UInt64(1), at: 0)
            expectError(.foreign) { try SharedHeap(formatting: try SharedMemory.open(name)) }
            #expect(try region.get(UInt64.self, at: 0) == 1)  // untouched
            try region.set(UInt64(0), at: 0)
            expectError(.timedOut) { try SharedHeap(attaching: try SharedMemory.open(name)) }
            let started = ContinuousClock.now
            expectError(.timedOut) { try SharedHeap(attaching: try SharedMemory.open(name), timeout: .milliseconds(50)) }
            #expect(ContinuousClock.now - started >= .milliseconds(50))
            _ = try SharedHeap(formatting: try SharedMemory.open(name))
            expectError(.alreadyExists) { try SharedHeap(formatting: try SharedMemory.open(name)) }
            var attached = try SharedHeap(formattingOrAttaching: try SharedMemory.open(name))
            #expect(try attached.verify().size == 65536)
            expectError(.readOnly) { try SharedHeap(attaching: try SharedMemory.open(name, options: .init(access: .readOnly))) }
            expectError(.invalidArgument) { try SharedHeap(formatting: try SharedMemory.open(name), at: 100) }
            expectError(.invalidArgument) { try SharedHeap(formatting: try SharedMemory.open(name), at: 65536 - 8192) }
        }
        try Names.with(.posix) { name in
            let region = try SharedMemory.create(name, size: 65536)
            // A heap can start on any 64-byte boundary, after what else the region holds.
            try region.set(UInt64(0xdead), at: 64)
            var heap = try SharedHeap(formatting: region, at: 4096)
            let block = try heap.allocate(byteCount: 100, alignment: 4096)
            #expect((Int(block.offset) + 4096) % 4096 == 0)
            let raw = heap.intoRegion()
            #expect(try raw.get(UInt64.self, at: 64) == 0xdead)
        }
    }

    @Test("a process killed while formatting leaves a heap others detect and format again, never a hang")
    func formatterKilled() throws {
        try Names.with(.posix) { name in
            _ = try SharedMemory.create(name, size: 65536)
            let result = try ChildProcess.run("/usr/bin/env", ["SHM_HEAP_CRASH_AT=format.claimed", Probe.path, "heap-format", name.description])
            #expect(result.status == SIGKILL, "\(result.output)")
            let error = expectError(.notReady) { try SharedHeap(attaching: try SharedMemory.open(name), timeout: .seconds(10)) }
            #expect(error?.reason.contains("died") == true)
            var heap = try SharedHeap(formattingOrAttaching: try SharedMemory.open(name))
            #expect(try heap.verify().allocatedBlocks == 0)
        }
        try Names.with(.posix) { name in
            _ = try SharedMemory.create(name, size: 65536)
            let result = try ChildProcess.run("/usr/bin/env", ["SHM_HEAP_CRASH_AT=format.claimed", Probe.path, "heap-format", name.description])
            #expect(result.status == SIGKILL)
            var heap = try SharedHeap(formatting: try SharedMemory.open(name))
            try heap.verify()
        }
    }

    static let crashPoints = [
        "allocate.unlinked", "allocate.split", "allocate.committed", "allocate.aligned", "free.unlinked", "free.committed",
        "construct.allocated", "construct.written", "construct.live", "directory.relinked", "destroy.unlinked", "destroy.dying",
        "grow.extended",
    ]

    @Test("a process killed at each point inside allocate, free, construct, destroy and grow leaves a heap the next one repairs", arguments: crashPoints)
    func killedAtEachPoint(point: String) throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 512 * 1024))
            let keep = try heap.construct("keep", repeating: UInt64(11), count: 4)
            _ = try heap.construct("doomed", repeating: UInt64(22), count: 4)
            // 1024 names fill the header's 512 buckets to the brim: the probe's construct moves the directory.
            for index in 0..<1022 { _ = try heap.construct("filler-\(index)", repeating: UInt32(index)) }
            let a = try heap.allocate(byteCount: 300)
            let b = try heap.allocate(byteCount: 300)
            _ = try heap.allocate(byteCount: 300)
            try heap.deallocate(b)  // a hole, so frees merge both ways
            let before = try heap.verify()

            let result = try ChildProcess.run("/usr/bin/env", ["SHM_HEAP_CRASH_AT=\(point)", Probe.path, "heap-script", name.description])
            #expect(result.status == SIGKILL, "the probe was not killed at \(point): \(result.output)")

            // The next locker repairs; every block is then allocated or free exactly once, and the directory agrees.
            let after = try heap.verify()
            #expect(try heap.load(keep, at: 3) == 11)
            if let made = try heap.find("made", as: UInt64.self) {
                #expect(made.count == 8)
                #expect(try heap.load(made, at: 7) == 0xfeed)
            }
            if let doomed = try heap.find("doomed", as: UInt64.self) {
                #expect(try heap.load(doomed, at: 3) == 22)
            }
            if point == "grow.extended" { #expect(after.size == before.size + 65536) }
            for index in 0..<1022 { #expect(try heap.find("filler-\(index)", as: UInt32.self) != nil) }
            // And it goes on working: the process that was killed leaked at most what it had allocated.
            try heap.deallocate(a)
            var blocks: [HeapPointer<UInt8>] = []
            while let block = try? heap.allocate(byteCount: 1000) { blocks.append(block) }
            #expect(blocks.count > 100)
            for block in blocks { try heap.deallocate(block) }
            _ = try heap.construct("after", repeating: UInt8(1))
            try heap.verify()
        }
    }

    @Test("1000 processes killed at random moments while allocating, freeing, constructing and destroying")
    func killedAtRandom() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 16 << 20))
            let keep = try heap.construct("keep", repeating: UInt64(0x600d), count: 16)
            let raw = try SharedMemory.open(name)
            let map = try SharedHashMap<UInt32, UInt64>.findOrCreate("churn-map", capacity: 64, in: &heap)
            let array = try SharedArray<UInt64>.findOrCreate("churn-array", in: &heap)
            var killed = 0, holdingTheLock = 0
            for round in 0..<1000 {
                let churn = try Probe.start(["heap-churn", name.description, "\(round)"])
                #expect(churn.line() == "ok ready")
                usleep(UInt32.random(in: 0...3000))
                churn.kill()
                killed += 1
                // glibc's owner field of the heap's mutex: the dead process's thread id if it died holding the lock.
                if try raw.get(Int32.self, at: 64 + 8) != 0 { holdingTheLock += 1 }
                try heap.verify()
                #expect(try heap.load(keep, at: 15) == 0x600d)
                for (key, value) in try map.entries(in: &heap) { #expect(value == UInt64(key) * 3) }
                #expect(try array.withSpan(in: &heap) { span in span.indices.allSatisfy { span[$0] == UInt64($0) } })
                for object in try heap.namedObjects() where object.name.hasPrefix("churn-") && object.typeName == "Swift.UInt32" {
                    let values = try #require(try heap.find(object.name, as: UInt32.self))
                    #expect(try heap.withSpan(values) { span in span.indices.allSatisfy { span[$0] == 3 } })
                }
            }
            #expect(killed == 1000)
            #expect(holdingTheLock > 0)
            let stats = try heap.verify()
            print("heap kill loop: \(killed) kills, \(holdingTheLock) of them inside an operation (holding the lock); the heap then held \(stats.allocatedBlocks) blocks, \(stats.namedObjects) named")
        }
    }

    @Test("two and four processes allocate, free and find-or-construct at once", arguments: [2, 4])
    func processesAtOnce(count: Int) throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 8 << 20))
            let workers = try (0..<count).map { index in try Probe.start(["heap-work", name.description, "4000", "\(index + 1)"]) }
            var created = 0
            for worker in workers {
                let answer = worker.finish().lastLine
                #expect(answer.hasPrefix("ok "), "\(answer)")
                created += Int(answer.split(separator: " ").last ?? "") ?? 0
            }
            let shared = try heap.namedObjects().filter { $0.name.hasPrefix("shared-") }
            // Each shared name was constructed exactly once, whoever got there first.
            #expect(created == shared.count)
            let stats = try heap.verify()
            #expect(stats.allocatedBlocks == shared.count && stats.freeBlocks <= shared.count + 1)
        }
    }

    @Test("the heap grows with its region, and other attachments find the new size", arguments: resizable)
    func growth(backend: Backend) throws {
        try Names.with(backend) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
            let region = heap.intoRegion()
            var other = try SharedHeap(attaching: try attachAgain(region))
            heap = try SharedHeap(attaching: region)
            var blocks: [HeapPointer<UInt8>] = []
            while let block = try? heap.allocate(byteCount: 4000) { blocks.append(block) }
            try heap.grow(to: 1 << 20)
            #expect(try heap.verify().size == 1 << 20)
            let late = try heap.construct("late", repeating: UInt64(5), count: 10000)
            #expect(Int(late.offset) + 10000 * 8 > 65536)  // it could not have fitted before
            // The other attachment still maps 64 KiB; its next operation maps the rest.
            let found = try #require(try other.find("late", as: UInt64.self))
            #expect(try other.load(found, at: 9999) == 5)
            let more = try other.allocate(byteCount: 200_000)
            try other.deallocate(more)
            for block in blocks { try other.deallocate(block) }
            #expect(try other.verify().size == 1 << 20)
            try heap.grow(to: 65536)  // never shrinks
            #expect(try heap.verify().size == 1 << 20)
        }
    }

    @Test("a process attached before the heap grew reads what was put in the new space")
    func growthAcrossProcesses() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
            let reader = try ChildProcess(Probe.path, ["heap-wait-read", name.description, "late"], input: .open)
            #expect(reader.line() == "ok attached")
            try heap.grow(to: 4 << 20)
            _ = try heap.construct("late", repeating: UInt64(3), count: 300_000)
            reader.closeInput()
            #expect(reader.finish().lastLine == "ok 900000 300000")
        }
    }

    @Test("heaps in regions that cannot grow say so", arguments: [Backend.systemV, .anonymous])
    func cannotGrow(backend: Backend) throws {
        try Names.with(backend) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 65536))
            expectError(.unsupported) { try heap.grow(to: 1 << 20) }
            #expect(try heap.verify().size == 65536)
        }
    }

    @Test("a heap's metadata written over at every offset, and at random: every operation fails as foreign (or refuses its input), never touches memory past the heap (guard pages), loops or traps")
    func corruptMetadata() throws {
        typealias L = HeapLayout
        try Names.with(.posix) { name in
            try betweenGuardPages(name, size: 65536) { region in
            var heap = try SharedHeap(formatting: region)
            var blocks: [HeapPointer<UInt8>] = []
            for index in 0..<40 { blocks.append(try heap.allocate(byteCount: 16 + index * 37)) }
            for index in stride(from: 0, to: 40, by: 3) { try heap.deallocate(blocks[index]) }
            for index in 0..<20 { _ = try heap.construct("n\(index)", repeating: UInt16(index), count: index) }
            let raw = try SharedMemory.open(name)
            let pristine = try raw.get(count: 65536, at: 0)
            var random = SystemRandomNumberGenerator()
            var foreign = 0
            func operate() {
                for operation in 0..<6 {
                    do {
                        switch operation {
                        case 0: try heap.verify()
                        case 1: try heap.deallocate(blocks[1])
                        case 2: _ = try heap.allocate(byteCount: Int.random(in: 1...3000, using: &random))
                        case 3: _ = try heap.find("n7", as: UInt16.self)
                        case 4: _ = try heap.findOrConstruct("fresh", repeating: UInt8(1))
                        default: try heap.destroy("n5")
                        }
                    } catch {
                        #expect([.foreign, .invalidArgument, .noSpace, .outOfBounds, .typeMismatch, .alreadyExists].contains(error.code), "\(error)")
                        if error.code == .foreign { foreign += 1 }
                    }
                }
            }
            // Every word of the header, the heap's lock excepted (a peer that writes over a lock can make others
            // wait: Docs/StructuredData.md), and the first 32 bytes of every block (its header and, free, its links),
            // each set to values that point where a link must not: nowhere, the end marker, past the heap, all ones.
            let mutex = HeapHeader.mutex.offset..<(HeapHeader.mutex.offset + ProcessMutex.size)
            var targets = stride(from: 0, to: L.firstBlock, by: 8).filter { !mutex.contains($0) }
            var b = L.firstBlock
            while b < 65536 - L.blockHeader {
                targets += [b, b + 8, b + 16, b + 24]
                b += Int(pristine.withUnsafeBytes { $0.load(fromByteOffset: b + 8, as: UInt64.self) } & ~L.flagMask)
            }
            #expect(targets.count > 1200)
            for offset in targets {
                for value: UInt64 in [0, UInt64(65536 - L.blockHeader), 65536, .max] {
                    try raw.set(bytes: pristine, at: 0)
                    try raw.set(value, at: offset)
                    operate()
                }
            }
            for _ in 0..<3000 {
                try raw.set(bytes: pristine, at: 0)
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    var offset = Int.random(in: 0..<65536 / 8, using: &random) * 8
                    if mutex.contains(offset) { offset = HeapHeader.directory.offset }
                    let value: UInt64 = [0, 1, 16, .max, UInt64.random(in: 0...70000, using: &random), UInt64.random(in: 0...UInt64.max, using: &random)].randomElement(using: &random)!
                    try raw.set(value, at: offset)
                }
                operate()
            }
            #expect(foreign > 1000)
            try raw.set(bytes: pristine, at: 0)
            try heap.verify()
            }
        }
    }

    @Test("a hash map and a growable array in the heap, shared by processes")
    func containers() throws {
        try Names.with(.posix) { name in
            var heap = try SharedHeap(formatting: try SharedMemory.create(name, size: 4 << 20))
            let map = try SharedHashMap<UInt64, Point>.findOrCreate("points", capacity: 100, in: &heap)
            #expect(map.capacity == 128)
            #expect(try map.value(forKey: 1, in: &heap) == nil)
            for key in 0..<UInt64(128) { #expect(try map.updateValue(Point(x: Int32(key), y: 0), forKey: key * 1000, in: &heap) == nil) }
            expectError(.noSpace) { try map.updateValue(Point(x: 0, y: 0), forKey: 7, in: &heap) }
            #expect(try map.updateValue(Point(x: 1, y: 1), forKey: 5000, in: &heap) == Point(x: 5, y: 0))  // full, but the key is there
            #expect(try map.value(forKey: 5000, in: &heap) == Point(x: 1, y: 1))
            for key in stride(from: 0, to: UInt64(128), by: 2) { #expect(try map.removeValue(forKey: key * 1000, in: &heap) != nil) }
            #expect(try map.removeValue(forKey: 0, in: &heap) == nil)
            #expect(try map.count(in: &heap) == 64)
            for key in 0..<UInt64(128) {
                let value = try map.value(forKey: key * 1000, in: &heap)
                #expect((value == nil) == key.isMultiple(of: 2))
            }
            // Removed slots are reused.
            for key in 0..<UInt64(64) { try map.updateValue(Point(x: 9, y: 9), forKey: 1_000_000 + key, in: &heap) }
            #expect(try map.count(in: &heap) == 128)
            expectError(.typeMismatch) { try SharedHashMap<UInt64, UInt64>.findOrCreate("points", capacity: 100, in: &heap) }
            expectError(.invalidArgument) { try SharedHashMap<UInt64, UInt64>.create(capacity: 0, in: &heap) }
            let sum = try map.modifyValue(forKey: 1_000_000, initial: Point(x: 0, y: 0), in: &heap) { $0.x += 1 }
            #expect(sum == Point(x: 10, y: 9))

            let array = try SharedArray<Point>.findOrCreate("trail", in: &heap)
            #expect(try array.count(in: &heap) == 0)
            #expect(try array.removeLast(in: &heap) == nil)
            for index in 0..<1000 { try array.append(Point(x: Int32(index), y: -1), in: &heap) }
            try array.append(contentsOf: (0..<500).map { Point(x: Int32($0), y: -2) }, in: &heap)
            #expect(try array.count(in: &heap) == 1500)
            #expect(try array.load(at: 999, in: &heap) == Point(x: 999, y: -1))
            try array.store(Point(x: 0, y: 0), at: 999, in: &heap)
            expectError(.outOfBounds) { try array.load(at: 1500, in: &heap) }
            #expect(try array.removeLast(in: &heap) == Point(x: 499, y: -2))
            #expect(try array.withSpan(in: &heap) { span in span.count == 1499 && span[998] == Point(x: 998, y: -1) })
            expectError(.typeMismatch) { try SharedArray<UInt8>.findOrCreate("trail", in: &heap) }
            // Only the current block is allocated: each move freed the one before.
            let blocksBefore = try heap.verify().allocatedBlocks
            try array.removeAll(in: &heap)
            #expect(try heap.verify().allocatedBlocks == blocksBefore - 1)
            let unnamed = try SharedArray<UInt8>.create(in: &heap)
            try unnamed.append(contentsOf: Array(repeating: 1, count: 100), in: &heap)
            // More than any heap holds: an error, not an overflow (the collection is never walked).
            expectError(.noSpace) { try unnamed.append(contentsOf: repeatElement(UInt8(1), count: Int.max), in: &heap) }
            expectError(.noSpace) { try unnamed.append(contentsOf: repeatElement(UInt8(1), count: Int.max / 2), in: &heap) }
            #expect(try unnamed.count(in: &heap) == 100)
            try unnamed.removeAll(freeingHeader: true, in: &heap)
            #expect(try heap.verify().allocatedBlocks == blocksBefore - 1)

            // Four processes add to one map at once; no update is lost.
            _ = try SharedHashMap<UInt32, UInt64>.findOrCreate("counts", capacity: 128, in: &heap)
            let workers = try (0..<4).map { _ in try Probe.start(["map-add", name.description, "300"]) }
            for worker in workers { #expect(worker.finish().lastLine == "ok") }
            let counts = try SharedHashMap<UInt32, UInt64>.findOrCreate("counts", capacity: 128, in: &heap)
            let entries = try counts.entries(in: &heap)
            #expect(entries.count == 64 && entries.allSatisfy { $0.value == 1200 })
        }
    }
}
