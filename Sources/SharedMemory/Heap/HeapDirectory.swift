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

    /// What a named object's values are: the type's name (`String(reflecting:)`) and layout, compared on every find.
    struct TypeIdentity: Equatable {
        let name: [UInt8]
        let size: Int
        let stride: Int
        let alignment: Int

        init<T: BitwiseCopyable>(_ type: T.Type) {
            name = Array(String(reflecting: type).utf8.prefix(HeapDirectory.maximumName))
            size = MemoryLayout<T>.size
            stride = MemoryLayout<T>.stride
            alignment = MemoryLayout<T>.alignment
        }

        init(name: [UInt8], size: Int, stride: Int, alignment: Int) {
            self.name = name
            self.size = size
            self.stride = stride
            self.alignment = alignment
        }

        var description: String { "\(String(decoding: name, as: UTF8.self)) (size \(size), stride \(stride), alignment \(alignment))" }
    }

    /// An entry, read and checked.
    struct Entry {
        let block: Int
        let name: [UInt8]
        let type: TypeIdentity
        let count: Int
        let values: Int
    }

    /// FNV-1a, 64-bit.
    static func hash(_ name: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return hash
    }

    private func bucketAt(_ hash: UInt64) -> Int { L.bucketsAt + Int(hash % UInt64(L.buckets)) * 8 }

    /// The entry in the named block at `b`, every field checked against the block.
    func entry(_ b: Int) throws(SharedMemoryError) -> Entry {
        let (size, flags) = try bytes.header(b)
        let p = b + L.blockHeader
        guard flags == L.namedFlag, bytes.word(p) == Self.live else { throw bytes.corrupt("the directory points at \(b), which is not a live named object") }
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
        let name = Array(UnsafeRawBufferPointer(start: bytes.base + p + Self.entryHeader, count: nameLength))
        let typeName = Array(UnsafeRawBufferPointer(start: bytes.base + p + Self.entryHeader + nameLength, count: typeLength))
        return Entry(block: b, name: name, type: TypeIdentity(name: typeName, size: typeSize, stride: stride, alignment: alignment),
                     count: Int(count), values: Int(values))
    }

    /// The live entry named `name`, and the entry before it in its bucket (nil if it is the first).
    func find(_ name: [UInt8]) throws(SharedMemoryError) -> (entry: Entry, previous: Int?)? {
        let hash = Self.hash(name)
        var raw = bytes.word(bucketAt(hash))
        var previous: Int? = nil
        var hops = 0
        while raw != 0 {
            let b = try bytes.block(raw, "a directory link")
            let entry = try entry(b)
            if bytes.word(b + L.blockHeader + 8) == hash, entry.name == name { return (entry, previous) }
            hops += 1
            guard hops <= bytes.extent / L.minimumBlock else { throw bytes.corrupt("a directory chain loops") }
            previous = b
            raw = bytes.word(b + L.blockHeader + 16)
        }
        return nil
    }

    /// Makes a named object of `count` values of `type`, initialised by `initialize` (given the values' address),
    /// and publishes it; nil if there is no room.
    func construct(_ name: [UInt8], _ type: TypeIdentity, count: Int, _ initialize: (UnsafeMutableRawPointer) -> Void) throws(SharedMemoryError) -> Entry? {
        let namesLength = Self.entryHeader + name.count + type.name.count
        let (length, overflow) = count.multipliedReportingOverflow(by: type.stride)
        guard !overflow, length <= L.maximumExtent else { return nil }
        let alignment = max(16, type.alignment)
        // The values start at the first aligned offset after the names; asking for the payload aligned as they must
        // be keeps that padding under one alignment.
        let padded = (namesLength + alignment - 1) & ~(alignment - 1)
        guard let p = try bytes.allocate(padded + length, alignment: alignment, named: true) else { return nil }
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
        name.withUnsafeBytes { (bytes.base + p + Self.entryHeader).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        type.name.withUnsafeBytes { (bytes.base + p + Self.entryHeader + name.count).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        initialize(bytes.base + values)
        HeapCrash.point("construct.written")
        bytes.commit(p, Self.live)
        HeapCrash.point("construct.live")
        try link(b)
        return try entry(b)
    }

    /// Puts the live named block at `b` at the head of its bucket.
    func link(_ b: Int) throws(SharedMemoryError) {
        let p = b + L.blockHeader
        guard bytes.word(p) == Self.live else { return }
        let bucket = bucketAt(bytes.word(p + 8))
        bytes.setWord(p + 16, bytes.word(bucket))
        bytes.setWord(bucket, UInt64(b))
        bytes.setWord(L.namedCountAt, bytes.word(L.namedCountAt) &+ 1)
    }

    /// Takes the entry out of its bucket, marks it dying, and frees its block.
    func destroy(_ found: (entry: Entry, previous: Int?)) throws(SharedMemoryError) {
        let b = found.entry.block
        let p = b + L.blockHeader
        let next = bytes.word(p + 16)
        if let previous = found.previous {
            bytes.setWord(previous + L.blockHeader + 16, next)
        } else {
            bytes.setWord(bucketAt(bytes.word(p + 8)), next)
        }
        bytes.setWord(L.namedCountAt, bytes.word(L.namedCountAt) &- 1)
        HeapCrash.point("destroy.unlinked")
        bytes.commit(p, Self.dying)
        HeapCrash.point("destroy.dying")
        try bytes.free(payload: p, named: true)
    }

    /// Every live entry, bucket by bucket.
    func all() throws(SharedMemoryError) -> [Entry] {
        var entries: [Entry] = []
        var hops = 0
        for bucket in 0..<L.buckets {
            var raw = bytes.word(L.bucketsAt + bucket * 8)
            while raw != 0 {
                let b = try bytes.block(raw, "a directory link")
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
        for bucket in 0..<L.buckets {
            var raw = bytes.word(L.bucketsAt + bucket * 8)
            while raw != 0 {
                let b = try bytes.block(raw, "a directory link")
                let entry = try entry(b)
                guard remaining.remove(b) != nil else { throw bytes.corrupt("the directory lists \(b) twice, or a block that is not named") }
                guard Self.hash(entry.name) == bytes.word(b + L.blockHeader + 8), bucketAt(Self.hash(entry.name)) == L.bucketsAt + bucket * 8 else {
                    throw bytes.corrupt("the named object at \(b) is in the wrong bucket")
                }
                raw = bytes.word(b + L.blockHeader + 16)
            }
        }
        guard remaining.isEmpty else { throw bytes.corrupt("named objects \(remaining.sorted()) are missing from the directory") }
        guard bytes.word(L.namedCountAt) == UInt64(named.count) else { throw bytes.corrupt("the named object count is wrong") }
        return named.count
    }
}
