import Atomics
import CSharedMemory
import Glibc

/// The publisher of a service (see ``PublishSubscribe``): loans a chunk, lets a body fill it in place, and publishes
/// it to every subscriber. One per service; holds the service's publisher seat and the region's mapping.
public struct Publisher: ~Copyable {
    /// Everything the publisher holds, in memory of its own (see ``PublisherLocal``): a handle of one word is passed
    /// in a register, so one kept in a class's `let` (an actor's or a server's state) is not copied onto the stack
    /// before each publish, as the 288-byte publisher was (Docs/Design.md, "A handle is one or two words").
    let local: UnsafeMutablePointer<PublisherLocal>

    /// The service's view: its mapping, lock and geometry.
    var service: ServiceView { _read { yield local.pointee.service } }
    /// The service's place and layout, read in place by the hot path (see ``ServiceGeometry``).
    var geometry: ServiceGeometry { local.pointee.geometry }
    /// Where the next loan starts looking for a free chunk.
    private var cursor: Int {
        get { local.pointee.cursor }
        nonmutating set { local.pointee.cursor = newValue }
    }
    /// The chunk loaned ahead for the next publish, or -1: see ``loanAhead()``.
    private var nextLoan: Int {
        get { local.pointee.nextLoan }
        nonmutating set { local.pointee.nextLoan = newValue }
    }
    /// How long a publish waits for room in a ``Subscriber/Overflow/blockPublisher`` subscriber's queue.
    public var blockTimeout: Duration { local.pointee.blockTimeout }
    /// Per subscriber slot, the read position last seen and the slot's generation then: while the generation is the
    /// same, the subscriber's read position only grows, so a queue with room at that position has room now, and the
    /// publish need not read the subscriber's line (a cache line that would cross between cores on every sample).
    private var readSeen: UnsafeMutablePointer<SeenRead> { local.pointee.readSeen }

    struct SeenRead {
        /// The slot's place in the mapping (inside it: the layout was checked), kept here so that the publish's loop
        /// finds the slot and what it saw of it from one index, without a multiplication by the slot's stride.
        let slot: UnsafeMutableRawPointer
        var generation: UInt32 = 0
        /// The subscriber's queue depth, checked (1 to the queue's capacity) when it was seen: a slot's depth is
        /// written at connect, before its generation moves on, so it holds while the generation does. 0 until seen,
        /// so that no queue has room by it.
        var depth: UInt32 = 0
        /// `.max` until a read position is seen (a peer's forged one only makes this publish take room it was told
        /// of, in its own masked entry).
        var read: UInt64 = .max
    }

    typealias P = PublishSubscribe

    /// Takes the publisher's seat of the service at `offset`, waiting up to `timeout` for it to be formatted.
    /// ``SharedMemoryError/Code/busy`` if a live process publishes; a dead publisher's seat is taken over (its
    /// half-done publish repaired). `blockTimeout` bounds each wait for a full blocking subscriber.
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration = .zero, blockTimeout: Duration = .seconds(1)) throws(SharedMemoryError) {
        let service = try ServiceView(region, at: offset, timeout: timeout)
        try service.withLock { () throws(SharedMemoryError) in
            let publishing = service.atomic(ServiceHeader.publisherState.offset, UInt32.self).load(ordering: .acquiring) == 1
            let dead = try service.publisherSeat.claim(region: service.name, holderIsDone: !publishing) {
                "process \($0) already publishes on this service; a service has one publisher"
            }
            if dead != nil { service.recoverFromDeadPublisher() }
            service.atomic(ServiceHeader.publisherState.offset, UInt32.self).store(1, ordering: .releasing)
        }
        let readSeen = UnsafeMutablePointer<SeenRead>.allocate(capacity: service.layout.subscribers)
        for s in 0..<service.layout.subscribers { (readSeen + s).initialize(to: SeenRead(slot: service.base + service.slot(s))) }
        local = .allocate(capacity: 1)
        local.initialize(to: PublisherLocal(service: service, geometry: service.geometry, blockTimeout: blockTimeout, readSeen: readSeen))
    }

    /// The largest payload a sample can have.
    public var maxPayload: Int { service.layout.maxPayload }

    /// The sequence number of the last sample published on the service (0 before the first).
    public var lastSequence: UInt64 { service.atomic(ServiceHeader.published.offset, UInt64.self).load(ordering: .acquiring) }

    /// Subscribers connected now.
    public var subscriberCount: Int {
        (0..<service.layout.subscribers).count { service.atomic(service.slot($0) + SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.connected }
    }

    /// Zero-copy: loans a chunk of up to `count` bytes, lets `body` write the sample in place through an
    /// `OutputRawSpan` (which cannot leave `body` nor write past `count`), and publishes what it wrote to every
    /// connected subscriber; returns the sample's sequence number. A ``Subscriber/Overflow/blockPublisher``
    /// subscriber whose queue stays full for ``blockTimeout`` misses the sample (counted in its ``Subscriber/lost``),
    /// and the publish then throws ``SharedMemoryError/Code/timedOut`` naming it, after every other subscriber got it.
    @discardableResult
    public func publish(count: Int, _ body: (inout OutputRawSpan) -> Void) throws(SharedMemoryError) -> UInt64 {
        let (c, length) = try loanAndFill(count: count, body)
        return try deliver(c, length: length)
    }

    /// A publish's first half: loans a chunk and lets `body` write up to `count` bytes into it; the chunk and the
    /// length written.
    func loanAndFill(count: Int, _ body: (inout OutputRawSpan) -> Void) throws(SharedMemoryError) -> (chunk: Int, length: Int) {
        guard count >= 0, count <= geometry.layout.maxPayload else {
            throw SharedMemoryError(.invalidArgument, "a sample of \(count) bytes does not fit this service: at most \(geometry.layout.maxPayload)", region: service.name)
        }
        let c = try loan()
        let payload = UnsafeMutableRawBufferPointer(start: geometry.base + geometry.chunk(c) + Chunk.payload.offset, count: count)
        var output = OutputRawSpan(buffer: payload, initializedCount: 0)
        body(&output)
        return (c, output.finalize(for: payload))
    }

    /// Zero-copy for C interop and benchmarks: loans a chunk, lets `body` fill exactly `count` bytes of it through a
    /// pointer, and publishes them. The pointer is valid only inside `body`: the compiler does not check that;
    /// ``publish(count:_:)`` is the safe way.
    @discardableResult
    public func publishUnsafe(count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) throws(SharedMemoryError) -> UInt64 {
        guard count >= 0, count <= geometry.layout.maxPayload else {
            throw SharedMemoryError(.invalidArgument, "a sample of \(count) bytes does not fit this service: at most \(geometry.layout.maxPayload)", region: service.name)
        }
        let c = try loan()
        body(UnsafeMutableRawBufferPointer(start: geometry.base + geometry.chunk(c) + Chunk.payload.offset, count: count))
        return try deliver(c, length: count)
    }

    /// Loans a chunk, lets `fill` write into its first `count` bytes (at most the service's largest) and say how many
    /// it wrote, and publishes them; if `fill` says nil, the loan goes back unpublished and the result is nil.
    @usableFromInline
    func publishFilled(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Int?) throws(SharedMemoryError) -> UInt64? {
        guard count >= 0, count <= geometry.layout.maxPayload else {
            throw SharedMemoryError(.invalidArgument, "a sample of \(count) bytes does not fit this service: at most \(geometry.layout.maxPayload)", region: service.name)
        }
        let c = try loan()
        guard let length = fill(UnsafeMutableRawBufferPointer(start: geometry.base + geometry.chunk(c) + Chunk.payload.offset, count: count)) else {
            nextLoan = c  // unpublished: the next publish takes it
            return nil
        }
        return try deliver(c, length: length)
    }

    /// `invalidArgument`: a typed publish's body made no `type` value.
    @usableFromInline
    func nothingAppended(_ type: Any.Type) -> SharedMemoryError {
        SharedMemoryError(.invalidArgument, "the body appended no \(type) to its output: nothing was published", region: service.name)
    }

    /// Copies `bytes` into a chunk and publishes it (see ``publish(count:_:)``).
    @discardableResult
    public func publish(_ bytes: UnsafeRawBufferPointer) throws(SharedMemoryError) -> UInt64 {
        guard bytes.count <= geometry.layout.maxPayload else {
            throw SharedMemoryError(.invalidArgument, "a sample of \(bytes.count) bytes does not fit this service: at most \(geometry.layout.maxPayload)", region: service.name)
        }
        let c = try loan()
        if bytes.count > 0 { (geometry.base + (geometry.chunk(c) &+ Chunk.payload.offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        return try deliver(c, length: bytes.count)
    }

    /// Copies `bytes` into a chunk and publishes it (see ``publish(count:_:)``).
    @discardableResult
    public func publish(_ bytes: [UInt8]) throws(SharedMemoryError) -> UInt64 {
        try publishUnsafe(count: bytes.count) { chunk in chunk.copyBytes(from: bytes) }
    }

    /// Delivers the history to subscribers that asked for it since the last publish, and reclaims dead
    /// subscribers, without publishing: for a publisher with nothing to say for a while.
    public func update() throws(SharedMemoryError) {
        let service = self.service
        try service.withLock { () throws(SharedMemoryError) in
            for s in 0..<service.layout.subscribers { service.reclaimIfDead(s) }
        }
        try Self.inPublish(geometry) { () throws(SharedMemoryError) in
            for s in 0..<service.layout.subscribers { try deliverHistory(to: s) }
        }
    }

    /// Runs `body` as a publish runs, without the lock (see ``ServiceGeometry/enterPublish()``). `body` never
    /// reclaims (that would wait for itself).
    @inline(__always)
    private static func inPublish<R>(_ geometry: ServiceGeometry, _ body: () throws(SharedMemoryError) -> R) throws(SharedMemoryError) -> R {
        geometry.enterPublish()
        defer { geometry.leavePublish() }
        return try body()
    }

    /// Ends the stream: subscribers read what was published, then their ``Subscriber/receive(timeout:_:)`` returns
    /// `nil`. Gives the publisher's seat back (another process may then publish).
    public consuming func finish() {
        service.atomic(ServiceHeader.publisherState.offset, UInt32.self).store(2, ordering: .releasing)
        for s in 0..<service.layout.subscribers { Syscalls.futexWake(service.base + service.slot(s) + SubscriberSlot.write.offset) }
    }

    /// A free chunk (no holder), marked as this publisher's loan: the one loaned ahead at the end of the last
    /// publish, if any. After a full scan finds none, reclaims dead subscribers and scans once more.
    @inline(__always)
    private func loan() throws(SharedMemoryError) -> Int {
        if nextLoan >= 0 {
            let c = nextLoan
            nextLoan = -1
            return c
        }
        // The next chunk after the cursor is usually free: take it here, anything else out of line.
        if let c = loanAtCursor(geometry) { return c }
        return try loanSearching()
    }

    /// The chunk at the cursor, loaned if it is free; the cursor moves past it either way.
    @inline(__always)
    private func loanAtCursor(_ geometry: ServiceGeometry) -> Int? {
        let c = cursor
        cursor = cursor &+ 1 == geometry.layout.chunkCount ? 0 : cursor &+ 1  // below the count, a small number
        return geometry.holders(c).compareExchange(expected: 0, desired: P.loanBit, ordering: .acquiringAndReleasing).exchanged ? c : nil
    }

    /// Right after a publish, loans the chunk for the next one if the one at the cursor is free. Taking a chunk
    /// means a compare-and-swap on its marks, which the subscriber that released it last wrote: done here, while the
    /// subscribers read, the wait for that cache line is off the next publish's path (measured in
    /// Docs/Benchmarks.md). The publisher still holds at most one loan at a time, as the wire format counts on; it
    /// gives this one back when it goes (its deinit), and if its process dies, whoever recovers the service does.
    @inline(__always)
    private func loanAhead(_ geometry: ServiceGeometry) {
        if nextLoan < 0, let c = loanAtCursor(geometry) { nextLoan = c }
    }

    /// A publisher that goes away without ``finish()`` gives back its loan and vacates its seat: another process
    /// may then publish, and nothing ends (subscribers wait on; this process's death is still `peerDied` to them).
    deinit {
        if nextLoan >= 0 { geometry.endLoan(nextLoan) }
        service.publisherSeat.vacate()
        readSeen.deallocate()
        local.deinitialize(count: 1)
        local.deallocate()
    }

    /// ``loan()`` when the chunk at the cursor is held: every chunk in turn, then again after reclaiming dead
    /// subscribers' chunks.
    @inline(never)
    private func loanSearching() throws(SharedMemoryError) -> Int {
        for pass in 0..<2 {
            for _ in 0..<geometry.layout.chunkCount {
                if let c = loanAtCursor(geometry) { return c }
            }
            if pass == 0 {
                let service = self.service
                try service.withLock { () throws(SharedMemoryError) in
                    for s in 0..<service.layout.subscribers { service.reclaimIfDead(s) }
                }
            }
        }
        throw SharedMemoryError(.noSpace, "every chunk of the service is held (by subscribers' queues and reads, and the history): something holds samples it should have released", region: service.name)
    }

    /// Publishes the loaned chunk `c`: its sequence and length, into the history, into every connected subscriber's
    /// queue (history first for those that asked), then gives up the loan and loans the next chunk ahead. The loan
    /// goes back on an error too: the lock or a corrupt queue refused the sample, or a blocking subscriber stayed
    /// full (then the sample was published to every other one).
    private func deliver(_ c: Int, length: Int) throws(SharedMemoryError) -> UInt64 {
        // The geometry in a local, passed to what the publish calls: read from the publisher's memory, it was loaded
        // again after every atomic operation (nothing tells the optimiser that no one else writes that memory).
        let geometry = self.geometry
        var blocked: UInt64 = 0  // bit s: subscriber s blocks the publisher and its queue was full
        let sequence: UInt64
        do {
            sequence = try publishToSlots(geometry, c, geometry.chunk(c), length, &blocked)
            if blocked != 0 { try waitForBlocked(c, blocked, sequence) }
        } catch {
            geometry.endLoan(c)
            throw error
        }
        geometry.endLoan(c)
        loanAhead(geometry)
        return sequence
    }

    /// ``deliver(_:length:)`` from async code: a wait for room in a blocking subscriber's queue suspends the task
    /// instead of its thread. Cancelling the task ends those waits: the subscribers still full miss the sample
    /// (counted as lost) and this throws `CancellationError`, after every other subscriber got it.
    func deliverAsync(_ c: Int, length: Int, isolation: isolated (any Actor)? = #isolation) async throws -> UInt64 {
        let geometry = self.geometry
        var blocked: UInt64 = 0
        let sequence: UInt64
        do {
            sequence = try publishToSlots(geometry, c, geometry.chunk(c), length, &blocked)
            if blocked != 0 { try await waitForBlockedAsync(c, blocked, sequence) }
        } catch {
            geometry.endLoan(c)
            throw error
        }
        geometry.endLoan(c)
        loanAhead(geometry)
        return sequence
    }

    /// Subscribers that block the publisher, whose queues were full: waits (without the lock, so others can
    /// connect) for room in each, then puts the sample in; one still full after the timeout misses it, and the
    /// publish says so after every other got it.
    private func waitForBlocked(_ c: Int, _ blocked: UInt64, _ sequence: UInt64) throws(SharedMemoryError) {
        var late: [Int32] = []
        for s in 0..<service.layout.subscribers where blocked & ServiceGeometry.mark(s) != 0 {
            if try !waitAndEnqueue(c, to: s) { late.append(service.subscriberSeat(s).pidValue) }
        }
        if !late.isEmpty { throw lateError(late, sequence) }
    }

    /// ``waitForBlocked(_:_:_:)``, suspending the task while it waits; a cancel ends every wait still to come, those
    /// subscribers missing the sample.
    private func waitForBlockedAsync(_ c: Int, _ blocked: UInt64, _ sequence: UInt64, isolation: isolated (any Actor)? = #isolation) async throws {
        var late: [Int32] = []
        var cancelled = false
        for s in 0..<service.layout.subscribers where blocked & ServiceGeometry.mark(s) != 0 {
            let wait = BlockedWait(service, s)
            var waiting = Wait(.sleep, timeout: blockTimeout, async: true)
            while true {
                if try enqueueUnlessStillFull(c, wait) { break }
                if cancelled {
                    wait.countLost()
                    break
                }
                do {
                    let slept = try await waiting.sleepAsync(on: wait.word, raise: { () throws(SharedMemoryError) in wait.prepareToSleep() }, lower: { wait.stopSleeping() })
                    if slept == .deadlinePassed {
                        wait.countLost()
                        late.append(service.subscriberSeat(s).pidValue)
                        break
                    }
                } catch is CancellationError {
                    cancelled = true
                }
            }
        }
        if cancelled { throw CancellationError() }
        if !late.isEmpty { throw lateError(late, sequence) }
    }

    /// The publish's error when blocking subscribers (in processes `late`) stayed full for the whole block timeout.
    func lateError(_ late: [Int32], _ sequence: UInt64) -> SharedMemoryError {
        SharedMemoryError(.timedOut, "sample \(sequence) was published, but the queue of the subscriber\(late.count == 1 ? "" : "s") in process \(late.map(String.init).joined(separator: ", ")) stayed full for \(blockTimeout); they miss it (counted as lost)", region: service.name)
    }

    /// The part of a publish that reads the slots (in the publish epoch, no lock): the sample's sequence and length,
    /// the history owed to new subscribers, each connected subscriber's queue (those full and blocking are marked in
    /// `blocked`), the history.
    @inline(__always)
    private func publishToSlots(_ geometry: ServiceGeometry, _ c: Int, _ chunkAt: Int, _ length: Int, _ blocked: inout UInt64) throws(SharedMemoryError) -> UInt64 {
        geometry.enterPublish()
        defer { geometry.leavePublish() }
        let sequence = geometry.atomic(ServiceHeader.published.offset, UInt64.self).load(ordering: .relaxed) &+ 1
        geometry.base.storeBytes(of: sequence, toByteOffset: chunkAt &+ Chunk.sequence.offset, as: UInt64.self)
        geometry.base.storeBytes(of: UInt64(truncatingIfNeeded: length), toByteOffset: chunkAt &+ Chunk.length.offset, as: UInt64.self)
        let seen = readSeen
        var subscribers = try connectedSubscribers(geometry)
        // Every subscriber's mark at once, before any queue shows the chunk (one atomic operation, not one each); a
        // subscriber that does not get it here has its mark taken back. A mark with the chunk in no queue is harmless
        // meanwhile: only the publisher gives this chunk out, and it holds the loan.
        if subscribers != 0 { _ = geometry.holders(c).loadThenBitwiseOr(with: subscribers, ordering: .acquiringAndReleasing) }
        while subscribers != 0 {
            let s = subscribers.trailingZeroBitCount
            subscribers &= subscribers &- 1
            let queued: Bool
            do {
                queued = try enqueue(c, to: s, geometry, seen)
            } catch {
                geometry.unmark(c, subscribers | ServiceGeometry.mark(s))
                throw error
            }
            if !queued { blocked |= ServiceGeometry.mark(s) }
        }
        if blocked != 0 { geometry.unmark(c, blocked) }
        if geometry.layout.history > 0 { addToHistory(c) }
        geometry.atomic(ServiceHeader.published.offset, UInt64.self).store(sequence, ordering: .releasing)
        return sequence
    }

    /// Puts chunk `c` at the end of subscriber `s`'s queue, marked for it first (the mark taken back if it was not
    /// queued); with the queue full, drops the oldest (overwriting subscribers) or returns false (blocking ones).
    /// Called in the epoch, outside a publish's loop (a blocked subscriber's wait, a history delivered), where the
    /// slot may have changed hands since the slots were last looked at: what was seen of another subscriber is
    /// forgotten first.
    private func enqueue(_ c: Int, to s: Int) throws(SharedMemoryError) -> Bool {
        forgetIfReplaced(s, geometry.atomic(geometry.slot(s) &+ SubscriberSlot.generation.offset, UInt32.self).load(ordering: .acquiring))
        _ = geometry.holders(c).loadThenBitwiseOr(with: ServiceGeometry.mark(s), ordering: .acquiringAndReleasing)
        let queued: Bool
        do {
            queued = try enqueue(c, to: s, geometry, readSeen)
        } catch {
            geometry.unmark(c, ServiceGeometry.mark(s))
            throw error
        }
        if !queued { geometry.unmark(c, ServiceGeometry.mark(s)) }
        return queued
    }

    /// Forgets the read position and depth seen of slot `s` if it is now another subscriber's (`generation`).
    private func forgetIfReplaced(_ s: Int, _ generation: UInt32) {
        if readSeen[s].generation != generation { readSeen[s] = SeenRead(slot: readSeen[s].slot, generation: generation) }
    }

    /// The subscribers a publish delivers to, a bit each: those connected when the slots were last looked at, while
    /// `connections` has not moved since (every connect and reclaim moves it, after the slot's state; read after the
    /// publish epoch was made odd, so a reclaimer either is seen or waits for this publish: see
    /// ``ServiceView/connectionsChanged()``). So a publish reads no slot's state, generation or history flag while
    /// the subscribers stay the same.
    @inline(__always)
    private func connectedSubscribers(_ geometry: ServiceGeometry) throws(SharedMemoryError) -> UInt64 {
        let connections = UInt64(geometry.atomic(ServiceHeader.connections.offset, UInt32.self).load(ordering: .sequentiallyConsistent))
        if connections == local.pointee.connectionsSeen { return local.pointee.connected }
        return try lookAtSlots(connections)
    }

    /// `connections` moved (or this is the first publish): each slot's state read again; a slot that changed hands
    /// has what was seen of it forgotten, and one whose subscriber asked for history gets it now, before the sample.
    /// Out of line: the publish's own path stays short.
    @inline(never)
    private func lookAtSlots(_ connections: UInt64) throws(SharedMemoryError) -> UInt64 {
        var connected: UInt64 = 0
        for s in 0..<geometry.layout.subscribers where geometry.atomic(geometry.slot(s) &+ SubscriberSlot.state.offset, UInt32.self).load(ordering: .sequentiallyConsistent) == P.connected {
            forgetIfReplaced(s, geometry.atomic(geometry.slot(s) &+ SubscriberSlot.generation.offset, UInt32.self).load(ordering: .acquiring))
            try deliverHistory(to: s)
            connected |= ServiceGeometry.mark(s)
        }
        local.pointee.connected = connected
        local.pointee.connectionsSeen = connections
        return connected
    }

    /// ``enqueue(_:to:)`` with the geometry and the seen positions passed in (the publish's loop keeps them in
    /// registers), for a chunk that already carries the subscriber's mark (the publish marks every subscriber's at
    /// once): a mark set after the entry shows could come after the subscriber took and released the chunk, and stay.
    @inline(__always)
    private func enqueue(_ c: Int, to s: Int, _ geometry: ServiceGeometry, _ readSeen: UnsafeMutablePointer<SeenRead>) throws(SharedMemoryError) -> Bool {
        let seen = readSeen[s]
        let slot = seen.slot
        let capacity = UInt64(truncatingIfNeeded: geometry.layout.queueCapacity)
        let write = MessageRing.atomic(slot, SubscriberSlot.write.offset, UInt64.self)
        let w = write.load(ordering: .relaxed)
        // Room by what was seen of this subscriber (a slot that changed hands was forgotten): fewer than its depth
        // queued since its read position then, which only grows (a write position below it wraps to a huge
        // difference: no room). The read position is on the subscriber's line, which need not cross to this core.
        if !(w &- seen.read < UInt64(seen.depth)) {
            guard try makeRoom(in: s, write: w) else { return false }
        }
        slot.storeBytes(of: UInt32(truncatingIfNeeded: c), toByteOffset: SubscriberSlot.entries.offset &+ Int(truncatingIfNeeded: w & (capacity &- 1)) &* 4, as: UInt32.self)
        write.store(w &+ 1, ordering: .sequentiallyConsistent)
        if MessageRing.atomic(slot, SubscriberSlot.subscriberSleeps.offset, UInt32.self).load(ordering: .sequentiallyConsistent) != 0 {
            Syscalls.futexWake(slot + SubscriberSlot.write.offset)
        }
        return true
    }

    /// No room in subscriber `s`'s queue by what was seen (at write position `w`): its read position read and
    /// checked, and kept while there is room; a full queue's oldest dropped (overwriting subscribers) or left
    /// (blocking ones: false). Out of line, as it runs once in a queue's depth of publishes: inlined, the registers
    /// it needs made the publish's loop keep its values on the stack.
    @inline(never)
    private func makeRoom(in s: Int, write w: UInt64) throws(SharedMemoryError) -> Bool {
        let slotAt = geometry.slot(s)
        let capacity = UInt64(truncatingIfNeeded: geometry.layout.queueCapacity)
        let depth = UInt64(geometry.base.load(fromByteOffset: slotAt &+ SubscriberSlot.depth.offset, as: UInt32.self))
        let read = geometry.atomic(slotAt &+ SubscriberSlot.read.offset, UInt64.self)
        while true {
            let r = read.load(ordering: .acquiring)
            guard w >= r, w - r <= depth, depth >= 1, depth <= capacity else {
                throw SharedMemoryError(.foreign, "subscriber \(s)'s queue positions (read \(r), write \(w), depth \(depth)) do not add up", region: service.name)
            }
            if w - r < depth {
                readSeen[s].depth = UInt32(truncatingIfNeeded: depth)
                readSeen[s].read = r
                return true
            }
            guard try dropOldest(from: s, read: r) else { return false }
        }
    }

    /// Subscriber `s`'s queue is full at read position `r`: an overwriting subscriber's oldest sample is dropped
    /// (unless the subscriber took it first) and counted as lost, and the caller looks again (true); a blocking
    /// subscriber's is left (false). Out of line, as a full queue is the rare case: inlined, its address arithmetic
    /// was hoisted into every publish's loop over the subscribers.
    @inline(never)
    private func dropOldest(from s: Int, read r: UInt64) throws(SharedMemoryError) -> Bool {
        let slotAt = geometry.slot(s)
        guard geometry.base.load(fromByteOffset: slotAt &+ SubscriberSlot.policy.offset, as: UInt32.self) == 0 else { return false }
        let capacity = UInt64(truncatingIfNeeded: geometry.layout.queueCapacity)
        let oldest = Int(geometry.base.load(fromByteOffset: slotAt &+ SubscriberSlot.entries.offset &+ Int(truncatingIfNeeded: r & (capacity &- 1)) &* 4, as: UInt32.self))
        guard oldest < geometry.layout.chunkCount else { throw service.badChunk(oldest) }
        if geometry.atomic(slotAt &+ SubscriberSlot.read.offset, UInt64.self).compareExchange(expected: r, desired: r &+ 1, ordering: .acquiringAndReleasing).exchanged {
            _ = geometry.holders(oldest).loadThenBitwiseAnd(with: ~ServiceGeometry.mark(s), ordering: .acquiringAndReleasing)
            geometry.atomic(slotAt &+ SubscriberSlot.lost.offset, UInt64.self).wrappingIncrement(ordering: .relaxed)
        }
        return true
    }

    /// For a blocking subscriber whose queue was full: waits (without the lock) for room, at most ``blockTimeout``,
    /// then enqueues under the lock if the subscriber is still the same one. False if it stayed full (the sample
    /// is counted as lost for it).
    private func waitAndEnqueue(_ c: Int, to s: Int) throws(SharedMemoryError) -> Bool {
        let wait = BlockedWait(service, s)
        var waiting = Wait(.sleep, timeout: blockTimeout)
        while true {
            if try enqueueUnlessStillFull(c, wait) { return true }
            let slept = try waiting.sleep(on: wait.word, raise: { () throws(SharedMemoryError) in wait.prepareToSleep() }, lower: { wait.stopSleeping() })
            if slept == .deadlinePassed {
                wait.countLost()
                return false
            }
        }
    }

    /// True if the sample needs no more waiting (it was queued, or the subscriber left, died or was replaced), false
    /// if its queue is still full. The queueing runs as a publish does (in the epoch, no lock); a dead subscriber is
    /// reclaimed after, under the lock.
    func enqueueUnlessStillFull(_ c: Int, _ wait: BlockedWait) throws(SharedMemoryError) -> Bool {
        let service = self.service
        let outcome = try Self.inPublish(geometry) { () throws(SharedMemoryError) -> Bool? in
            guard service.atomic(wait.slotAt + SubscriberSlot.state.offset, UInt32.self).load(ordering: .sequentiallyConsistent) == P.connected,
                  service.atomic(wait.slotAt + SubscriberSlot.generation.offset, UInt32.self).load(ordering: .acquiring) == wait.generation
            else { return true }  // it left, or died and was reclaimed: nothing to deliver
            if !service.subscriberSeat(wait.subscriber).isHeldByLiveProcess { return nil }
            return try enqueue(c, to: wait.subscriber)
        }
        if let outcome { return outcome }
        _ = try service.withLock { () throws(SharedMemoryError) in service.reclaimIfDead(wait.subscriber) }
        return true
    }

    /// A publisher's wait for room in one blocking subscriber's queue: which subscriber (its slot's generation, so
    /// that a slot changing hands ends the wait) and the futex word it sleeps on (the low half of the
    /// read position, with `publisherSleeps` raised so that the subscriber wakes it).
    struct BlockedWait {
        let service: ServiceView
        let subscriber: Int
        let slotAt: Int
        let generation: UInt32

        init(_ service: ServiceView, _ s: Int) {
            self.service = service
            subscriber = s
            slotAt = service.slot(s)
            generation = service.atomic(slotAt + SubscriberSlot.generation.offset, UInt32.self).load(ordering: .acquiring)
        }

        var word: UnsafeMutableRawPointer { service.base + slotAt + SubscriberSlot.read.offset }

        /// Raises `publisherSleeps` and returns the read position's low half to sleep on; nil (flag lowered) if the
        /// subscriber read meanwhile, so that no wake is missed.
        func prepareToSleep() -> UInt32? {
            let read = service.atomic(slotAt + SubscriberSlot.read.offset, UInt64.self)
            let seen = UInt32(truncatingIfNeeded: read.load(ordering: .sequentiallyConsistent))
            service.atomic(slotAt + SubscriberSlot.publisherSleeps.offset, UInt32.self).store(1, ordering: .sequentiallyConsistent)
            guard UInt32(truncatingIfNeeded: read.load(ordering: .sequentiallyConsistent)) == seen else {
                stopSleeping()
                return nil
            }
            return seen
        }

        func stopSleeping() { service.atomic(slotAt + SubscriberSlot.publisherSleeps.offset, UInt32.self).store(0, ordering: .relaxed) }

        /// The subscriber misses the sample: one more in its `lost`.
        func countLost() { service.atomic(slotAt + SubscriberSlot.lost.offset, UInt64.self).wrappingIncrement(ordering: .relaxed) }
    }

    /// Delivers the history subscriber `s` asked for, once (lock held).
    private func deliverHistory(to s: Int) throws(SharedMemoryError) {
        let slotAt = service.slot(s)
        guard service.atomic(slotAt + SubscriberSlot.state.offset, UInt32.self).load(ordering: .acquiring) == P.connected,
              service.atomic(slotAt + SubscriberSlot.historyDelivered.offset, UInt32.self).load(ordering: .acquiring) == 0 else { return }
        let layout = service.layout
        let wanted = min(Int(service.base.load(fromByteOffset: slotAt + SubscriberSlot.historyWanted.offset, as: UInt32.self)), layout.history)
        let head = service.atomic(ServiceHeader.historyHead.offset, UInt64.self).load(ordering: .relaxed)
        let available = Int(min(head, UInt64(wanted)))
        for i in stride(from: available, to: 0, by: -1) {
            let c = try service.checkedChunk(service.base.load(fromByteOffset: ServiceHeader.historyEntries.offset + Int((head - UInt64(i)) % UInt64(layout.history)) * 4, as: UInt32.self))
            _ = try enqueue(c, to: s)
        }
        service.atomic(slotAt + SubscriberSlot.historyDelivered.offset, UInt32.self).store(1, ordering: .releasing)
    }

    /// Puts `c` into the history ring, evicting the oldest (lock held). The chunk is marked before it is listed and
    /// the evicted one unmarked after, so a crash leaves at worst a mark too many, which a repair removes.
    private func addToHistory(_ c: Int) {
        let history = UInt64(service.layout.history)
        let head = service.atomic(ServiceHeader.historyHead.offset, UInt64.self).load(ordering: .relaxed)
        let at = ServiceHeader.historyEntries.offset + Int(head % history) * 4
        let evicted = head >= history ? Int(service.base.load(fromByteOffset: at, as: UInt32.self)) : nil
        _ = service.holders(c).loadThenBitwiseOr(with: P.historyBit, ordering: .acquiringAndReleasing)
        service.base.storeBytes(of: UInt32(c), toByteOffset: at, as: UInt32.self)
        if let evicted, evicted < service.layout.chunkCount, evicted != c {
            _ = service.holders(evicted).loadThenBitwiseAnd(with: ~P.historyBit, ordering: .acquiringAndReleasing)
        }
        service.atomic(ServiceHeader.historyHead.offset, UInt64.self).store(head &+ 1, ordering: .releasing)
    }
}

/// What a ``Publisher`` holds: the service's view and geometry, its loan cursor and the chunk loaned ahead, its
/// block timeout, and the read positions it last saw.
struct PublisherLocal {
    let service: ServiceView
    let geometry: ServiceGeometry
    var cursor = 0
    var nextLoan = -1
    let blockTimeout: Duration
    let readSeen: UnsafeMutablePointer<Publisher.SeenRead>
    /// The service's `connections` when the slots were last looked at (`.max`: never), and the subscribers connected
    /// then, a bit each (see ``Publisher/connectedSubscribers(_:)``).
    var connectionsSeen: UInt64 = .max
    var connected: UInt64 = 0
}
