/// Short text (file names, lifetime records, the creator attribute) assembled byte by byte, for the paths every
/// create and remove runs: string interpolation there cost ~10 000 instructions a create (each piece a `String`,
/// each append a possible reallocation), more than all the system calls' user-space work together. One
/// allocation (grown only if `capacity` was too small), or none with ``withStack(capacity:_:)``; digits written in
/// place.
struct ASCIIText: ~Copyable {
    private var start: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    /// Whether `start` was allocated here (and is freed here), or lent by ``withStack(capacity:_:)``.
    private var owned: Bool
    private(set) var count = 0

    init(capacity: Int = 64) {
        self.capacity = max(capacity, 16)
        start = .allocate(capacity: self.capacity)
        owned = true
    }

    private init(lent buffer: UnsafeMutableBufferPointer<UInt8>) {
        start = buffer.baseAddress!
        capacity = buffer.count
        owned = false
    }

    /// Runs `body` with text in `capacity` bytes on the stack (moved to the heap only if it grows past them).
    static func withStack<R, E: Error>(capacity: Int, _ body: (inout ASCIIText) throws(E) -> R) throws(E) -> R {
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(capacity, 16)) { buffer throws(E) -> R in
            var text = ASCIIText(lent: buffer)
            return try body(&text)
        }
    }

    deinit { if owned { start.deallocate() } }

    /// Makes room for `more` bytes after `count`.
    private mutating func reserve(_ more: Int) {
        guard count + more > capacity else { return }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: max(capacity * 2, count + more))
        grown.update(from: start, count: count)
        if owned { start.deallocate() }
        start = grown
        capacity = max(capacity * 2, count + more)
        owned = true
    }

    /// Appends bytes.
    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        reserve(bytes.count)
        if let base = bytes.baseAddress { (start + count).update(from: base, count: bytes.count) }
        count += bytes.count
    }

    /// Appends a literal.
    mutating func append(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends a string's UTF-8 bytes.
    mutating func append(contentsOf text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    /// Appends an integer in decimal, with a minus sign if negative.
    mutating func append<I: BinaryInteger>(decimal value: I) {
        reserve(21)
        if value < 0 {
            start[count] = UInt8(ascii: "-")
            count += 1
        }
        var magnitude = UInt64(value.magnitude)
        var digits = 1
        var bound: UInt64 = 10
        while digits < 20 && magnitude >= bound {
            digits += 1
            bound &*= 10
        }
        var at = count + digits
        repeat {
            at -= 1
            start[at] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        } while magnitude != 0
        count += digits
    }

    /// Appends `value` as exactly 16 lowercase hex digits.
    mutating func append(hex16 value: UInt64) {
        reserve(16)
        var value = value
        for at in (count..<count + 16).reversed() {
            let nibble = UInt8(truncatingIfNeeded: value & 0xf)
            start[at] = nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "a") &- 10 &+ nibble
            value >>= 4
        }
        count += 16
    }

    /// The bytes so far, for as long as `body` runs.
    func withBytes<R, E: Error>(_ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try body(UnsafeBufferPointer(start: start, count: count))
    }

    /// The text as a `String` (the bytes are ASCII or came from a `String`, so they are valid UTF-8).
    var string: String { String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self) }
}

/// `prefix` followed by 16 hex digits: 64 bits from the system's secure random generator.
func randomName(_ prefix: StaticString) -> String {
    var generator = SystemRandomNumberGenerator()
    return ASCIIText.withStack(capacity: prefix.utf8CodeUnitCount + 16) { text in
        text.append(prefix)
        text.append(hex16: generator.next())
        return text.string
    }
}
