import Glibc

// Named objects: each lives in one named block that holds its entry (name, type, count) and then its values. The
// entry's state word is the truth (live or not); the hash chains from the header's 512 buckets are derived.
//
// Entry, at the block's payload:
//   0 state u64 (0 constructing, `live`, `dying`)   8 hash of the name u64   16 next entry in the bucket u64
//   24 count u64   32 stride u32   36 alignment u32   40 size u32   44 name length u16   46 type-name length u16
//   48 offset of the values u64   56 the name's bytes, then the type name's, then padding, then the values

struct HeapDirectory {
    let bytes: HeapBytes

    static let live: UInt64 = 0x4556_494C_4A42_4F4E  // "NOBJLIVE"
    static let dying: UInt64 = 0x4549_4459_4A42_4F4E  // "NOBJDYIE"
    static let entryHeader = 56
    /// The longest name (and type name), in UTF-8 bytes.
    static let maximumName = 1024

    typealias L = HeapLayout

    /// An entry, read and checked; its name and type name stay in the heap (``name(_:)``, ``type(_:)``).
    struct Entry {
        let block: Int
        let nameLength: Int
        let typeLength: Int
        let typeSize: Int
        let stride: Int
        let alignment: Int
        let count: Int
        let values: Int

        var namesAt: Int { block + L.blockHeader + HeapDirectory.entryHeader }
    }

    func name(_ entry: Entry) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: bytes.base + entry.namesAt, count: entry.nameLength))
    }

    func type(_ entry: Entry) -> TypeIdentity {
        TypeIdentity(name: Array(UnsafeRawBufferPointer(start: bytes.base + entry.namesAt + entry.nameLength, count: entry.typeLength)),
                     size: entry.typeSize, stride: entry.stride, alignment: entry.alignment)
    }

    /// Whether the entry's values are of `type` (layout first, then the name where it lies).
    func holds(_ entry: Entry, _ type: TypeIdentity) -> Bool {
        guard entry.typeSize == type.size, entry.stride == type.stride, entry.alignment == type.alignment,
              entry.typeLength == type.name.count else { return false }
        return type.name.withUnsafeBytes { memcmp(bytes.base + entry.namesAt + entry.nameLength, $0.baseAddress!, $0.count) == 0 }
    }

    /// FNV-1a, 64-bit.
    static func hash(_ name: some Sequence<UInt8>) -> UInt64 { fnv1a(name) }

    /// The bucket array: the header's 512, or the block it moved to when the names outgrew them (checked: a
    /// power of two, inside the heap, in a block flagged as the directory's).
    func buckets() throws(SharedMemoryError) -> (at: Int, count: Int) {
        let at = bytes.word(HeapHeader.directory.offset), count = bytes.word(HeapHeader.directoryCount.offset)
        if at == 0 {
            guard count == 0 else { throw bytes.corrupt("the directory has \(count) buckets in the header") }
            return (HeapHeader.buckets.offset, L.buckets)
        }
        guard count > UInt64(L.buckets), count & (count - 1) == 0, count <= UInt64(bytes.extent / 8),
              at >= UInt64(L.firstBlock + L.blockHeader), at & 15 == 0, at <= UInt64(bytes.extent) - count * 8,
              case let (size, flags) = try bytes.header(Int(at) - L.blockHeader), flags == L.indexFlag,
              count * 8 <= UInt64(size - L.blockHeader)
        else { throw bytes.corrupt("the directory's bucket array (\(count) at \(at)) is not where it says") }
        return (Int(at), Int(count))
    }

    private func bucketAt(_ hash: UInt64, _ buckets: (at: Int, count: Int)) -> Int { buckets.at + Int(hash & UInt64(buckets.count - 1)) * 8 }

    /// A directory link read from the heap (a bucket, or an entry's next), checked before anything is read or
    /// written through it: a block offset whose header says it is a named block lying whole inside the heap, with
    /// room for an entry's fixed fields. Anything else is `foreign`.
    func namedBlock(_ raw: UInt64) throws(SharedMemoryError) -> (block: Int, size: Int) {
        let b = try bytes.block(raw, "a directory link")
        let (size, flags) = try bytes.header(b)
        guard flags == L.namedFlag, size >= L.blockHeader + Self.entryHeader else {
            throw bytes.corrupt("the directory points at \(b), a block of \(size) bytes with flags \(flags), not a named object")
        }
        return (b, size)
    }

    /// The entry in the named block at `b`, every field checked against the block.
    func entry(_ b: Int) throws(SharedMemoryError) -> Entry {
        let (_, size) = try namedBlock(UInt64(b))
        let p = b + L.blockHeader
        guard bytes.word(p) == Self.live else { throw bytes.corrupt("the directory points at \(b), which is not a live named object") }
        let count = bytes.word(p + 24)
        let stride = Int(bytes.word32(p + 32))
        let alignment = Int(bytes.word32(p + 36))
        let typeSize = Int(bytes.word32(p + 40))
        let nameLength = Int(bytes.base.load(fromByteOffset: p + 44, as: UInt16.self))
        let typeLength = Int(bytes.base.load(fromByteOffset: p + 46, as: UInt16.self))
        let values = bytes.word(p + 48)
        let namesEnd = p + Self.entryHeader + nameLength + typeLength
        let (length, overflow) = count.multipliedReportingOverflow(by: UInt64(stride))
        guard nameLength <= Self.maximumName, typeLength <= Self.maximumName, alignment > 0, alignment & (alignment - 1) == 0,
              alignment <= L.maximumAlignment, typeSize <= stride, !overflow, values >= UInt64(namesEnd),
              values <= UInt64(b + size), length <= UInt64(b + size) - values, (bytes.offset + Int(values)) % alignment == 0
        else { throw bytes.corrupt("the named object at \(b) has an entry that does not fit its block") }
        return Entry(block: b, nameLength: nameLength, typeLength: typeLength, typeSize: typeSize, stride: stride,
                     alignment: alignment, count: Int(count), values: Int(values))
    }

    /// The live entry named `name`, and the entry before it in its bucket (nil if it is the first).
    func find(_ name: UnsafeRawBufferPointer) throws(SharedMemoryError) -> (entry: Entry, previous: Int?)? {
        let hash = Self.hash(name)
        var raw = bytes.word(bucketAt(hash, try buckets()))
        var previous: Int? = nil
        var hops = 0
        while raw != 0 {
            let (b, size) = try namedBlock(raw)
            // The hash and the name are compared where they lie; only the match is read whole (and checked).
            if bytes.word(b + L.blockHeader + 8) == hash, matches(b, size, name) {
                return (try entry(b), previous)
            }
            hops += 1
            guard hops <= bytes.extent / L.minimumBlock else { throw bytes.corrupt("a directory chain loops") }
            previous = b
            raw = bytes.word(b + L.blockHeader + 16)
        }
        return nil
    }

    /// Whether the entry in the named block at `b` (`size` bytes, checked by ``namedBlock(_:)``) has the name `name`
    /// (its length first, then its bytes; a length that does not fit the block is no match here, and `foreign` when
    /// the entry is read).
    private func matches(_ b: Int, _ size: Int, _ name: UnsafeRawBufferPointer) -> Bool {
        let p = b + L.blockHeader
        guard Int(bytes.base.load(fromByteOffset: p + 44, as: UInt16.self)) == name.count,
              Self.entryHeader + name.count <= size - L.blockHeader else { return false }
        return memcmp(bytes.base + p + Self.entryHeader, name.baseAddress!, name.count) == 0
    }

    /// Makes a named object of `count` values of `type`, initialised by `initialize` (given the values' address),
    /// and publishes it; nil if there is no room.
    func construct(_ name: UnsafeRawBufferPointer, _ type: TypeIdentity, count: Int, _ initialize: (UnsafeMutableRawPointer) -> Void) throws(SharedMemoryError) -> Entry? {
        let namesLength = Self.entryHeader + name.count + type.name.count
        let (length, overflow) = count.multipliedReportingOverflow(by: type.stride)
        guard !overflow, length <= L.maximumExtent else { return nil }
        let alignment = max(16, type.alignment)
        // The values start at the first aligned offset after the names; asking for the payload aligned as they must
        // be keeps that padding under one alignment.
        let padded = (namesLength + alignment - 1) & ~(alignment - 1)
        guard let p = try bytes.allocate(padded + length, alignment: alignment, flags: L.namedFlag) else { return nil }
        HeapCrash.point("construct.allocated")
        let b = p - L.blockHeader
        let values = p + padded
        bytes.setWord(p + 8, Self.hash(name))
        bytes.setWord(p + 16, 0)
        bytes.setWord(p + 24, UInt64(count))
        bytes.setWord32(p + 32, UInt32(type.stride))
        bytes.setWord32(p + 36, UInt32(type.alignment))
        bytes.setWord32(p + 40, UInt32(type.size))
        bytes.base.storeBytes(of: UInt16(name.count), toByteOffset: p + 44, as: UInt16.self)
        bytes.base.storeBytes(of: UInt16(type.name.count), toByteOffset: p + 46, as: UInt16.self)
        bytes.setWord(p + 48, UInt64(values))
        (bytes.base + p + Self.entryHeader).copyMemory(from: name.baseAddress!, byteCount: name.count)
        type.name.withUnsafeBytes { (bytes.base + p + Self.entryHeader + name.count).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        initialize(bytes.base + values)
        HeapCrash.point("construct.written")
        bytes.commit(p, Self.live)
        HeapCrash.point("construct.live")
        try link(b)
        try growIfCrowded()
        return try entry(b)
    }

    /// Puts the live named block at `b` at the head of its bucket.
    func link(_ b: Int) throws(SharedMemoryError) {
        _ = try namedBlock(UInt64(b))
        let p = b + L.blockHeader
        guard bytes.word(p) == Self.live else { return }
        let bucket = bucketAt(bytes.word(p + 8), try buckets())
        bytes.setWord(p + 16, bytes.word(bucket))
        bytes.setWord(bucket, UInt64(b))
        bytes.setWord(HeapHeader.namedCount.offset, bytes.word(HeapHeader.namedCount.offset) &+ 1)
    }

    /// When there are more than two names a bucket, moves the directory to a bucket array four times as big (a
    /// block of its own): every entry is relinked into it, then the header points at it, then the old array (if it
    /// was a block) is freed. A process killed half way leaves chains the next locker's repair rebuilds (the
    /// buckets are derived from the named blocks). Without room for the new array, the directory stays as it is.
    func growIfCrowded() throws(SharedMemoryError) {
        let old = try buckets()
        guard bytes.word(HeapHeader.namedCount.offset) > UInt64(2 * old.count) else { return }
        let count = old.count * 4
        guard let at = try bytes.allocate(count * 8, alignment: 16, flags: L.indexFlag) else { return }
        (bytes.base + at).initializeMemory(as: UInt8.self, repeating: 0, count: count * 8)
        let new = (at: at, count: count)
        for bucket in 0..<old.count {
            var raw = bytes.word(old.at + bucket * 8)
            var hops = 0
            while raw != 0 {
                let b = try namedBlock(raw).block
                let p = b + L.blockHeader
                raw = bytes.word(p + 16)
                let slot = bucketAt(bytes.word(p + 8), new)
                bytes.setWord(p + 16, bytes.word(slot))
                bytes.setWord(slot, UInt64(b))
                hops += 1
                guard hops <= bytes.extent / L.minimumBlock else { throw bytes.corrupt("a directory chain loops") }
            }
        }
        HeapCrash.point("directory.relinked")
        bytes.setWord(HeapHeader.directory.offset, UInt64(at))
        bytes.setWord(HeapHeader.directoryCount.offset, UInt64(count))
        if old.at != HeapHeader.buckets.offset { try bytes.free(payload: old.at, flags: L.indexFlag) }
    }

    /// Takes the entry out of its bucket, marks it dying, and frees its block.
    func destroy(_ found: (entry: Entry, previous: Int?)) throws(SharedMemoryError) {
        let b = found.entry.block
        let p = b + L.blockHeader
        let next = bytes.word(p + 16)
        if let previous = found.previous {
            bytes.setWord(previous + L.blockHeader + 16, next)
        } else {
            bytes.setWord(bucketAt(bytes.word(p + 8), try buckets()), next)
        }
        bytes.setWord(HeapHeader.namedCount.offset, bytes.word(HeapHeader.namedCount.offset) &- 1)
        HeapCrash.point("destroy.unlinked")
        bytes.commit(p, Self.dying)
        HeapCrash.point("destroy.dying")
        try bytes.free(payload: p, flags: L.namedFlag)
    }

    /// Every live entry, bucket by bucket.
    func all() throws(SharedMemoryError) -> [Entry] {
        var entries: [Entry] = []
        var hops = 0
        let buckets = try buckets()
        for bucket in 0..<buckets.count {
            var raw = bytes.word(buckets.at + bucket * 8)
            while raw != 0 {
                let b = try namedBlock(raw).block
                entries.append(try entry(b))
                hops += 1
                guard hops <= bytes.extent / L.minimumBlock else { throw bytes.corrupt("a directory chain loops") }
                raw = bytes.word(b + L.blockHeader + 16)
            }
        }
        return entries
    }

    /// Checks that the buckets hold exactly `named` (the live named blocks of the chain), each once, in the bucket
    /// of its hash, and that the count agrees; returns the count.
    func verify(_ named: Set<Int>) throws(SharedMemoryError) -> Int {
        var remaining = named
        let buckets = try buckets()
        for bucket in 0..<buckets.count {
            var raw = bytes.word(buckets.at + bucket * 8)
            while raw != 0 {
                let b = try namedBlock(raw).block
                let name = name(try entry(b))
                guard remaining.remove(b) != nil else { throw bytes.corrupt("the directory lists \(b) twice, or a block that is not named") }
                guard Self.hash(name) == bytes.word(b + L.blockHeader + 8), bucketAt(Self.hash(name), buckets) == buckets.at + bucket * 8 else {
                    throw bytes.corrupt("the named object at \(b) is in the wrong bucket")
                }
                raw = bytes.word(b + L.blockHeader + 16)
            }
        }
        guard remaining.isEmpty else { throw bytes.corrupt("named objects \(remaining.sorted()) are missing from the directory") }
        guard bytes.word(HeapHeader.namedCount.offset) == UInt64(named.count) else { throw bytes.corrupt("the named object count is wrong") }
        return named.count
    }
}
