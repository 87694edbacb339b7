import Glibc
import SharedMemory

// The heap's operations for the tests (see HeapTests):
//
//   heap-work NAME OPERATIONS SEED
//                   attach (or format) the heap at 0 and do OPERATIONS random allocations and frees of 16 B to
//                   64 KiB, filling each block with a pattern of this process and checking it before freeing (two
//                   processes given the same bytes would overwrite each other's), and findOrConstruct on 64 shared
//                   names; frees everything; prints `ok CREATED`, how many of the names this process constructed
//   heap-script NAME
//                   one of each operation (allocate with a split, an aligned allocate, free with merging, construct
//                   "made", destroy "doomed", grow by 64 KiB on a resizable backend); with SHM_HEAP_CRASH_AT set
//                   (a debug build), the process kills itself at that point; prints `ok survived` otherwise
//   heap-format NAME
//                   format the heap at 0 (SHM_HEAP_CRASH_AT=format.claimed kills it half way)
//   heap-churn NAME SEED
//                   attach, print `ok ready`, then allocate, free, construct and destroy at random until killed; and
//                   update and remove keys of the map "churn-map" (key k always maps to 3k), append to and remove
//                   from the array "churn-array" (element i is always i)
//   map-add NAME COUNT
//                   COUNT times, add 1 to the value of each key 0..<64 of the map "counts" (UInt32 -> UInt64)
//   heap-wait-read NAME OBJECT
//                   attach, print `ok attached`, wait for a line on standard input, then print `ok SUM COUNT` of the
//                   UInt64 values of the named object OBJECT (found after the heap may have grown)

struct ProbeRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next(_ bound: Int) -> Int {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Int(state % UInt64(bound))
    }
}

func heapProbe(_ operation: String, _ name: RegionName, _ rest: [String]) throws(SharedMemoryError) -> String? {
    switch operation {
    case "heap-work":
        var heap = try SharedHeap(formattingOrAttaching: try attach(name))
        var random = ProbeRandom(UInt64(rest[1])!)
        let mark = UInt8(truncatingIfNeeded: getpid())
        var held: [HeapPointer<UInt8>] = []
        var created = 0
        func check(_ block: HeapPointer<UInt8>, _ heap: inout SharedHeap) throws -> Bool {
            try heap.withSpan(block) { span in
                for index in span.indices where span[index] != mark &+ UInt8(truncatingIfNeeded: index) { return false }
                return true
            }
        }
        for _ in 0..<Int(rest[0])! {
            switch random.next(10) {
            case 0..<5:
                let size = random.next(8) == 0 ? 1 + random.next(65536) : 16 + random.next(512)
                let block: HeapPointer<UInt8>
                do {
                    block = try heap.allocate(byteCount: size, alignment: random.next(4) == 0 ? 256 : 16)
                } catch where error.code == .noSpace {
                    continue
                }
                try? heap.withMutableSpan(block) { span in
                    for index in span.indices { span[index] = mark &+ UInt8(truncatingIfNeeded: index) }
                }
                held.append(block)
            case 5..<9 where !held.isEmpty:
                let block = held.remove(at: random.next(held.count))
                guard (try? check(block, &heap)) == true else { return "overwritten \(block)" }
                try heap.deallocate(block)
            default:
                let (_, made) = try heap.findOrConstruct("shared-\(random.next(64))", repeating: UInt64(7), count: 4)
                if made { created += 1 }
            }
        }
        for block in held {
            guard (try? check(block, &heap)) == true else { return "overwritten \(block)" }
            try heap.deallocate(block)
        }
        return "\(created)"
    case "heap-script":
        var heap = try SharedHeap(attaching: try attach(name))
        let small = try heap.allocate(byteCount: 100)
        let aligned = try heap.allocate(byteCount: 200, alignment: 1024)
        try heap.deallocate(small)
        try heap.deallocate(aligned)
        _ = try heap.construct("made", repeating: UInt64(0xfeed), count: 8)
        try heap.destroy("doomed")
        if name.backend == .posix || name.backend == .file {
            let region = heap.intoRegion()
            let grown = region.size + 65536
            heap = try SharedHeap(attaching: region)
            try heap.grow(to: grown)
        }
        return "survived"
    case "heap-format":
        _ = try SharedHeap(formatting: try attach(name))
        return "formatted"
    case "heap-churn":
        var heap = try SharedHeap(attaching: try attach(name))
        var random = ProbeRandom(UInt64(rest[0])!)
        var held: [HeapPointer<UInt8>] = []
        let map = try SharedHashMap<UInt32, UInt64>.findOrCreate("churn-map", capacity: 64, in: &heap)
        let array = try SharedArray<UInt64>.findOrCreate("churn-array", in: &heap)
        print("ok ready")
        fflush(nil)
        while true {
            switch random.next(11) {
            case 8:
                let key = UInt32(random.next(100))
                _ = try? map.updateValue(UInt64(key) * 3, forKey: key, in: &heap)
            case 9:
                try map.removeValue(forKey: UInt32(random.next(100)), in: &heap)
            case 10:
                let count = try array.count(in: &heap)
                if count < 2000, random.next(3) != 0 {
                    try array.append(contentsOf: (count..<count + 1 + random.next(20)).map { UInt64($0) }, in: &heap)
                } else {
                    try array.removeLast(in: &heap)
                }
            case 0..<3 where held.count < 4:
                if let block = try? heap.allocate(byteCount: 16 + random.next(1024), alignment: random.next(3) == 0 ? 128 : 16, zeroed: random.next(2) == 0) {
                    held.append(block)
                }
            case 3..<6 where !held.isEmpty:
                try heap.deallocate(held.remove(at: random.next(held.count)))
            case 6:
                _ = try? heap.findOrConstruct("churn-\(random.next(8))", repeating: UInt32(3), count: 1 + random.next(64))
            default:
                try heap.destroy("churn-\(random.next(8))")
            }
        }
    case "map-add":
        var heap = try SharedHeap(attaching: try attach(name))
        let map = try SharedHashMap<UInt32, UInt64>.findOrCreate("counts", capacity: 128, in: &heap)
        for _ in 0..<Int(rest[0])! {
            for key in 0..<UInt32(64) { try map.modifyValue(forKey: key, initial: 0, in: &heap) { $0 += 1 } }
        }
        return ""
    case "heap-wait-read":
        var heap = try SharedHeap(attaching: try attach(name))
        print("ok attached")
        fflush(nil)
        _ = readLine()
        guard let values = try heap.find(rest[0], as: UInt64.self) else { return "missing" }
        var sum: UInt64 = 0
        for index in 0..<values.count { sum &+= try heap.load(values, at: index) }
        return "\(sum) \(values.count)"
    default:
        return nil
    }
}
