import Atomics
import Glibc

/// A heap in a region: allocate and free blocks of any size, keep named objects, and point from one to another with
/// ``HeapPointer``s that mean the same in every process. Any backend; formatted once, attached from any number of
/// processes.
///
/// ```swift
/// var heap = try SharedHeap(formattingOrAttaching: try SharedMemory.openOrCreate(RegionName("posix:/book"), size: 1 << 20))
/// let orders = try heap.findOrConstruct("orders", repeating: 0 as UInt64, count: 100).pointer
/// try heap.store(42, to: orders, at: 7)
/// let block = try heap.allocate(byteCount: 300)
/// try heap.deallocate(block)
/// ```
///
/// **Locking and crashes.** Every operation that changes the heap's metadata (allocate, free, construct, destroy,
/// grow) holds the heap's robust process-shared mutex. A process killed at any moment inside one leaves the heap
/// consistent for the others: the next process to lock it repairs what was left half-done (a block half split or
/// half merged, a named object half constructed or half destroyed) and goes on; see Docs/StructuredData.md. What
/// the dead process had allocated and not yet handed to anyone stays allocated (as in any allocator).
///
/// **The values themselves** are not locked: ``load(_:at:)``, ``store(_:to:at:)`` and the spans read and write
/// the region directly. Share them as you would any shared memory: with a ``ProcessMutex``, atomics, or one writer.
///
/// **Safety.** The heap owns its region, so nothing can resize or detach it under a span; every access through a
/// ``HeapPointer`` is checked against the heap's bounds; the metadata another process wrote is checked before it is
/// followed (``SharedMemoryError/Code/foreign`` when it does not add up). Operations are `mutating` because any
/// of them may remap the region when another process has grown the heap: so a span lent by ``withSpan(_:_:)`` can
/// never be alive across one (the compiler refuses it).
///
/// Not `Sendable`: each thread or task that uses the heap attaches its own (or keep it in an actor).
public struct SharedHeap: ~Copyable {
    private var region: AnyRegion
    /// Where the heap starts in its region, in bytes.
    public let offset: Int
    /// The heap's start in this process's mapping, and how many of its bytes are mapped: read from the region once
    /// and after every remap, not on every operation.
    private var base: UnsafeMutableRawPointer
    private var mapped: Int
    /// The identity of the type this heap's last find or construct named.
    var lastType: (type: ObjectIdentifier, identity: TypeIdentity)?

    /// The smallest heap, in bytes: its header (free-list heads and the directory's buckets, 8.5 KiB) and room to
    /// allocate.
    public static let minimumSize = HeapLayout.minimumSize
    /// The largest alignment an allocation can ask for (a page).
    public static let maximumAlignment = HeapLayout.maximumAlignment
    /// The longest object name, in UTF-8 bytes.
    public static let maximumNameLength = HeapDirectory.maximumName

    typealias L = HeapLayout

    /// Formats a new, empty heap in `region` from `offset` to its end. Only over memory that holds no heap: the
    /// header's first 24 bytes must be zero (a fresh region), or be a heap whose formatting process died before it
    /// finished (see ``init(attaching:at:timeout:)``); anything else is ``SharedMemoryError/Code/alreadyExists``
    /// (a heap) or ``SharedMemoryError/Code/foreign``, and nothing is written.
    ///
    /// On error the region is detached (it was given to the heap).
    public init(formatting region: consuming AnyRegion, at offset: Int = 0) throws(SharedMemoryError) {
        self.offset = offset
        (base, mapped) = Self.place(region, offset)
        lastType = nil
        self.region = region
        try checkPlace()
        guard try claimFormat() else {
            throw SharedMemoryError(.alreadyExists, "a heap is already formatted at offset \(offset), or another process is formatting one; attach to it instead", region: self.region.name)
        }
        try formatClaimed()
    }

    /// Attaches to the heap another process formatted at `offset`, waiting up to `timeout` for it to be formatted
    /// (a heap that a live process is still formatting, or zeroed memory where one is expected), then
    /// ``SharedMemoryError/Code/timedOut``.
    ///
    /// A heap whose formatting process died before finishing is ``SharedMemoryError/Code/notReady`` at once, with
    /// that process's id: nothing is waited for, and ``init(formatting:at:)`` may format it again.
    public init(attaching region: consuming AnyRegion, at offset: Int = 0, timeout: Duration = .zero) throws(SharedMemoryError) {
        self.offset = offset
        (base, mapped) = Self.place(region, offset)
        lastType = nil
        self.region = region
        try checkPlace()
        let deadline = Deadline(after: timeout).end
        while try !attachIfReady(deadline: deadline) {}
    }

    /// Attaches to the heap at `offset`, or formats one if there is none (zeroed memory) or its formatting process
    /// died: the way for processes that start in any order. Two processes doing this at once get one heap. Waits up
    /// to `timeout` while another process formats it.
    public init(formattingOrAttaching region: consuming AnyRegion, at offset: Int = 0, timeout: Duration = .seconds(5)) throws(SharedMemoryError) {
        self.offset = offset
        (base, mapped) = Self.place(region, offset)
        lastType = nil
        self.region = region
        try checkPlace()
        let deadline = Deadline(after: timeout).end
        while true {
            if try claimFormat() {
                try formatClaimed()
                return
            }
            if try attachIfReady(deadline: deadline, takeOverDead: true) { return }
        }
    }

    /// Gives the region back; the heap in it stays as it is.
    public consuming func intoRegion() -> AnyRegion { region }

    /// The region's name.
    public var name: RegionName { region.name }

    // MARK: Allocating

    /// Allocates `byteCount` bytes aligned to `alignment` (a power of two up to ``maximumAlignment``), zeroed if
    /// asked; their contents are otherwise whatever was there. Throws ``SharedMemoryError/Code/noSpace`` (saying
    /// how much is free and the largest free block) when no free block is big enough.
    public mutating func allocate(byteCount: Int, alignment: Int = 16, zeroed: Bool = false) throws(SharedMemoryError) -> HeapPointer<UInt8> {
        try checkAlignment(alignment)
        guard byteCount >= 0 else {
            throw SharedMemoryError(.invalidArgument, "cannot allocate \(byteCount) bytes: the count must be 0 or more", region: name)
        }
        let payload = try locked { (bytes) throws(SharedMemoryError) in
            guard let payload = try bytes.allocate(byteCount, alignment: alignment) else { throw try Self.noSpace(bytes, byteCount) }
            if zeroed { (bytes.base + payload).initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
            return payload
        }
        return HeapPointer(offset: UInt64(payload), count: byteCount)
    }

    /// Allocates room for `count` values of `type`, aligned for it; zeroed if asked.
    @inlinable
    public mutating func allocate<T: BitwiseCopyable>(_ type: T.Type, count: Int = 1, zeroed: Bool = false) throws(SharedMemoryError) -> HeapPointer<T> {
        HeapPointer(offset: try allocate(count: count, of: HeapValueLayout(T.self), zeroed: zeroed), count: count)
    }

    /// Allocates `count` values of `type`, each set to `value`.
    @inlinable
    public mutating func allocate<T: BitwiseCopyable>(repeating value: T, count: Int = 1) throws(SharedMemoryError) -> HeapPointer<T> {
        let pointer = try allocate(T.self, count: count)
        let values = try address(pointer.offset, covering: count, from: 0, count: count, of: HeapValueLayout(T.self)).bindMemory(to: T.self, capacity: count)
        for index in 0..<count { values[index] = value }
        return pointer
    }

    /// Frees what ``allocate(byteCount:alignment:zeroed:)`` returned. A handle that is not an allocated block's
    /// start (freed already, forged, a named object's) is ``SharedMemoryError/Code/invalidArgument``, and nothing
    /// is freed; one whose block was freed and allocated again frees the new block (as in any allocator).
    @inlinable
    public mutating func deallocate<T: BitwiseCopyable>(_ pointer: HeapPointer<T>) throws(SharedMemoryError) {
        try deallocate(offset: pointer.offset)
    }

    /// The bytes the block really has (at least what was asked for; the rest of its 16-byte rounding or an unsplit
    /// remainder).
    @inlinable
    public mutating func usableSize<T: BitwiseCopyable>(of pointer: HeapPointer<T>) throws(SharedMemoryError) -> Int {
        try usableSize(offset: pointer.offset)
    }

    // MARK: Reading and writing values

    /// The value at `index` of what `pointer` covers. Throws ``SharedMemoryError/Code/outOfBounds`` if the index or
    /// the handle is outside it or the heap.
    @inlinable
    public mutating func load<T: BitwiseCopyable>(_ pointer: HeapPointer<T>, at index: Int = 0) throws(SharedMemoryError) -> T {
        try address(pointer.offset, covering: pointer.count, from: index, count: 1, of: HeapValueLayout(T.self)).load(as: T.self)
    }

    /// Stores `value` at `index` of what `pointer` covers.
    @inlinable
    public mutating func store<T: BitwiseCopyable>(_ value: T, to pointer: HeapPointer<T>, at index: Int = 0) throws(SharedMemoryError) {
        try address(pointer.offset, covering: pointer.count, from: index, count: 1, of: HeapValueLayout(T.self)).storeBytes(of: value, as: T.self)
    }

    /// Calls `body` with the values `pointer` covers as a `Span`, which cannot leave `body`. Errors from `body` pass
    /// through as they are.
    @inlinable
    public mutating func withSpan<T: BitwiseCopyable, R: ~Copyable, E: Error>(
        _ pointer: HeapPointer<T>, _ body: (Span<T>) throws(E) -> R
    ) throws -> R {
        let start = try address(pointer.offset, covering: pointer.count, from: 0, count: pointer.count, of: HeapValueLayout(T.self))
        let buffer = UnsafeBufferPointer(start: start.bindMemory(to: T.self, capacity: pointer.count), count: pointer.count)
        return try body(Span(_unsafeElements: buffer))
    }

    /// Calls `body` with the values `pointer` covers as a `MutableSpan`, which cannot leave `body`. Errors from
    /// `body` pass through as they are.
    @inlinable
    public mutating func withMutableSpan<T: BitwiseCopyable, R: ~Copyable, E: Error>(
        _ pointer: HeapPointer<T>, _ body: (inout MutableSpan<T>) throws(E) -> R
    ) throws -> R {
        let start = try address(pointer.offset, covering: pointer.count, from: 0, count: pointer.count, of: HeapValueLayout(T.self))
        let buffer = UnsafeMutableBufferPointer(start: start.bindMemory(to: T.self, capacity: pointer.count), count: pointer.count)
        var span = MutableSpan(_unsafeElements: buffer)
        defer {
            let same = span.count == buffer.count && span.withUnsafeBufferPointer { $0.baseAddress == UnsafePointer(buffer.baseAddress) }
            precondition(same, "withMutableSpan: the body replaced the span it was lent, to keep it past the body; a span of a heap cannot outlive the body")
        }
        return try body(&span)
    }

    // MARK: Named objects

    /// Makes a named object: `count` values of `T`, each set to `value`, findable by `name` from every process.
    /// Throws ``SharedMemoryError/Code/alreadyExists`` if the name is taken (the object is left alone).
    @inlinable
    public mutating func construct<T: BitwiseCopyable>(_ name: String, repeating value: T, count: Int = 1) throws(SharedMemoryError) -> HeapPointer<T> {
        let made = try findOrConstruct(name, count: count, of: HeapValueLayout(T.self), mayExist: false) { address in
            let values = address.bindMemory(to: T.self, capacity: count)
            for index in 0..<count { values[index] = value }
        }
        return HeapPointer(offset: made.offset, count: made.count)
    }

    /// The named object `name`, or `nil` if there is none. Its values must be of type `T`, as it was constructed
    /// (the type's name and layout are compared): another type is ``SharedMemoryError/Code/typeMismatch``, never
    /// a reinterpretation.
    @inlinable
    public mutating func find<T: BitwiseCopyable>(_ name: String, as type: T.Type = T.self) throws(SharedMemoryError) -> HeapPointer<T>? {
        guard let found = try find(name, of: HeapValueLayout(T.self)) else { return nil }
        return HeapPointer(offset: found.offset, count: found.count)
    }

    /// The named object `name` if it exists (of type `T`, as ``find(_:as:)`` checks), or a new one of `count` values
    /// set to `value`; `created` says which. Race-free: of processes doing this at once, one constructs and the
    /// others find its object.
    @inlinable
    public mutating func findOrConstruct<T: BitwiseCopyable>(_ name: String, repeating value: T, count: Int = 1) throws(SharedMemoryError) -> (pointer: HeapPointer<T>, created: Bool) {
        let made = try findOrConstruct(name, count: count, of: HeapValueLayout(T.self), mayExist: true) { address in
            let values = address.bindMemory(to: T.self, capacity: count)
            for index in 0..<count { values[index] = value }
        }
        return (HeapPointer(offset: made.offset, count: made.count), made.created)
    }

    /// Destroys the named object `name` and frees its memory; whether there was one. Handles to it are then stale.
    @discardableResult
    public mutating func destroy(_ name: String) throws(SharedMemoryError) -> Bool {
        try withName(name) { (heap, key) throws(SharedMemoryError) -> Bool in
            try heap.locked { (bytes) throws(SharedMemoryError) -> Bool in
                let directory = HeapDirectory(bytes: bytes)
                guard let found = try directory.find(key) else { return false }
                try directory.destroy(found)
                return true
            }
        }
    }

    /// Every named object: its name, type and size.
    public mutating func namedObjects() throws(SharedMemoryError) -> [HeapObjectInfo] {
        let entries = try locked { (bytes) throws(SharedMemoryError) in
            let directory = HeapDirectory(bytes: bytes)
            return try directory.all().map { HeapObjectInfo($0, directory) }
        }
        return entries.sorted { $0.name < $1.name }
    }

    // MARK: The whole heap

    /// How full the heap is: its free bytes, largest free block and counts. Walks every block (O(blocks)).
    public mutating func statistics() throws(SharedMemoryError) -> HeapStatistics {
        try verify()
    }

    /// Checks every block and every piece of metadata (see Docs/StructuredData.md) and returns the statistics;
    /// ``SharedMemoryError/Code/foreign`` names the first thing that does not add up. O(blocks).
    @discardableResult
    public mutating func verify() throws(SharedMemoryError) -> HeapStatistics {
        try locked { (bytes) throws(SharedMemoryError) in try bytes.verify() }
    }

    /// Grows the region to `newSize` bytes and the heap with it, for every process: the others map the new size on
    /// their next operation. Only posix, file and memfd regions can grow (``SharedMemoryError/Code/unsupported``
    /// otherwise); never shrinks. The region must hold no other objects' mappings (``SharedMemoryError/Code/busy``):
    /// a heap moves its mapping when it grows.
    ///
    /// The corresponding C calls are `posix_fallocate` and `ftruncate` (under the heap's lock, so two growers
    /// cannot shrink each other), then `mremap`.
    public mutating func grow(to newSize: Int) throws(SharedMemoryError) {
        guard newSize > offset, newSize - offset <= L.maximumExtent else {
            throw SharedMemoryError(.invalidArgument, "a heap at offset \(offset) cannot grow to a region of \(newSize) bytes (at most \(L.maximumExtent) bytes of heap)", region: name)
        }
        let target = (newSize - offset) & ~15
        var (bytes, mutex) = try lock()
        guard target > bytes.extent else { return try mutex.unlock() }
        do {
            try region.extendObject(to: offset + target)
        } catch {
            try? mutex.unlock()
            throw error
        }
        try mutex.unlock()
        try remap()
        (bytes, mutex) = try lock()
        defer { try? mutex.unlock() }
        guard target > bytes.extent else { return }
        guard mapped >= target else {
            throw SharedMemoryError(.removed, "the region is smaller than it was just grown to: another process shrank it", region: name)
        }
        do {
            try HeapBytes.grow(bytes, to: target)
        } catch {
            throw named(error)
        }
    }

    // MARK: Internals

    private func checkPlace() throws(SharedMemoryError) {
        guard region.access == .readWrite else {
            throw SharedMemoryError(.readOnly, "a heap needs a read-write attachment: even finding an object takes its lock", region: name)
        }
        guard offset >= 0, offset % 64 == 0 else {
            throw SharedMemoryError(.invalidArgument, "a heap's offset must be a multiple of 64; \(offset) is not", region: name)
        }
        guard mapped >= L.minimumSize else {
            throw SharedMemoryError(.invalidArgument, "a heap needs at least \(L.minimumSize) bytes; the region has \(max(region.size - offset, 0)) after offset \(offset)", region: name)
        }
    }

    /// Where the heap starts in `region`'s mapping and how much of it is mapped (a pointer one past a zero-size
    /// mapping's start when the region is too small, which ``checkPlace()`` refuses before anything reads it).
    private static func place(_ region: borrowing AnyRegion, _ offset: Int) -> (UnsafeMutableRawPointer, Int) {
        let mapping = region.mapping
        let (size, overflow) = mapping.size.subtractingReportingOverflow(offset)  // any offset a caller gave
        guard let start = mapping.base, offset >= 0, !overflow, size > 0 else { return (UnsafeMutableRawPointer(bitPattern: 0x1000)!, 0) }
        return (start + offset, size)
    }

    private mutating func remap() throws(SharedMemoryError) {
        try region.remap()
        (base, mapped) = Self.place(region, offset)
    }

    private func formatWord() -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + HeapHeader.format.offset).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
    }

    /// Claims the header for formatting: from zero, or from a formatter that died. False if a heap is there or a
    /// live process is formatting one; `foreign` if the memory holds something else.
    private func claimFormat() throws(SharedMemoryError) -> Bool {
        let word = formatWord()
        let mine = UInt64(UInt32(getpid())) << 32 | L.formatting
        while true {
            let current = word.load(ordering: .acquiring)
            if current == 0 {
                guard base.load(as: UInt64.self) == 0, base.load(fromByteOffset: 8, as: UInt64.self) == 0 else {
                    throw SharedMemoryError(.foreign, "the memory at offset \(offset) is not zero and holds no heap: formatting would overwrite it; format only a fresh region, or zero it yourself", region: name)
                }
                if word.compareExchange(expected: 0, desired: mine, ordering: .acquiringAndReleasing).exchanged { return true }
                continue
            }
            if current & 0xffff_ffff == L.formatting, !Self.alive(pid_t(truncatingIfNeeded: current >> 32)) {
                if word.compareExchange(expected: current, desired: mine, ordering: .acquiringAndReleasing).exchanged { return true }
                continue
            }
            if current & 0xffff_ffff == L.formatting || current & 0xffff_ffff == L.ready { return false }
            throw SharedMemoryError(.foreign, "the memory at offset \(offset) holds no heap this library made; formatting would overwrite it", region: name)
        }
    }

    private mutating func formatClaimed() throws(SharedMemoryError) {
        let extent = mapped & ~15
        guard extent <= L.maximumExtent else {
            throw SharedMemoryError(.invalidArgument, "a heap can have at most \(L.maximumExtent) bytes", region: name)
        }
        let bytes = HeapBytes(base: base, extent: extent, offset: offset)
        HeapCrash.point("format.claimed")
        try bytes.format()
        formatWord().store(UInt64(UInt32(getpid())) << 32 | L.ready, ordering: .releasing)
        Handshake.wake(base + HeapHeader.format.offset)  // the state's low half: processes attaching meanwhile
    }

    /// One look at the header: true once a heap is there and attached; false to look again (after sleeping on the
    /// format word until it changes, at most 100 ms at a time and never past `deadline`: Handshake).
    private mutating func attachIfReady(deadline: Int64, takeOverDead: Bool = false) throws(SharedMemoryError) -> Bool {
        let current = formatWord().load(ordering: .acquiring)
        switch current & 0xffff_ffff {
        case L.ready:
            guard base.load(as: UInt64.self) == L.magic else {
                throw SharedMemoryError(.foreign, "the memory at offset \(offset) says it is a heap but has no heap's magic number", region: name)
            }
            let major = HeapHeader.major.load(base, UInt16.self)
            guard major == L.major else {
                throw SharedMemoryError(.foreign, "the heap at offset \(offset) has format version \(major), and this library reads version \(L.major)", region: name)
            }
            _ = try prepared()
            return true
        case L.formatting:
            let pid = pid_t(truncatingIfNeeded: current >> 32)
            if !Self.alive(pid) {
                if takeOverDead { return false }
                throw SharedMemoryError(.notReady, "the process that was formatting this heap (pid \(pid)) died before it finished; format it again (SharedHeap(formatting:) or SharedHeap(formattingOrAttaching:))", region: name)
            }
        case 0:
            if takeOverDead { return false }
        default:
            throw SharedMemoryError(.foreign, "the memory at offset \(offset) holds no heap this library made", region: name)
        }
        guard MonotonicClock.now() < deadline else {
            throw SharedMemoryError(.timedOut, current == 0 ? "no heap has been formatted at offset \(offset) yet" : "the heap at offset \(offset) is still being formatted", region: name)
        }
        Handshake.sleep(on: base + HeapHeader.format.offset, seen: UInt32(truncatingIfNeeded: current), until: deadline)
        return false
    }

    private static func alive(_ pid: pid_t) -> Bool { kill(pid, 0) == 0 || errno != ESRCH }

    /// The heap's bytes for an operation: remaps first if another process grew the heap past this mapping.
    mutating func prepared() throws(SharedMemoryError) -> HeapBytes {
        var claimed = Int(truncatingIfNeeded: extentWord().load(ordering: .acquiring))
        if claimed > mapped, claimed <= L.maximumExtent {
            try remap()
            claimed = Int(truncatingIfNeeded: extentWord().load(ordering: .acquiring))
        }
        guard claimed >= L.minimumSize, claimed & 15 == 0, claimed <= mapped else {
            throw SharedMemoryError(.foreign, "the heap's header says it has \(claimed) bytes, but the region has \(mapped) after offset \(offset)", region: name)
        }
        return HeapBytes(base: base, extent: claimed, offset: offset)
    }

    private func extentWord() -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: (base + HeapHeader.extent.offset).assumingMemoryBound(to: UInt64.AtomicRepresentation.self))
    }

    /// Takes the heap's lock with the heap mapped whole, repairing first if a process died holding it. The mapping
    /// never moves while the lock is held (the kernel finds a dead owner's robust mutex by its address).
    private mutating func lock() throws(SharedMemoryError) -> (HeapBytes, RobustMutex) {
        do {
            return try lockUnnamed()
        } catch {
            throw named(error)
        }
    }

    private mutating func lockUnnamed() throws(SharedMemoryError) -> (HeapBytes, RobustMutex) {
        while true {
            var bytes = try prepared()
            let mutex = RobustMutex(address: bytes.base + HeapHeader.mutex.offset, region: nil)
            if try mutex.lock() == .ownerDied {
                bytes.setWord32(HeapHeader.needsRepair.offset, 1)
                try mutex.markConsistent()
            }
            let claimed = Int(truncatingIfNeeded: bytes.word(HeapHeader.extent.offset))
            if claimed != bytes.extent {
                // Another process grew the heap between the look and the lock.
                if claimed <= mapped {
                    bytes = HeapBytes(base: bytes.base, extent: claimed, offset: offset)
                } else {
                    try mutex.unlock()
                    continue
                }
            }
            if bytes.word32(HeapHeader.needsRepair.offset) != 0 {
                do {
                    try bytes.repair()
                } catch {
                    try? mutex.unlock()
                    throw error
                }
                bytes.setWord32(HeapHeader.needsRepair.offset, 0)
            }
            return (bytes, mutex)
        }
    }

    /// Runs `body` holding the heap's lock (the containers' operations run this way too).
    ///
    /// An operation that finds the metadata foreign rebuilds, before it lets go of the lock, everything derived from
    /// the chain of block headers (the free lists, bitmaps, directory and counters; ``HeapBytes/rebuild()``, which
    /// frees nothing and changes no block): a write through a stale handle into a freed block's list links, or a
    /// peer's write over the lists, bitmaps or directory, then costs one operation its `foreign`, not the heap its
    /// life. A chain that does not walk stays foreign.
    mutating func locked<R>(_ body: (HeapBytes) throws(SharedMemoryError) -> R) throws(SharedMemoryError) -> R {
        let (bytes, mutex) = try lock()
        defer { try? mutex.unlock() }
        do {
            return try body(bytes)
        } catch {
            if error.code == .foreign { try? bytes.rebuild() }
            throw named(error)
        }
    }

    /// `error` with this heap's region named, if it names none (errors made under the lock do not).
    func named(_ error: SharedMemoryError) -> SharedMemoryError {
        var error = error
        if error.region == nil { error.region = name }
        return error
    }

    func checkAlignment(_ alignment: Int) throws(SharedMemoryError) {
        guard alignment > 0, alignment & (alignment - 1) == 0, alignment <= L.maximumAlignment else {
            throw SharedMemoryError(.invalidArgument, "an alignment must be a power of two up to \(L.maximumAlignment); \(alignment) is not", region: name)
        }
    }

    /// Calls `body` with the name's UTF-8 bytes in place (no copy), after checking its length.
    mutating func withName<R>(
        _ name: String, _ body: (inout SharedHeap, UnsafeRawBufferPointer) throws(SharedMemoryError) -> R
    ) throws(SharedMemoryError) -> R {
        var name = name
        let count = name.utf8.count
        guard count > 0, count <= HeapDirectory.maximumName else {
            throw SharedMemoryError(.invalidArgument, "an object's name must have 1 to \(HeapDirectory.maximumName) bytes of UTF-8; this one has \(count)", region: self.name)
        }
        let result = name.withUTF8 { (utf8) -> Result<R, SharedMemoryError> in
            do throws(SharedMemoryError) {
                return .success(try body(&self, UnsafeRawBufferPointer(utf8)))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    static func noSpace(_ bytes: HeapBytes, _ count: Int) throws(SharedMemoryError) -> SharedMemoryError {
        let free = Int(truncatingIfNeeded: bytes.word(HeapHeader.freeBytes.offset))
        let largest = try bytes.largestFree()
        return SharedMemoryError(.noSpace, "no free block holds \(count) bytes: \(free) bytes are free, the largest free block holds \(max(largest - L.blockHeader, 0)); free some, or grow the heap", region: bytes.region)
    }
}
