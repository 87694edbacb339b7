/// Where `count` values of type `Pointee` lie in a ``SharedHeap``: an offset from the heap's start, the same in every
/// process whatever address each maps the region at. A plain value (`BitwiseCopyable`, 16 bytes), so it can be
/// stored in the heap itself, and structures in the heap can point to one another with it.
///
/// It is not a pointer and gives no access by itself: the heap reads and writes through it (``SharedHeap/load(_:at:)``,
/// ``SharedHeap/withMutableSpan(_:_:)``, ...), checking it against the heap's bounds every time, so a stale or
/// forged handle (one another process wrote) can never reach outside the region. Those accesses take no lock, so
/// they cannot tell a freed block from an allocated one: a stale handle reads or writes the freed memory (inside the
/// heap), as a use after free in any allocator; ``SharedHeap/deallocate(_:)`` refuses one whose block is free.
@frozen
public struct HeapPointer<Pointee: BitwiseCopyable>: BitwiseCopyable, Sendable, Hashable, CustomStringConvertible {
    /// Bytes from the heap's start to the first value.
    public let offset: UInt64
    @usableFromInline let storedCount: UInt64

    /// How many values of `Pointee` it covers.
    @inlinable public var count: Int { Int(truncatingIfNeeded: storedCount) }

    /// A handle from its parts: an offset from the heap's start and a count, as another process or a file gave them.
    /// The heap checks it on every use.
    @inlinable
    public init(offset: UInt64, count: Int) {
        self.offset = offset
        self.storedCount = UInt64(truncatingIfNeeded: max(count, 0))
    }

    /// The handle that points nowhere (offset 0, which is the heap's header and never an allocation): for a
    /// structure's link that is not set.
    @inlinable public static var null: HeapPointer { HeapPointer(offset: 0, count: 0) }

    /// Whether this is ``null``.
    @inlinable public var isNull: Bool { offset == 0 }

    /// The same memory seen as `count` values of `T` (as many as fit). A handle read from the region may hold any
    /// count (another process wrote it): a byte count past `Int.max` is taken as `Int.max` bytes, a negative count
    /// as none; the heap's bounds check refuses either on use.
    @inlinable
    public func cast<T: BitwiseCopyable>(to type: T.Type) -> HeapPointer<T> {
        let (bytes, overflow) = max(count, 0).multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        return HeapPointer<T>(offset: offset, count: (overflow ? Int.max : bytes) / max(MemoryLayout<T>.stride, 1))
    }

    /// The handle of `count` values starting `index` values in, or `nil` if that is not inside this one (or, for a
    /// handle another process wrote, if its offset would pass the end of the address space).
    @inlinable
    public func slice(from index: Int, count: Int = 1) -> HeapPointer? {
        guard index >= 0, count >= 0, index <= self.count, count <= self.count - index else { return nil }
        let (skip, overflow) = index.multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        guard !overflow else { return nil }
        let (start, past) = offset.addingReportingOverflow(UInt64(skip))
        guard !past else { return nil }
        return HeapPointer(offset: start, count: count)
    }

    public var description: String { "HeapPointer<\(Pointee.self)>(offset: \(offset), count: \(count))" }
}

/// A value type's layout and identity, as the heap's generic methods pass it to their non-generic work.
@frozen @usableFromInline
struct HeapValueLayout {
    @usableFromInline let type: Any.Type
    @usableFromInline let size: Int
    @usableFromInline let stride: Int
    @usableFromInline let alignment: Int

    @inlinable
    init<T: BitwiseCopyable>(_ type: T.Type) {
        self.type = type
        size = MemoryLayout<T>.size
        stride = MemoryLayout<T>.stride
        alignment = MemoryLayout<T>.alignment
    }
}

/// A named object in a ``SharedHeap``, as ``SharedHeap/namedObjects()`` lists it.
public struct HeapObjectInfo: Sendable, Hashable {
    /// Its name.
    public var name: String
    /// Its values' type, as `String(reflecting:)` spells it in the process that constructed it.
    public var typeName: String
    /// How many values it has.
    public var count: Int
    /// Bytes its values take (count × stride).
    public var byteCount: Int
    /// Where its values start, from the heap's start.
    public var offset: UInt64

    init(_ entry: HeapDirectory.Entry, _ directory: HeapDirectory) {
        name = String(decoding: directory.name(entry), as: UTF8.self)
        typeName = String(decoding: directory.type(entry).name, as: UTF8.self)
        count = entry.count
        byteCount = entry.count * entry.stride
        offset = UInt64(entry.values)
    }
}
