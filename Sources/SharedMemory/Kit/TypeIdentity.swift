/// What a typed structure's values are: the type's name (`String(reflecting:)`) and layout. A heap's named object
/// keeps it whole, compared on every find; a typed publish/subscribe service keeps its hash, size and alignment
/// (compared on attach) and the name's first bytes (for the message when they differ).
struct TypeIdentity: Equatable, Sendable {
    let name: [UInt8]
    let size: Int
    let stride: Int
    let alignment: Int

    /// The identity of `type`, computed once per type and process (`String(reflecting:)` costs about a microsecond,
    /// more than a heap's find).
    static func of(_ layout: HeapValueLayout) -> TypeIdentity {
        known.withLock { known in
            let key = ObjectIdentifier(layout.type)
            if let identity = known[key] { return identity }
            let identity = TypeIdentity(name: Array(String(reflecting: layout.type).utf8.prefix(HeapDirectory.maximumName)),
                                        size: layout.size, stride: layout.stride, alignment: layout.alignment)
            known[key] = identity
            return identity
        }
    }

    /// The identity of `type`, as the other `of` gives it.
    static func of<T: BitwiseCopyable>(_ type: T.Type) -> TypeIdentity { of(HeapValueLayout(type)) }

    /// Every type's identity, computed once per process. Each heap also keeps the last one it used, without a lock.
    private static let known = Locked<[ObjectIdentifier: TypeIdentity]>([:])

    /// FNV-1a of the name: what a service header keeps of it (never 0 for a name, which is how "no type" reads).
    var hash: UInt64 { fnv1a(name) | (name.isEmpty ? 0 : 1) }

    var nameText: String { String(decoding: name, as: UTF8.self) }

    var description: String { "\(nameText) (size \(size), stride \(stride), alignment \(alignment))" }
}

/// FNV-1a, 64-bit: the hash of a heap's names and of a service's sample type.
func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
    return hash
}
