import Atomics

// Laying out shared objects (atomics, locks, events, rings) inside a region's bytes.

extension SharedRegion where Self: ~Copyable {
    /// The mapping and the address of `size` bytes at `offset`, checked: inside the region, aligned to `alignment`
    /// in this process's mapping, and writable. Shared objects need all three, and hold the mapping.
    func sharedObjectAddress(at offset: Int, size: Int, alignment: Int, what: String) throws(SharedMemoryError) -> (mapping: RegionMapping, address: UnsafeMutableRawPointer) {
        let mapping = self.mapping
        try mapping.checkBounds(offset: offset, count: size)
        guard mapping.access == .readWrite, let base = mapping.base else {
            throw SharedMemoryError(.readOnly, "\(what) needs a read-write attachment: even waiting on it writes to it", region: name)
        }
        let address = base + offset
        guard Int(bitPattern: address) % alignment == 0 else {
            throw SharedMemoryError(.invalidArgument, "\(what) needs \(alignment)-byte alignment; offset \(offset) is not (use a multiple of \(alignment))", region: name)
        }
        return (mapping, address)
    }

    /// An atomic value at `offset` in the region, for lock-free sharing between processes (apple/swift-atomics'
    /// operations: every one names its memory ordering). The offset must be aligned for the value (8 for 64-bit
    /// values). The atomic holds the region's mapping, so it stays valid however long it is kept.
    public func atomic<Value: AtomicValue>(_ type: Value.Type, at offset: Int) throws(SharedMemoryError) -> SharedAtomic<Value>
    where Value.AtomicRepresentation.Value == Value {
        let layout = MemoryLayout<Value.AtomicRepresentation>.self
        let place = try sharedObjectAddress(at: offset, size: layout.size, alignment: layout.alignment, what: "an atomic \(Value.self)")
        return SharedAtomic(mapping: place.mapping, atomic: UnsafeAtomic(at: place.address.assumingMemoryBound(to: Value.AtomicRepresentation.self)))
    }

    /// The atomic at `offset` as swift-atomics' `UnsafeAtomic`, for code that wants that type. It points into this
    /// attachment's mapping and holds nothing: it is valid only while the region stays attached, unresized and
    /// unremapped, which the compiler does not check. ``atomic(_:at:)`` is the safe way.
    public func unsafeAtomic<Value: AtomicValue>(_ type: Value.Type, at offset: Int) throws(SharedMemoryError) -> UnsafeAtomic<Value>
    where Value.AtomicRepresentation.Value == Value {
        try atomic(type, at: offset).atomic
    }
}

/// An atomic value in a region (see ``SharedRegion/atomic(_:at:)``): swift-atomics' operations on a word that
/// other processes share: `load`, `store`, `exchange`, `compareExchange`, `weakCompareExchange`; for integers the
/// wrapping arithmetic and bitwise operations; for `Bool` the logical ones. (For anything else, `unsafeAtomic(_:at:)`
/// gives swift-atomics' own `UnsafeAtomic`.) As in swift-atomics, each ordering must be written out (`.acquiring`, ...), not passed in
/// a variable. It holds the region's mapping (``RegionMapping``), so the memory stays mapped while it
/// exists and the region cannot be resized or remapped meanwhile. `Sendable`.
public struct SharedAtomic<Value: AtomicValue>: @unchecked Sendable where Value.AtomicRepresentation.Value == Value {
    /// Keeps the memory mapped while the atomic exists.
    let mapping: RegionMapping
    @usableFromInline let atomic: UnsafeAtomic<Value>

    /// Atomically loads the value.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func load(ordering: AtomicLoadOrdering) -> Value { atomic.load(ordering: ordering) }

    /// Atomically stores `desired`.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func store(_ desired: Value, ordering: AtomicStoreOrdering) { atomic.store(desired, ordering: ordering) }

    /// Atomically stores `desired` and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func exchange(_ desired: Value, ordering: AtomicUpdateOrdering) -> Value {
        atomic.exchange(desired, ordering: ordering)
    }

    /// Stores `desired` if the value is `expected`; whether it did, and the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func compareExchange(expected: Value, desired: Value, ordering: AtomicUpdateOrdering) -> (exchanged: Bool, original: Value) {
        atomic.compareExchange(expected: expected, desired: desired, ordering: ordering)
    }

    /// Stores `desired` if the value is `expected`, with separate orderings for success and failure.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func compareExchange(
        expected: Value, desired: Value, successOrdering: AtomicUpdateOrdering, failureOrdering: AtomicLoadOrdering
    ) -> (exchanged: Bool, original: Value) {
        atomic.compareExchange(expected: expected, desired: desired, successOrdering: successOrdering, failureOrdering: failureOrdering)
    }
}

extension SharedAtomic {
    /// Stores `desired` if the value is `expected`, but may fail spuriously (for use in a loop); whether it did, and
    /// the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func weakCompareExchange(expected: Value, desired: Value, ordering: AtomicUpdateOrdering) -> (exchanged: Bool, original: Value) {
        atomic.weakCompareExchange(expected: expected, desired: desired, ordering: ordering)
    }
}

extension SharedAtomic where Value == Bool {
    /// Ands `operand` in and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenLogicalAnd(with operand: Bool, ordering: AtomicUpdateOrdering) -> Bool {
        atomic.loadThenLogicalAnd(with: operand, ordering: ordering)
    }

    /// Ors `operand` in and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenLogicalOr(with operand: Bool, ordering: AtomicUpdateOrdering) -> Bool {
        atomic.loadThenLogicalOr(with: operand, ordering: ordering)
    }

    /// Xors `operand` in and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenLogicalXor(with operand: Bool, ordering: AtomicUpdateOrdering) -> Bool {
        atomic.loadThenLogicalXor(with: operand, ordering: ordering)
    }
}

extension SharedAtomic where Value: AtomicInteger {
    /// Adds `operand` (wrapping) and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenWrappingIncrement(by operand: Value = 1, ordering: AtomicUpdateOrdering) -> Value {
        atomic.loadThenWrappingIncrement(by: operand, ordering: ordering)
    }

    /// Subtracts `operand` (wrapping) and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenWrappingDecrement(by operand: Value = 1, ordering: AtomicUpdateOrdering) -> Value {
        atomic.loadThenWrappingDecrement(by: operand, ordering: ordering)
    }

    /// Adds `operand` (wrapping) and returns the value after.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func wrappingIncrementThenLoad(by operand: Value = 1, ordering: AtomicUpdateOrdering) -> Value {
        atomic.wrappingIncrementThenLoad(by: operand, ordering: ordering)
    }

    /// Subtracts `operand` (wrapping) and returns the value after.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func wrappingDecrementThenLoad(by operand: Value = 1, ordering: AtomicUpdateOrdering) -> Value {
        atomic.wrappingDecrementThenLoad(by: operand, ordering: ordering)
    }

    /// Adds `operand` (wrapping).
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func wrappingIncrement(by operand: Value = 1, ordering: AtomicUpdateOrdering) {
        atomic.wrappingIncrement(by: operand, ordering: ordering)
    }

    /// Subtracts `operand` (wrapping).
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func wrappingDecrement(by operand: Value = 1, ordering: AtomicUpdateOrdering) {
        atomic.wrappingDecrement(by: operand, ordering: ordering)
    }

    /// Bitwise-ands `operand` in and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenBitwiseAnd(with operand: Value, ordering: AtomicUpdateOrdering) -> Value {
        atomic.loadThenBitwiseAnd(with: operand, ordering: ordering)
    }

    /// Bitwise-ors `operand` in and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenBitwiseOr(with operand: Value, ordering: AtomicUpdateOrdering) -> Value {
        atomic.loadThenBitwiseOr(with: operand, ordering: ordering)
    }

    /// Bitwise-xors `operand` in and returns the value before.
    @_semantics("atomics.requires_constant_orderings") @_transparent @_alwaysEmitIntoClient
    public func loadThenBitwiseXor(with operand: Value, ordering: AtomicUpdateOrdering) -> Value {
        atomic.loadThenBitwiseXor(with: operand, ordering: ordering)
    }
}

/// `Duration` to nanoseconds for the kernel's timeouts (negative durations count as 0).
extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let (total, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : total + attoseconds / 1_000_000_000
    }
}
