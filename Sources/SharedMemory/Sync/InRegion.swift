import Atomics

// Laying out shared objects (atomics, locks, events, rings) inside a region's bytes.

extension SharedRegion where Self: ~Copyable {
    /// The address of `size` bytes at `offset`, checked: inside the region, aligned to `alignment` in this
    /// process's mapping, and writable. Shared objects need all three.
    func sharedObjectAddress(at offset: Int, size: Int, alignment: Int, what: String) throws(SharedMemoryError) -> UnsafeMutableRawPointer {
        try checkBounds(offset: offset, count: size)
        guard access == .readWrite else {
            throw SharedMemoryError(.readOnly, "\(what) needs a read-write attachment: even waiting on it writes to it", region: name)
        }
        let address = try withUnsafeMutableBytes { $0.baseAddress! + offset }
        guard Int(bitPattern: address) % alignment == 0 else {
            throw SharedMemoryError(.invalidArgument, "\(what) needs \(alignment)-byte alignment; offset \(offset) is not (use a multiple of \(alignment))", region: name)
        }
        return address
    }

    /// An atomic value at `offset` in the region, for lock-free sharing between processes (apple/swift-atomics:
    /// every operation names its memory ordering). The offset must be aligned for the value (8 for 64-bit values).
    ///
    /// The atomic points into this attachment's mapping: it is valid until the region is detached, resized or
    /// remapped. Like every `Unsafe` type, do not keep it longer.
    public func atomic<Value: AtomicValue>(_ type: Value.Type, at offset: Int) throws(SharedMemoryError) -> UnsafeAtomic<Value> {
        let layout = MemoryLayout<Value.AtomicRepresentation>.self
        let address = try sharedObjectAddress(at: offset, size: layout.size, alignment: layout.alignment, what: "an atomic \(Value.self)")
        return UnsafeAtomic(at: address.assumingMemoryBound(to: Value.AtomicRepresentation.self))
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
