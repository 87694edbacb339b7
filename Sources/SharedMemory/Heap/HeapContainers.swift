import Atomics

// Two containers built from the heap's pieces (a named object or a block, handles, the heap's lock), as proof that
// they compose. Each is a handle (BitwiseCopyable, storable in the heap itself); every operation takes the heap it
// lives in and runs under the heap's lock, so any number of processes can use one at once.

/// A fixed-capacity hash map in a ``SharedHeap``, from `Key` to `Value`, shared by every process that attaches the
/// heap. Open addressing with linear probing over `capacity` slots (rounded up to a power of two).
///
/// ```swift
/// var heap = try SharedHeap(formattingOrAttaching: try SharedMemory.openOrCreate(name, size: 1 << 20))
/// let sessions = try SharedHashMap<UInt64, Double>.findOrCreate("sessions", capacity: 1024, in: &heap)
/// try sessions.updateValue(2.5, forKey: 42, in: &heap)
/// let value = try sessions.value(forKey: 42, in: &heap)   // 2.5, in any process
/// ```
///
/// **Keys are hashed and compared by their bytes**, the same in every process (Swift's `Hashable` is seeded per
/// process, so it cannot be): use integers, or structs of them without padding (padding bytes are not guaranteed to
/// be equal for equal values). Keys and values must be plain values: no class references, strings, arrays or
/// pointers; link to other heap data with ``HeapPointer``.
///
/// **Crashes.** Every change becomes visible with one store (a slot's state), so a process killed in the middle of
/// an insert, update or removal leaves either the old or the new mapping for that key, never a torn one; a key
/// may then have a stale second slot, which lookups never see (the first wins) and the next update or removal of the
/// key clears. ``modifyValue(forKey:initial:in:_:)`` writes an existing key's value in place, and so does an update
/// when the map is full: a value wider than 8 bytes can then be torn by a writer killed half way.
///
/// Operations hold the heap's lock: they are short, but they serialise with every allocation.
@frozen
public struct SharedHashMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: BitwiseCopyable, Sendable {
    /// One slot: its state (0 empty, 1 used, 2 removed), key and value.
    @frozen
    public struct Slot: BitwiseCopyable {
        var state: UInt64
        var key: Key
        var value: Value
    }

    /// The slots, in the heap.
    public let slots: HeapPointer<Slot>

    /// How many keys it can hold.
    public var capacity: Int { slots.count }

    /// A map stored behind a handle read from the heap (or passed from another process).
    public init(slots: HeapPointer<Slot>) { self.slots = slots }

    /// A new, unnamed map with room for `capacity` keys (rounded up to a power of two). Keep its handle somewhere
    /// another process can find it (a named object, another structure), or use ``findOrCreate(_:capacity:in:)``.
    public static func create(capacity: Int, in heap: inout SharedHeap) throws(SharedMemoryError) -> SharedHashMap {
        SharedHashMap(slots: try heap.allocate(Slot.self, count: try roundedCapacity(capacity, heap.name), zeroed: true))
    }

    /// The map named `name` in the heap, or a new one with room for `capacity` keys. The name's type records `Key`
    /// and `Value`: finding it as another map type is ``SharedMemoryError/Code/typeMismatch``.
    public static func findOrCreate(_ name: String, capacity: Int, in heap: inout SharedHeap) throws(SharedMemoryError) -> SharedHashMap {
        SharedHashMap(slots: try heap.findOrConstructZeroed(name, Slot.self, count: try roundedCapacity(capacity, heap.name)).pointer)
    }

    /// The value for `key`, or `nil`.
    public func value(forKey key: Key, in heap: inout SharedHeap) throws(SharedMemoryError) -> Value? {
        try heap.locked { (bytes) throws(SharedMemoryError) -> Value? in
            let table = try self.table(bytes)
            return try table.first(key).map { table.slots[$0].value }
        }
    }

    /// Sets the value for `key`; the value it had, or `nil`. Throws ``SharedMemoryError/Code/noSpace`` when the key
    /// is new and every slot is used.
    @discardableResult
    public func updateValue(_ value: Value, forKey key: Key, in heap: inout SharedHeap) throws(SharedMemoryError) -> Value? {
        try heap.locked { (bytes) throws(SharedMemoryError) -> Value? in
            let table = try self.table(bytes)
            var free: Int? = nil
            var matches: [Int] = []
            try table.probe(key) { index, state in
                if state == 1, table.equal(table.slots[index].key, key) { matches.append(index) }
                if state != 1, free == nil { free = index }
                return state != 0
            }
            let old = matches.first.map { table.slots[$0].value }
            guard let free else {
                guard let first = matches.first else {
                    throw SharedMemoryError(.noSpace, "the map is full: all \(capacity) slots are used; remove keys, or make a bigger map", region: bytes.region)
                }
                table.slots[first].value = value
                return old
            }
            // Written into a free slot first, published with one store, then the old slot (if any) removed.
            table.slots[free].key = key
            table.slots[free].value = value
            table.publish(free, state: 1)
            for match in matches { table.publish(match, state: 2) }
            return old
        }
    }

    /// Changes the value for `key` in place (starting from `initial` if the key is new) and returns the result: a
    /// read-modify-write no other process can interleave with, as two calls (``value(forKey:in:)``, then
    /// ``updateValue(_:forKey:in:)``) could.
    @discardableResult
    public func modifyValue(forKey key: Key, initial: Value, in heap: inout SharedHeap, _ body: (inout Value) -> Void) throws(SharedMemoryError) -> Value {
        try heap.locked { (bytes) throws(SharedMemoryError) -> Value in
            let table = try self.table(bytes)
            if let index = try table.first(key) {
                var value = table.slots[index].value
                body(&value)
                table.slots[index].value = value
                return value
            }
            var value = initial
            body(&value)
            var free: Int? = nil
            try table.probe(key) { index, state in
                if state != 1 { free = index }
                return state == 1
            }
            guard let free else {
                throw SharedMemoryError(.noSpace, "the map is full: all \(capacity) slots are used; remove keys, or make a bigger map", region: bytes.region)
            }
            table.slots[free].key = key
            table.slots[free].value = value
            table.publish(free, state: 1)
            return value
        }
    }

    /// Removes `key`; the value it had, or `nil`.
    @discardableResult
    public func removeValue(forKey key: Key, in heap: inout SharedHeap) throws(SharedMemoryError) -> Value? {
        try heap.locked { (bytes) throws(SharedMemoryError) -> Value? in
            let table = try self.table(bytes)
            var old: Value? = nil
            try table.probe(key) { index, state in
                if state == 1, table.equal(table.slots[index].key, key) {
                    if old == nil { old = table.slots[index].value }
                    table.publish(index, state: 2)
                }
                return state != 0
            }
            return old
        }
    }

    /// How many keys it holds. O(capacity).
    public func count(in heap: inout SharedHeap) throws(SharedMemoryError) -> Int {
        try entries(in: &heap).count
    }

    /// Every key and its value (in slot order). O(capacity).
    public func entries(in heap: inout SharedHeap) throws(SharedMemoryError) -> [(key: Key, value: Value)] {
        try heap.locked { (bytes) throws(SharedMemoryError) -> [(key: Key, value: Value)] in
            let table = try self.table(bytes)
            var result: [(key: Key, value: Value)] = []
            for index in 0..<table.count where table.state(index) == 1 {
                let slot = table.slots[index]
                // After a crash a key may have a stale second slot; the first in its probe order is the one that counts.
                if try table.first(slot.key) == index { result.append((slot.key, slot.value)) }
            }
            return result
        }
    }

    private static func roundedCapacity(_ capacity: Int, _ region: RegionName) throws(SharedMemoryError) -> Int {
        guard capacity > 0, capacity <= 1 << 40 else {
            throw SharedMemoryError(.invalidArgument, "a map's capacity must be 1 to 2^40 keys; \(capacity) is not", region: region)
        }
        return 1 << (Int.bitWidth - (capacity - 1).leadingZeroBitCount)
    }

    private func table(_ bytes: HeapBytes) throws(SharedMemoryError) -> Table {
        let count = slots.count
        guard count > 0, count & (count - 1) == 0 else {
            throw SharedMemoryError(.invalidArgument, "\(slots) is not a map's slots (their count is not a power of two)", region: bytes.region)
        }
        let address = try bytes.address(of: slots, index: 0, count: count)
        return Table(slots: address.bindMemory(to: Slot.self, capacity: count), count: count, region: bytes.region)
    }

    /// The slots as this process maps them, for one operation under the lock.
    private struct Table {
        let slots: UnsafeMutablePointer<Slot>
        let count: Int
        let region: RegionName?

        func state(_ index: Int) -> UInt64 {
            UnsafeAtomic<UInt64>(at: UnsafeMutableRawPointer(slots + index).assumingMemoryBound(to: UInt64.AtomicRepresentation.self)).load(ordering: .relaxed)
        }

        /// Sets a slot's state after everything written before it (its key and value).
        func publish(_ index: Int, state: UInt64) {
            UnsafeAtomic<UInt64>(at: UnsafeMutableRawPointer(slots + index).assumingMemoryBound(to: UInt64.AtomicRepresentation.self)).store(state, ordering: .releasing)
        }

        func equal(_ a: Key, _ b: Key) -> Bool {
            withUnsafeBytes(of: a) { a in withUnsafeBytes(of: b) { b in a.elementsEqual(b) } }
        }

        /// Visits the slots of `key`'s probe sequence in order while `visit` returns true, at most every slot once.
        /// A state that is not 0, 1 or 2 was written by something else: `foreign`.
        func probe(_ key: Key, _ visit: (Int, UInt64) throws(SharedMemoryError) -> Bool) throws(SharedMemoryError) {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            withUnsafeBytes(of: key) { for byte in $0 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 } }
            var index = Int(truncatingIfNeeded: hash) & (count - 1)
            for _ in 0..<count {
                let state = state(index)
                guard state <= 2 else {
                    throw SharedMemoryError(.foreign, "a map slot's state reads \(state), which no map writes: something else wrote over it", region: region)
                }
                if try !visit(index, state) { return }
                index = (index + 1) & (count - 1)
            }
        }

        /// The first used slot holding `key`.
        func first(_ key: Key) throws(SharedMemoryError) -> Int? {
            var found: Int? = nil
            try probe(key) { index, state in
                if state == 1, equal(slots[index].key, key) {
                    found = index
                    return false
                }
                return state != 0
            }
            return found
        }
    }
}

/// A growable array in a ``SharedHeap``, shared by every process that attaches the heap: append, read, write and
/// remove the last element from any of them. Its elements live in one heap block that is replaced by one twice as
/// big when it is full.
///
/// ```swift
/// var heap = try SharedHeap(formattingOrAttaching: try SharedMemory.openOrCreate(name, size: 1 << 20))
/// let log = try SharedArray<Int64>.findOrCreate("log", in: &heap)
/// try log.append(7, in: &heap)
/// let last = try log.load(at: try log.count(in: &heap) - 1, in: &heap)
/// ```
///
/// Elements must be plain values (no class references, strings, arrays or pointers). Every operation holds the
/// heap's lock; ``withSpan(in:_:)`` holds it while its body runs.
///
/// **Crashes.** An append becomes visible with one store (the count), after the element is written; a move to a
/// bigger block with one store (the block's offset), after the elements are copied. A process killed between that
/// store and freeing the old block leaves the old block allocated and unreachable: its bytes are lost to the heap,
/// never its elements.
@frozen
public struct SharedArray<Element: BitwiseCopyable>: BitwiseCopyable, Sendable {
    /// Where the elements are and how many: the header every process reads.
    @frozen
    public struct Header: BitwiseCopyable {
        /// The offset of the elements' block: its first 8 bytes hold its capacity; the elements start 16 bytes in
        /// (or at their alignment, if larger).
        var storage: UInt64
        var count: UInt64
    }

    /// The header, in the heap.
    public let header: HeapPointer<Header>

    /// Bytes before the elements in their block: the capacity (8 bytes), padded to the elements' alignment.
    private static var lead: Int { max(16, MemoryLayout<Element>.alignment) }

    /// An array stored behind a handle read from the heap.
    public init(header: HeapPointer<Header>) { self.header = header }

    /// A new, empty, unnamed array.
    public static func create(in heap: inout SharedHeap) throws(SharedMemoryError) -> SharedArray {
        SharedArray(header: try heap.allocate(repeating: Header(storage: 0, count: 0)))
    }

    /// The array named `name`, or a new empty one. Finding it as an array of another type is
    /// ``SharedMemoryError/Code/typeMismatch``.
    public static func findOrCreate(_ name: String, in heap: inout SharedHeap) throws(SharedMemoryError) -> SharedArray {
        SharedArray(header: try heap.findOrConstruct(name, repeating: Header(storage: 0, count: 0)).pointer)
    }

    /// How many elements it has.
    public func count(in heap: inout SharedHeap) throws(SharedMemoryError) -> Int {
        try heap.locked { (bytes) throws(SharedMemoryError) in try self.elements(bytes).count }
    }

    /// Appends `element`, moving to a block twice as big when this one is full (``SharedMemoryError/Code/noSpace``
    /// if the heap has none).
    public func append(_ element: Element, in heap: inout SharedHeap) throws(SharedMemoryError) {
        try append(contentsOf: CollectionOfOne(element), in: &heap)
    }

    /// Appends `elements`.
    public func append(contentsOf elements: some Collection<Element>, in heap: inout SharedHeap) throws(SharedMemoryError) {
        let added = elements.count
        guard added > 0 else { return }
        try heap.locked { (bytes) throws(SharedMemoryError) in
            var (base, count, capacity) = try self.elements(bytes)
            if capacity - count < added {
                var newCapacity = max(capacity * 2, 8), tooMany = false
                while !tooMany && newCapacity - count < added {
                    (newCapacity, tooMany) = newCapacity.multipliedReportingOverflow(by: 2)
                }
                let (length, overflow) = newCapacity.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
                guard !tooMany, !overflow, let payload = try bytes.allocate(Self.lead + length, alignment: Self.lead) else {
                    let wanted = tooMany || overflow ? "\(count) + \(added)" : "\(newCapacity)"
                    throw SharedMemoryError(.noSpace, "the heap has no free block for \(wanted) elements of \(Element.self); free some, or grow the heap", region: bytes.region)
                }
                bytes.setWord(payload, UInt64(newCapacity))
                let newBase = bytes.base + payload + Self.lead
                if let base { newBase.copyMemory(from: base, byteCount: count * MemoryLayout<Element>.stride) }
                let old = bytes.word(Int(header.offset))
                bytes.commit(Int(header.offset), UInt64(payload))
                if old != 0 { try bytes.free(payload: Int(truncatingIfNeeded: old)) }
                base = newBase
                capacity = newCapacity
            }
            let values = base!.bindMemory(to: Element.self, capacity: capacity)
            var index = count
            for element in elements {
                values[index] = element
                index += 1
            }
            bytes.commit(Int(header.offset) + 8, UInt64(count + added))
        }
    }

    /// Removes and returns the last element, or `nil` if it is empty. (Its block keeps its capacity.)
    @discardableResult
    public func removeLast(in heap: inout SharedHeap) throws(SharedMemoryError) -> Element? {
        try heap.locked { (bytes) throws(SharedMemoryError) -> Element? in
            let (base, count, _) = try self.elements(bytes)
            guard let base, count > 0 else { return nil }
            let last = base.load(fromByteOffset: (count - 1) * MemoryLayout<Element>.stride, as: Element.self)
            bytes.commit(Int(header.offset) + 8, UInt64(count - 1))
            return last
        }
    }

    /// The element at `index` (``SharedMemoryError/Code/outOfBounds`` past the end).
    public func load(at index: Int, in heap: inout SharedHeap) throws(SharedMemoryError) -> Element {
        try heap.locked { (bytes) throws(SharedMemoryError) -> Element in
            try self.address(index, bytes).load(as: Element.self)
        }
    }

    /// Replaces the element at `index`.
    public func store(_ element: Element, at index: Int, in heap: inout SharedHeap) throws(SharedMemoryError) {
        try heap.locked { (bytes) throws(SharedMemoryError) in
            try self.address(index, bytes).storeBytes(of: element, as: Element.self)
        }
    }

    /// Calls `body` with the elements as a `Span`, holding the heap's lock (so no process changes them meanwhile).
    /// Errors from `body` pass through as they are.
    public func withSpan<R, E: Error>(in heap: inout SharedHeap, _ body: (Span<Element>) throws(E) -> R) throws -> R {
        let result = try heap.locked { (bytes) throws(SharedMemoryError) -> Result<R, E> in
            let (base, count, capacity) = try self.elements(bytes)
            let buffer = UnsafeBufferPointer(start: base?.bindMemory(to: Element.self, capacity: capacity), count: count)
            do throws(E) {
                return .success(try body(Span(_unsafeElements: buffer)))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Frees the elements' block and the header of an array made with ``create(in:)``; for a named one, this frees
    /// the elements and empties it (destroy the name with ``SharedHeap/destroy(_:)``).
    public func removeAll(freeingHeader: Bool = false, in heap: inout SharedHeap) throws(SharedMemoryError) {
        try heap.locked { (bytes) throws(SharedMemoryError) in
            _ = try bytes.address(of: header, index: 0, count: 1)
            let old = bytes.word(Int(header.offset))
            bytes.commit(Int(header.offset) + 8, 0)
            bytes.commit(Int(header.offset), 0)
            if old != 0 { try bytes.free(payload: Int(truncatingIfNeeded: old)) }
            if freeingHeader { try bytes.free(payload: Int(header.offset)) }
        }
    }

    /// The elements' address (nil before the first append), count and capacity, every figure checked against the
    /// heap: a count beyond the capacity, or a block outside the heap, is `foreign`.
    private func elements(_ bytes: HeapBytes) throws(SharedMemoryError) -> (base: UnsafeMutableRawPointer?, count: Int, capacity: Int) {
        _ = try bytes.address(of: header, index: 0, count: 1)
        let storage = bytes.word(Int(header.offset))
        let count = bytes.word(Int(header.offset) + 8)
        guard storage != 0 else {
            guard count == 0 else { throw bytes.corrupt("an array without elements says it has \(count)") }
            return (nil, 0, 0)
        }
        _ = try bytes.address(of: HeapPointer<UInt64>(offset: storage, count: 2), index: 0, count: 2)
        let capacity = bytes.word(Int(storage))
        let stride = UInt64(MemoryLayout<Element>.stride)
        guard count <= capacity, capacity <= UInt64(bytes.extent) / max(stride, 1) else {
            throw bytes.corrupt("an array says it has \(count) of \(capacity) elements")
        }
        // The elements must lie inside the block that holds them, not merely inside the heap: a storage word
        // another process wrote over (or left pointing at a block since freed) would otherwise let this array write
        // over other blocks or the free lists.
        let usable: Int
        do {
            usable = try bytes.usableSize(payload: Int(storage))
        } catch {
            throw bytes.corrupt("an array's elements are at \(storage), which is not an allocated block")
        }
        guard UInt64(Self.lead) + capacity * stride <= UInt64(usable) else {
            throw bytes.corrupt("an array says it has room for \(capacity) elements in a block of \(usable) bytes")
        }
        _ = try bytes.address(of: HeapPointer<Element>(offset: storage + UInt64(Self.lead), count: Int(capacity)), index: 0, count: Int(capacity))
        return (bytes.base + Int(storage) + Self.lead, Int(count), Int(capacity))
    }

    private func address(_ index: Int, _ bytes: HeapBytes) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        let (base, count, _) = try elements(bytes)
        guard let base, index >= 0, index < count else {
            throw SharedMemoryError(.outOfBounds, "index \(index) is outside the array's \(count) elements", region: bytes.region)
        }
        return base + index * MemoryLayout<Element>.stride
    }
}
