import Atomics
import Glibc

// The heap's layout in the region and its allocator: two-level segregated fit (TLSF, Masmano et al. 2004) over
// blocks with boundary tags, at offsets from the heap's start. Docs/StructuredData.md draws it.
//
// Crash safety rests on one rule: what is true about the heap is the chain of block headers (each block's size and
// its free/named/end flags) and the state word of each named entry; everything else (the free lists and their
// bitmaps, each block's copy of its predecessor's size, the directory's hash chains, the counters) is derived and
// can be rebuilt from the chain. Every change to the truth is prepared where the chain does not yet look (inside a
// free block, past the end) and made visible by one 8-byte store. So a process killed at any instruction leaves
// a chain that walks, and the next locker (who gets EOWNERDEAD from the robust mutex) rebuilds the rest.

enum HeapLayout {
    /// "SMHEAP" in the first six bytes.
    static let magic: UInt64 = 0x0000_5041_4548_4D53
    static let major: UInt16 = 1
    static let minor: UInt16 = 0

    // The header's fields are declared in HeapHeader (Kit/Formats.swift).
    static let firstBlock = 8720

    static let firstLevels = 34
    static let secondLevels = 16
    static let buckets = 512

    // Blocks: [size of the previous block, u64 (derived)][size | flags, u64] then the payload. Sizes are multiples
    // of 16 and include the 16-byte header; a free block keeps its list links in its first 16 payload bytes.
    static let blockHeader = 16
    static let minimumBlock = 32
    static let freeFlag: UInt64 = 1
    static let namedFlag: UInt64 = 2
    static let endFlag: UInt64 = 4
    /// The directory's bucket array, once it outgrew the header.
    static let indexFlag: UInt64 = 8
    static let flagMask: UInt64 = 15

    static let formatting: UInt64 = 1
    static let ready: UInt64 = 2

    /// The smallest heap: the header and room to allocate.
    static let minimumSize = 16384
    /// The largest heap (the size classes stop there).
    static let maximumExtent = 1 << 40
    /// The largest alignment an allocation can ask for: a page, the alignment every process's mapping has.
    static let maximumAlignment = 4096

    /// The size class of a free block of `size` bytes: sizes below 256 have a class per 16 bytes; above, each power
    /// of two is split into 16.
    static func sizeClass(_ size: Int) -> (first: Int, second: Int) {
        if size < 256 { return (0, size >> 4) }
        let top = Int.bitWidth - 1 - size.leadingZeroBitCount
        return (top - 7, (size >> (top - 4)) & 15)
    }

    /// The block size (header included) for `count` bytes of payload, or nil if that is beyond any heap.
    static func blockSize(forPayload count: Int) -> Int? {
        guard count >= 0, count <= maximumExtent else { return nil }
        return max(minimumBlock, (count + blockHeader + 15) & ~15)
    }
}

/// The heap's bytes as this process maps them, for one operation: every offset read from them is checked against
/// `extent` before it is followed, and what does not add up is ``SharedMemoryError/Code/foreign``.
struct HeapBytes {
    /// The heap's start in this process.
    let base: UnsafeMutableRawPointer
    /// The heap's size, as its header says (never more than this process maps).
    let extent: Int
    /// Where the heap starts in the region (the alignment of an offset depends on it).
    let offset: Int
    /// Errors made here name no region (copying a name on every operation costs more than the operation); the
    /// heap adds its region's name to every error it passes on.
    var region: RegionName? { nil }

    typealias L = HeapLayout

    // MARK: Words

    func word(_ at: Int) -> UInt64 { base.load(fromByteOffset: at, as: UInt64.self) }
    func setWord(_ at: Int, _ value: UInt64) { base.storeBytes(of: value, toByteOffset: at, as: UInt64.self) }
    func word32(_ at: Int) -> UInt32 { base.load(fromByteOffset: at, as: UInt32.self) }
    func setWord32(_ at: Int, _ value: UInt32) { base.storeBytes(of: value, toByteOffset: at, as: UInt32.self) }

    /// A store that makes a change to the heap's truth visible: every store before it in program order is done first
    /// (the compiler may not sink one past it), so a process killed here has either made the change or not.
    func commit(_ at: Int, _ value: UInt64) {
        atomicMemoryFence(ordering: .releasing)
        setWord(at, value)
        atomicMemoryFence(ordering: .releasing)
    }

    func corrupt(_ what: String) -> SharedMemoryError {
        SharedMemoryError(.foreign, "the heap's metadata does not add up (\(what)): a process wrote over it, or this is not a heap SharedMemory made; its data cannot be trusted", region: region)
    }

    /// The address of `count` values from `index` of `pointer`, checked to lie inside it and the heap, aligned.
    func address<T: BitwiseCopyable>(of pointer: HeapPointer<T>, index: Int, count: Int) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        try address(pointer.offset, covering: pointer.count, from: index, count: count, of: HeapValueLayout(T.self))
    }

    /// The address of `count` values from `index` of the `covering` values at `at`, checked to lie inside them and
    /// the heap, and aligned.
    func address(_ at: UInt64, covering: Int, from index: Int, count: Int, of layout: HeapValueLayout) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let (start, overflowA) = index.multipliedReportingOverflow(by: layout.stride)
        let (length, overflowB) = count.multipliedReportingOverflow(by: layout.stride)
        guard index >= 0, count >= 0, index <= covering, count <= covering - index, !overflowA, !overflowB,
              at >= UInt64(L.firstBlock), at <= UInt64(extent),
              UInt64(start) <= UInt64(extent) - at, UInt64(length) <= UInt64(extent) - at - UInt64(start)
        else {
            throw SharedMemoryError(.outOfBounds, "\(count) values of \(layout.type) from index \(index) of the \(covering) at offset \(at) are not inside them and the heap's \(extent) bytes", region: region)
        }
        let offset = Int(at) + start
        guard (self.offset + offset) % layout.alignment == 0 else {
            throw SharedMemoryError(.invalidArgument, "offset \(at) is not aligned for \(layout.type)", region: region)
        }
        return base + offset
    }

    // MARK: Blocks

    /// A block offset read from the heap, checked: aligned, past the header, with room for a block header.
    func block(_ raw: UInt64, _ what: @autoclosure () -> String) throws(SharedMemoryError) -> Int {
        guard raw >= UInt64(L.firstBlock), raw & 15 == 0, raw <= UInt64(extent - L.blockHeader) else {
            throw corrupt("\(what()) is \(raw), outside the heap's \(extent) bytes")
        }
        return Int(raw)
    }

    /// A free list's link read from the heap, checked before anything is read or written through it: a block
    /// offset (``block(_:_:)``) whose header says it is a free block lying whole inside the heap, so that its own
    /// links (its first 16 payload bytes) are inside it. The end marker, a used block, or a block running past the
    /// end is `foreign`: following it would touch bytes that are not a free block's links, or not the heap's.
    func freeBlock(_ raw: UInt64, _ what: @autoclosure () -> String) throws(SharedMemoryError) -> (block: Int, size: Int) {
        let b = try block(raw, what())
        let (size, flags) = try header(b)
        guard flags == L.freeFlag else { throw corrupt("\(what()) is \(raw), a block with flags \(flags), not a free block") }
        return (b, size)
    }

    /// The block at `b`: its size and flags, checked to lie inside the heap (the end marker is 16 bytes).
    func header(_ b: Int) throws(SharedMemoryError) -> (size: Int, flags: UInt64) {
        guard b >= L.firstBlock, b <= extent - L.blockHeader else {
            throw corrupt("a block at \(b) would lie outside the heap's \(extent) bytes")
        }
        let value = word(b + 8)
        let size = Int(truncatingIfNeeded: value & ~L.flagMask)
        let flags = value & L.flagMask
        if flags & L.endFlag != 0 {
            guard size == L.blockHeader, flags == L.endFlag, b + L.blockHeader == extent else {
                throw corrupt("the end marker at \(b) reads \(value)")
            }
        } else {
            guard size >= L.minimumBlock, size <= extent - L.blockHeader - b,
                  flags == 0 || flags == L.freeFlag || flags == L.namedFlag || flags == L.indexFlag
            else { throw corrupt("the block at \(b) says it has size \(size) and flags \(flags)") }
        }
        return (size, flags)
    }

    func setPreviousSize(_ b: Int, _ size: Int) { setWord(b, UInt64(size)) }

    // MARK: Free lists

    private func headAt(_ index: Int) -> Int { HeapHeader.heads.offset + index * 8 }
    private func secondMapAt(_ first: Int) -> Int { HeapHeader.secondLevelMaps.offset + first * 4 }

    /// Puts the free block at `b` at the head of its size class's list. The list's old head is read from the heap, so
    /// it is checked before anything is written through it (a peer may have written over it: `foreign`).
    func insertFree(_ b: Int, size: Int) throws(SharedMemoryError) {
        let (first, second) = L.sizeClass(size)
        let index = first * L.secondLevels + second
        let nextRaw = word(headAt(index))
        let next = nextRaw == 0 ? 0 : try freeBlock(nextRaw, "a free list's head").block
        setWord(b + 16, UInt64(next))
        setWord(b + 24, 0)
        if next != 0 { setWord(next + 24, UInt64(b)) }
        setWord(headAt(index), UInt64(b))
        setWord32(secondMapAt(first), word32(secondMapAt(first)) | (1 << second))
        setWord(HeapHeader.firstLevelMap.offset, word(HeapHeader.firstLevelMap.offset) | (1 << first))
        setWord(HeapHeader.freeBytes.offset, word(HeapHeader.freeBytes.offset) &+ UInt64(size))
    }

    func removeFree(_ b: Int, size: Int) throws(SharedMemoryError) {
        let (first, second) = L.sizeClass(size)
        let index = first * L.secondLevels + second
        let nextRaw = word(b + 16)
        let previousRaw = word(b + 24)
        let next = nextRaw == 0 ? 0 : try freeBlock(nextRaw, "the free block after \(b)").block
        let previous = previousRaw == 0 ? 0 : try freeBlock(previousRaw, "the free block before \(b)").block
        if previous != 0 {
            guard word(previous + 16) == UInt64(b) else { throw corrupt("the free list around \(b) is broken") }
            setWord(previous + 16, UInt64(next))
        } else {
            guard word(headAt(index)) == UInt64(b) else { throw corrupt("the free block at \(b) is not on its list") }
            setWord(headAt(index), UInt64(next))
        }
        if next != 0 { setWord(next + 24, UInt64(previous)) }
        if word(headAt(index)) == 0 {
            let map = word32(secondMapAt(first)) & ~(1 << second)
            setWord32(secondMapAt(first), map)
            if map == 0 { setWord(HeapHeader.firstLevelMap.offset, word(HeapHeader.firstLevelMap.offset) & ~(1 << first)) }
        }
        setWord(HeapHeader.freeBytes.offset, word(HeapHeader.freeBytes.offset) &- UInt64(size))
    }

    /// A free block of at least `want` bytes, in O(1) through the bitmaps; if the rounding that makes it O(1) skips
    /// the only fitting blocks (in `want`'s own class), a walk of that one list.
    func findFree(_ want: Int) throws(SharedMemoryError) -> Int? {
        var rounded = want
        if want >= 256 { rounded += (1 << (Int.bitWidth - 1 - want.leadingZeroBitCount - 4)) - 1 }
        if rounded < L.maximumExtent {
            var (first, second) = L.sizeClass(rounded)
            var map = word32(secondMapAt(first)) & (UInt32.max << second)
            if map == 0 {
                let above = word(HeapHeader.firstLevelMap.offset) & (first + 1 < 64 ? UInt64.max << (first + 1) : 0)
                if above != 0 {
                    first = above.trailingZeroBitCount
                    guard first < L.firstLevels else { throw corrupt("the first-level map reads \(above)") }
                    map = word32(secondMapAt(first))
                }
            }
            if map != 0 {
                second = map.trailingZeroBitCount
                guard second < L.secondLevels else { throw corrupt("the second-level map of class \(first) reads \(map)") }
                let (b, size) = try freeBlock(word(headAt(first * L.secondLevels + second)), "a free list's head")
                guard size >= want else { throw corrupt("the free list of class \(first).\(second) holds a block of \(size) bytes") }
                return b
            }
        }
        let (first, second) = L.sizeClass(min(want, L.maximumExtent - 1))
        var raw = word(headAt(first * L.secondLevels + second))
        var hops = 0
        while raw != 0 {
            let (b, size) = try freeBlock(raw, "a free list's link")
            if size >= want { return b }
            hops += 1
            guard hops <= extent / L.minimumBlock else { throw corrupt("a free list loops") }
            raw = word(b + 16)
        }
        return nil
    }

    /// Makes the free block at `b` (already off its list, `size` bytes) an allocated block of `want` bytes, splitting
    /// off the rest as a free block when it is big enough. A named block's entry state is set to 0 (constructing)
    /// before the block is, so that it can never be seen allocated with a stale state.
    func carve(_ b: Int, size: Int, want: Int, flags: UInt64) throws(SharedMemoryError) {
        if flags == L.namedFlag { setWord(b + L.blockHeader, 0) }
        if size - want >= L.minimumBlock {
            let rest = b + want
            setPreviousSize(rest, want)
            setWord(rest + 8, UInt64(size - want) | L.freeFlag)
            HeapCrash.point("allocate.split")
            commit(b + 8, UInt64(want) | flags)
            HeapCrash.point("allocate.committed")
            setPreviousSize(rest + size - want, size - want)
            try insertFree(rest, size: size - want)
        } else {
            commit(b + 8, UInt64(size) | flags)
            HeapCrash.point("allocate.committed")
        }
    }

    /// Allocates a block whose payload holds `count` bytes aligned to `alignment` (a power of two up to a page), and
    /// returns the payload's offset; nil if no free block is big enough.
    func allocate(_ count: Int, alignment: Int, flags: UInt64 = 0) throws(SharedMemoryError) -> Int? {
        guard let want = L.blockSize(forPayload: count) else { return nil }
        if alignment <= 16 {
            guard let b = try findFree(want) else { return nil }
            let size = try header(b).size
            try removeFree(b, size: size)
            HeapCrash.point("allocate.unlinked")
            try carve(b, size: size, want: want, flags: flags)
            return b + L.blockHeader
        }
        // Room for the block, a leading piece of at least a minimum block, and the alignment.
        let need = want + alignment + L.minimumBlock
        guard need < L.maximumExtent, var b = try findFree(need) else { return nil }
        var size = try header(b).size
        try removeFree(b, size: size)
        HeapCrash.point("allocate.unlinked")
        var payload = b + L.blockHeader
        var gap = (alignment - (offset + payload) % alignment) % alignment
        if gap > 0 && gap < L.minimumBlock { gap += alignment }
        payload += gap
        if gap > 0 {
            // Split off the leading piece as a free block of its own.
            let aligned = b + gap
            setPreviousSize(aligned, gap)
            setWord(aligned + 8, UInt64(size - gap) | L.freeFlag)
            commit(b + 8, UInt64(gap) | L.freeFlag)
            HeapCrash.point("allocate.aligned")
            setPreviousSize(aligned + size - gap, size - gap)
            try insertFree(b, size: gap)
            b = aligned
            size -= gap
        }
        try carve(b, size: size, want: want, flags: flags)
        return payload
    }

    /// Frees the block whose payload is at `payload`, merging it with free neighbours. A payload that is not an
    /// allocated block's (freed already, never allocated, a named object's or the directory's when `flags` is 0) is
    /// refused.
    func free(payload: Int, flags expected: UInt64 = 0) throws(SharedMemoryError) {
        let (b, size, flags) = try allocatedBlock(payload)
        guard flags == expected else {
            let what = flags & L.freeFlag != 0 ? "is free already (freed twice?)"
                : flags == L.namedFlag ? "is a named object: destroy it by name"
                : flags == L.indexFlag ? "is the heap's own directory" : "is not what was expected here"
            throw SharedMemoryError(.invalidArgument, "the block at offset \(payload) \(what)", region: region)
        }
        let next = b + size
        let (nextSize, nextFlags) = try header(next)
        var start = b
        var total = size
        if nextFlags == L.freeFlag {
            try removeFree(next, size: nextSize)
            total += nextSize
        }
        let previousSize = Int(truncatingIfNeeded: word(b))
        if previousSize != 0 {
            guard previousSize > 0, previousSize <= b - L.firstBlock, previousSize & 15 == 0 else { throw corrupt("the block at \(b) says the one before it has \(previousSize) bytes") }
            let previous = b - previousSize
            let (size, flags) = try header(previous)
            guard size == previousSize else { throw corrupt("the block at \(previous) has \(size) bytes, not the \(previousSize) its successor says") }
            if flags == L.freeFlag {
                try removeFree(previous, size: size)
                start = previous
                total += size
            }
        }
        HeapCrash.point("free.unlinked")
        commit(start + 8, UInt64(total) | L.freeFlag)
        HeapCrash.point("free.committed")
        setPreviousSize(start + total, total)
        try insertFree(start, size: total)
    }

    /// The payload bytes of the allocated block at `payload`.
    func usableSize(payload: Int) throws(SharedMemoryError) -> Int {
        let (_, size, flags) = try allocatedBlock(payload)
        guard flags & (L.freeFlag | L.endFlag) == 0 else {
            throw SharedMemoryError(.invalidArgument, "the block at offset \(payload) is free", region: region)
        }
        return size - L.blockHeader
    }

    /// The block whose payload a caller's handle says is at `payload`: a handle is the caller's word, not the heap's,
    /// so what does not look like a block's start (its header in range, and its successor recording its size) is
    /// `invalidArgument` rather than `foreign`. A stale handle to a block since merged into a bigger free one fails
    /// the successor check; one to a block allocated again passes (as in any allocator).
    private func allocatedBlock(_ payload: Int) throws(SharedMemoryError) -> (block: Int, size: Int, flags: UInt64) {
        let b = payload - L.blockHeader
        if b >= L.firstBlock, b & 15 == 0, b <= extent - L.minimumBlock, let (size, flags) = try? header(b),
           word(b + size) == UInt64(size), (try? header(b + size)) != nil {
            return (b, size, flags)
        }
        throw SharedMemoryError(.invalidArgument, "offset \(payload) is not the start of a block this heap allocated (a stale or forged handle?)", region: region)
    }

    /// The largest free block's size, looking only at the highest non-empty class (O(its list)).
    func largestFree() throws(SharedMemoryError) -> Int {
        let map = word(HeapHeader.firstLevelMap.offset)
        guard map != 0 else { return 0 }
        let first = Int.bitWidth - 1 - map.leadingZeroBitCount
        guard first < L.firstLevels else { throw corrupt("the first-level map reads \(map)") }
        let seconds = word32(secondMapAt(first))
        guard seconds != 0, seconds >> L.secondLevels == 0 else { throw corrupt("the second-level map of class \(first) reads \(seconds)") }
        var raw = word(headAt(first * L.secondLevels + (UInt32.bitWidth - 1 - seconds.leadingZeroBitCount)))
        var largest = 0
        var hops = 0
        while raw != 0 {
            let (b, size) = try freeBlock(raw, "a free list's link")
            largest = max(largest, size)
            hops += 1
            guard hops <= extent / L.minimumBlock else { throw corrupt("a free list loops") }
            raw = word(b + 16)
        }
        return largest
    }

    // MARK: Format, repair, verify

    /// Writes an empty heap of `extent` bytes over a zeroed or abandoned header (the format word is the caller's).
    func format() throws(SharedMemoryError) {
        (base + HeapHeader.firstLevelMap.offset).initializeMemory(as: UInt8.self, repeating: 0, count: L.firstBlock - HeapHeader.firstLevelMap.offset)
        setWord32(HeapHeader.needsRepair.offset, 0)
        let end = extent - L.blockHeader
        setPreviousSize(L.firstBlock, 0)
        setWord(L.firstBlock + 8, UInt64(end - L.firstBlock) | L.freeFlag)
        setPreviousSize(end, end - L.firstBlock)
        setWord(end + 8, UInt64(L.blockHeader) | L.endFlag)
        try insertFree(L.firstBlock, size: end - L.firstBlock)
        try RobustMutex(address: base + HeapHeader.mutex.offset, region: nil).initialize()
        setWord(HeapHeader.extent.offset, UInt64(extent))
        setWord(HeapHeader.generation.offset, 0)
        HeapHeader.major.store(L.major, base)
        HeapHeader.minor.store(L.minor, base)
        commit(HeapHeader.magic.offset, L.magic)
    }

    /// After a process died holding the lock: finishes or undoes what it left half-done in the chain (a named block
    /// still being constructed or destroyed is freed; free neighbours are merged; an interrupted growth is
    /// finished), then rebuilds everything derived from the chain.
    func repair() throws(SharedMemoryError) {
        var b = L.firstBlock
        var previousFree: Int? = nil
        while true {
            // The end marker may sit before the extent, if a growth died between setting one and moving the other.
            if word(b + 8) == UInt64(L.blockHeader) | L.endFlag, b + L.blockHeader <= extent { break }
            let (size, flags) = try header(b)
            var isFree = flags == L.freeFlag
            // A named block not live was half constructed or half destroyed; the directory's bucket array is rebuilt.
            if (flags == L.namedFlag && word(b + L.blockHeader) != HeapDirectory.live) || flags == L.indexFlag {
                commit(b + 8, UInt64(size) | L.freeFlag)
                isFree = true
            }
            if isFree, let previous = previousFree {
                commit(previous + 8, UInt64(b + size - previous) | L.freeFlag)
            } else {
                previousFree = isFree ? b : nil
            }
            b += size
        }
        // A growth that set the extent but died before linking the new space: link it now.
        if b + L.blockHeader < extent {
            let end = extent - L.blockHeader
            setWord(end + 8, UInt64(L.blockHeader) | L.endFlag)
            if let previous = previousFree {
                commit(previous + 8, UInt64(end - previous) | L.freeFlag)
            } else {
                commit(b + 8, UInt64(end - b) | L.freeFlag)
            }
        }
        try rebuild()
    }

    /// Rebuilds the derived data (free lists, bitmaps, predecessor sizes, the directory, counters) from the chain.
    func rebuild() throws(SharedMemoryError) {
        (base + HeapHeader.firstLevelMap.offset).initializeMemory(as: UInt8.self, repeating: 0, count: 24)
        setWord(HeapHeader.directory.offset, 0)
        setWord(HeapHeader.directoryCount.offset, 0)
        (base + HeapHeader.secondLevelMaps.offset).initializeMemory(as: UInt8.self, repeating: 0, count: L.firstBlock - HeapHeader.secondLevelMaps.offset)
        var b = L.firstBlock
        var previousSize = 0
        while true {
            setPreviousSize(b, previousSize)
            let (size, flags) = try header(b)
            if flags & L.endFlag != 0 { break }
            if flags == L.freeFlag { try insertFree(b, size: size) }
            if flags == L.namedFlag { try HeapDirectory(bytes: self).link(b) }
            previousSize = size
            b += size
        }
    }

    /// Walks everything and checks that it agrees: the chain ends at the end marker, each block's predecessor size is
    /// right, no two free blocks touch, every free block is on exactly the list of its class (and nothing else is),
    /// the bitmaps match the lists, the counters match, and the directory holds exactly the live named blocks.
    func verify() throws(SharedMemoryError) -> HeapStatistics {
        var statistics = HeapStatistics(size: extent)
        var b = L.firstBlock
        var previousSize = 0
        var previousFree = false
        var freeBlocks = Set<Int>()
        var namedBlocks = Set<Int>()
        var indexBlock: Int? = nil
        while true {
            guard word(b) == UInt64(previousSize) else { throw corrupt("the block at \(b) says its predecessor has \(word(b)) bytes, not \(previousSize)") }
            let (size, flags) = try header(b)
            if flags & L.endFlag != 0 { break }
            if flags == L.freeFlag {
                guard !previousFree else { throw corrupt("two free blocks touch at \(b)") }
                freeBlocks.insert(b)
                statistics.freeBytes += size
                statistics.freeBlocks += 1
                statistics.largestFreeBlock = max(statistics.largestFreeBlock, size)
            } else {
                statistics.allocatedBlocks += 1
                statistics.allocatedBytes += size - L.blockHeader
                if flags == L.namedFlag {
                    guard word(b + L.blockHeader) == HeapDirectory.live else { throw corrupt("a named object at \(b) is half made or half destroyed") }
                    namedBlocks.insert(b)
                }
                if flags == L.indexFlag {
                    guard indexBlock == nil else { throw corrupt("two blocks hold the directory") }
                    indexBlock = b
                    statistics.allocatedBlocks -= 1
                    statistics.allocatedBytes -= size - L.blockHeader
                }
            }
            previousFree = flags == L.freeFlag
            previousSize = size
            b += size
        }
        guard b + L.blockHeader == extent else { throw corrupt("the chain ends at \(b), not at the end of the heap") }
        var listed = 0
        for first in 0..<L.firstLevels {
            var anyInLevel = false
            for second in 0..<L.secondLevels {
                var raw = word(headAt(first * L.secondLevels + second))
                let marked = word32(secondMapAt(first)) & (1 << second) != 0
                guard marked == (raw != 0) else { throw corrupt("the bitmap of class \(first).\(second) disagrees with its list") }
                anyInLevel = anyInLevel || raw != 0
                var previous: UInt64 = 0
                while raw != 0 {
                    let block = try block(raw, "a free list's link")
                    guard freeBlocks.remove(block) != nil else { throw corrupt("a free list holds \(block), which is not a free block (or is listed twice)") }
                    let size = try header(block).size
                    guard L.sizeClass(size) == (first, second) else { throw corrupt("the free block at \(block) is on the wrong list") }
                    guard word(block + 24) == previous else { throw corrupt("the back link of \(block) is wrong") }
                    listed += size
                    previous = raw
                    raw = word(block + 16)
                }
            }
            guard (word(HeapHeader.firstLevelMap.offset) & (1 << first) != 0) == anyInLevel else { throw corrupt("the first-level bitmap disagrees at \(first)") }
        }
        guard freeBlocks.isEmpty else { throw corrupt("free blocks \(freeBlocks.sorted()) are on no list") }
        guard listed == statistics.freeBytes, word(HeapHeader.freeBytes.offset) == UInt64(listed) else { throw corrupt("the free byte count is wrong") }
        let directory = HeapDirectory(bytes: self)
        let buckets = try directory.buckets()
        guard (buckets.at == HeapHeader.buckets.offset) == (indexBlock == nil), indexBlock.map({ $0 + L.blockHeader == buckets.at }) ?? true else {
            throw corrupt("the directory's bucket array is not the block that holds it")
        }
        statistics.namedObjects = try directory.verify(namedBlocks)
        return statistics
    }

    /// Grows the heap to `target` bytes (`mapped` are mapped here): writes the new end marker, sets the extent, then
    /// turns the old end marker into a free block (merged with a free predecessor) in one store.
    static func grow(_ old: HeapBytes, to target: Int) throws(SharedMemoryError) {
        let grown = HeapBytes(base: old.base, extent: target, offset: old.offset)
        let oldEnd = old.extent - L.blockHeader
        let newEnd = target - L.blockHeader
        guard try old.header(oldEnd).flags == L.endFlag else { throw old.corrupt("the heap does not end where its header says") }
        grown.setWord(newEnd + 8, UInt64(L.blockHeader) | L.endFlag)
        grown.commit(HeapHeader.extent.offset, UInt64(target))
        HeapCrash.point("grow.extended")
        let previousSize = Int(truncatingIfNeeded: grown.word(oldEnd))
        var start = oldEnd
        if previousSize > 0, previousSize <= oldEnd - L.firstBlock {
            let previous = oldEnd - previousSize
            let (size, flags) = try grown.header(previous)
            if flags == L.freeFlag, size == previousSize {
                try grown.removeFree(previous, size: size)
                start = previous
            }
        }
        grown.commit(start + 8, UInt64(newEnd - start) | L.freeFlag)
        grown.setPreviousSize(newEnd, newEnd - start)
        try grown.insertFree(start, size: newEnd - start)
        grown.setWord(HeapHeader.generation.offset, grown.word(HeapHeader.generation.offset) &+ 1)
    }
}

/// What a heap holds, from ``SharedHeap/statistics()`` or ``SharedHeap/verify()``.
public struct HeapStatistics: Sendable, Hashable {
    /// The heap's size in bytes (its header included).
    public var size: Int
    /// Bytes in free blocks (block headers included: what an allocation could use is 16 bytes less per block).
    public var freeBytes = 0
    /// How many free blocks there are.
    public var freeBlocks = 0
    /// The largest free block, header included: an allocation of up to this minus 16 bytes (16-byte aligned) fits.
    public var largestFreeBlock = 0
    /// Allocated blocks (named objects included; not the directory's own bucket array, once it outgrew the header).
    public var allocatedBlocks = 0
    /// Payload bytes of the allocated blocks.
    public var allocatedBytes = 0
    /// Named objects in the directory.
    public var namedObjects = 0

    init(size: Int) { self.size = size }
}

/// Debug builds only: kills the process (SIGKILL) at a named point inside a heap operation when the environment
/// asks for it (`SHM_HEAP_CRASH_AT=point`, and `SHM_HEAP_CRASH_AFTER=N` for the Nth time it is reached), so the
/// tests can prove that every point leaves a heap the next process repairs.
enum HeapCrash {
    #if DEBUG
    nonisolated(unsafe) static var target: String? = getenv("SHM_HEAP_CRASH_AT").map { String(cString: $0) }
    nonisolated(unsafe) static var remaining: Int = getenv("SHM_HEAP_CRASH_AFTER").flatMap { Int(String(cString: $0)) } ?? 1
    #endif

    @inline(__always)
    static func point(_ name: StaticString) {
        #if DEBUG
        guard let target, target == name.description else { return }
        remaining -= 1
        if remaining <= 0 { raise(SIGKILL) }
        #endif
    }
}
