import Atomics
import Glibc

// SharedHeap's non-generic halves of its inlinable generic methods (SharedHeap.swift): one file, so that the heap's
// main file stays readable.
extension SharedHeap {
    // MARK: What the inlinable generic methods call (non-generic, so that no call looks up generic metadata)

    @usableFromInline
    mutating func allocate(count: Int, of layout: HeapValueLayout, zeroed: Bool) throws(SharedMemoryError) -> UInt64 {
        let (length, overflow) = count.multipliedReportingOverflow(by: layout.stride)
        guard count >= 0, !overflow else {
            throw SharedMemoryError(.invalidArgument, "cannot allocate \(count) values of \(layout.type)", region: name)
        }
        return try allocate(byteCount: length, alignment: max(layout.alignment, 1), zeroed: zeroed).offset
    }

    @usableFromInline
    mutating func deallocate(offset: UInt64) throws(SharedMemoryError) {
        guard offset <= UInt64(L.maximumExtent) else {
            throw SharedMemoryError(.invalidArgument, "offset \(offset) is not a block this heap allocated", region: name)
        }
        try locked { (bytes) throws(SharedMemoryError) in try bytes.free(payload: Int(offset)) }
    }

    @usableFromInline
    mutating func usableSize(offset: UInt64) throws(SharedMemoryError) -> Int {
        guard offset <= UInt64(L.maximumExtent) else {
            throw SharedMemoryError(.invalidArgument, "offset \(offset) is not a block this heap allocated", region: name)
        }
        return try locked { (bytes) throws(SharedMemoryError) in try bytes.usableSize(payload: Int(offset)) }
    }

    /// The address of `count` values from `index` of the `covering` values at `offset`, checked to lie inside them
    /// and the heap, and aligned.
    @usableFromInline
    mutating func address(_ offset: UInt64, covering: Int, from index: Int, count: Int, of layout: HeapValueLayout) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        do {
            return try prepared().address(offset, covering: covering, from: index, count: count, of: layout)
        } catch {
            throw named(error)
        }
    }

    @usableFromInline
    mutating func find(_ name: String, of layout: HeapValueLayout) throws(SharedMemoryError) -> (offset: UInt64, count: Int)? {
        let wanted = identity(layout)
        return try withName(name) { (heap, key) throws(SharedMemoryError) -> (offset: UInt64, count: Int)? in
            try heap.locked { (bytes) throws(SharedMemoryError) -> (offset: UInt64, count: Int)? in
                guard let found = try HeapDirectory(bytes: bytes).find(key) else { return nil }
                return try Self.typed(found.entry, wanted, name, bytes)
            }
        }
    }

    @usableFromInline
    mutating func findOrConstruct(
        _ name: String, count: Int, of layout: HeapValueLayout, mayExist: Bool, _ initialize: (UnsafeMutableRawPointer) -> Void
    ) throws(SharedMemoryError) -> (offset: UInt64, count: Int, created: Bool) {
        let (length, overflow) = count.multipliedReportingOverflow(by: layout.stride)
        guard count >= 0, !overflow else {
            throw SharedMemoryError(.invalidArgument, "cannot construct \(count) values of \(layout.type)", region: self.name)
        }
        let wanted = identity(layout)
        return try withName(name) { (heap, key) throws(SharedMemoryError) -> (offset: UInt64, count: Int, created: Bool) in
            try heap.locked { (bytes) throws(SharedMemoryError) -> (offset: UInt64, count: Int, created: Bool) in
                let directory = HeapDirectory(bytes: bytes)
                if let found = try directory.find(key) {
                    guard mayExist else {
                        throw SharedMemoryError(.alreadyExists, "the heap already has an object named \"\(name)\"; find it, or destroy it first", region: bytes.region)
                    }
                    let typed = try Self.typed(found.entry, wanted, name, bytes)
                    return (typed.offset, typed.count, false)
                }
                let made = try directory.construct(key, wanted, count: count, initialize)
                guard let made else { throw try Self.noSpace(bytes, min(length, Int.max / 2) + HeapDirectory.entryHeader + key.count) }
                return (UInt64(made.values), count, true)
            }
        }
    }

    /// `findOrConstruct` with the values zeroed rather than set: for the containers, whose slots are zero when empty
    /// (zero is not a valid value of every `BitwiseCopyable` type, so this is not public).
    mutating func findOrConstructZeroed<T: BitwiseCopyable>(_ name: String, _ type: T.Type, count: Int) throws(SharedMemoryError) -> (pointer: HeapPointer<T>, created: Bool) {
        let made = try findOrConstruct(name, count: count, of: HeapValueLayout(T.self), mayExist: true) {
            $0.initializeMemory(as: UInt8.self, repeating: 0, count: count * MemoryLayout<T>.stride)
        }
        return (HeapPointer(offset: made.offset, count: made.count), made.created)
    }

    mutating func identity(_ layout: HeapValueLayout) -> TypeIdentity {
        let key = ObjectIdentifier(layout.type)
        if let lastType, lastType.type == key { return lastType.identity }
        let identity = TypeIdentity.of(layout)
        lastType = (key, identity)
        return identity
    }

    static func typed(_ entry: HeapDirectory.Entry, _ wanted: TypeIdentity, _ name: String, _ bytes: HeapBytes) throws(SharedMemoryError) -> (offset: UInt64, count: Int) {
        let directory = HeapDirectory(bytes: bytes)
        guard directory.holds(entry, wanted) else {
            throw SharedMemoryError(.typeMismatch, "the object \"\(name)\" holds \(directory.type(entry).description), not \(wanted.description)", region: bytes.region)
        }
        return (UInt64(entry.values), entry.count)
    }
}
