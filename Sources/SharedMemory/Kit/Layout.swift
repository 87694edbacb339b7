import Atomics

/// What one field of an in-region format is besides its offset: how wide, who writes it, with which ordering.
/// The same words as the tables of Docs/WireFormat.md, which a test checks against these declarations.
@usableFromInline package struct FieldDeclaration: Sendable, Equatable {
    /// Bytes of one value (of one element, for an array).
    @usableFromInline package let width: Int
    /// For an array or an area, how many bytes it takes, as WireFormat.md says it ("4 × H"); nil for one value.
    package let extent: String?
    /// Who writes it ("formatter", "sender", …).
    package let writer: String
    /// The ordering of the write ("release, last", "plain (before `magic`)", …).
    package let ordering: String

    package init(_ width: Int, _ writer: String, _ ordering: String, extent: String? = nil) {
        self.width = width
        self.extent = extent
        self.writer = writer
        self.ordering = ordering
    }

    /// The width column of WireFormat.md: the extent for an array, else the width.
    package var widthText: String { extent ?? String(width) }
}

/// The fields of one part of a format (a header, a slot, a chunk), declared once: each case is a field, its raw
/// value the field's offset from the part's start, its ``declaration`` the rest. The engines read and write through
/// these cases, the inspector (`shm inspect`) reads through them, and a test checks the C headers' enumerators and
/// Docs/WireFormat.md against them, so that Swift, C, Python (which builds on the C headers) and the docs cannot
/// drift apart.
///
/// An enum rather than a table of values: its offsets are compile-time constants on the hot paths (a static table
/// is a load and, for a type with strings, a lazy initialiser), and the compiler refuses a case without its
/// declaration (the `switch` is exhaustive).
@usableFromInline package protocol FormatField: RawRepresentable, CaseIterable, Sendable where RawValue == Int {
    /// The part's heading in Docs/WireFormat.md ("The message ring / Header"), or its name if the docs have no
    /// table for it.
    static var part: String { get }
    /// The prefix of the C header's enumerators for this part ("SMRING_OFF_"); nil if no C header implements it.
    static var cPrefix: String? { get }
    var declaration: FieldDeclaration { get }
}

extension FormatField {
    /// Bytes from the part's start.
    @inlinable @inline(__always) package var offset: Int { rawValue }

    /// The field's name, as WireFormat.md spells it.
    package var name: String { String(describing: self) }

    /// The C header's enumerator for this field (`SMRING_OFF_SENDER_PID` for `senderPID`).
    package var cName: String? {
        guard let prefix = Self.cPrefix else { return nil }
        var snake = ""
        var previous: Character? = nil
        for character in name {
            if character.isUppercase, let previous, previous.isLowercase { snake.append("_") }
            snake.append(character)
            previous = character
        }
        return prefix + snake.uppercased()
    }

    /// The atomic word of this field in the part at `base`. Debug builds check that `T` is as wide as declared.
    @inlinable @inline(__always)
    func atomic<T: AtomicValue>(_ base: UnsafeMutableRawPointer, _: T.Type) -> UnsafeAtomic<T> {
        assert(MemoryLayout<T>.size == declaration.width, "\(Self.self).\(self) is \(declaration.width) bytes wide")
        return UnsafeAtomic(at: (base + rawValue).assumingMemoryBound(to: T.AtomicRepresentation.self))
    }

    /// A plain read of this field in the part at `base`. Debug builds check that `T` is as wide as declared.
    @inlinable @inline(__always)
    func load<T: BitwiseCopyable>(_ base: UnsafeRawPointer, _: T.Type) -> T {
        assert(MemoryLayout<T>.size == declaration.width, "\(Self.self).\(self) is \(declaration.width) bytes wide")
        return base.load(fromByteOffset: rawValue, as: T.self)
    }

    /// A plain write of this field in the part at `base`. Debug builds check that `T` is as wide as declared.
    @inlinable @inline(__always)
    func store<T: BitwiseCopyable>(_ value: T, _ base: UnsafeMutableRawPointer) {
        assert(MemoryLayout<T>.size == declaration.width, "\(Self.self).\(self) is \(declaration.width) bytes wide")
        base.storeBytes(of: value, toByteOffset: rawValue, as: T.self)
    }
}

/// Every part of every format, for the agreement test and the inspector.
package enum Formats {
    package static let parts: [any FormatField.Type] = [
        RingHeader.self, ServiceHeader.self, SubscriberSlot.self, Chunk.self,
        RequestResponseHeader.self, ClientSlot.self, RequestCell.self, SeqlockLayout.self, HeapHeader.self,
    ]
}
