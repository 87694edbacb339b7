import Atomics
import Glibc

/// A client of a request/response service: sends requests (written in place) and reads their responses (in place).
/// Holds a slot and the region's mapping.
public struct Client: ~Copyable {
    /// What the client holds, in memory of its own (see ``ClientLocal``): a handle of one word, kept in a class's
    /// `let` too with nothing copied per call (Docs/Design.md, "A handle is one or two words").
    let local: UnsafeMutablePointer<ClientLocal>
    /// The service's view.
    var service: RequestView { _read { yield local.pointee.service } }
    /// This client's slot.
    var index: Int { local.pointee.index }
    /// The correlation id of the next request.
    private var nextCorrelation: UInt64 {
        get { local.pointee.nextCorrelation }
        nonmutating set { local.pointee.nextCorrelation = newValue }
    }
    /// Whether this client last found the server's process gone (then every call looks again, until one runs).
    private var serverSeenDead: Bool {
        get { local.pointee.serverSeenDead }
        nonmutating set { local.pointee.serverSeenDead = newValue }
    }
    /// Whether this client has looked at the server's process yet (its first send does; later sends do not, since
    /// that costs a system call and a read of /proc, and the receive that waits for the response looks).
    private var serverLookedAt: Bool {
        get { local.pointee.serverLookedAt }
        nonmutating set { local.pointee.serverLookedAt = newValue }
    }

    typealias R = RequestResponse

    /// Connects to the service at `offset` (waiting up to `timeout` for it to be formatted). A free slot is taken;
    /// with none, dead clients' slots are reclaimed first; with still none, ``SharedMemoryError/Code/limitExceeded``.
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration = .zero) throws(SharedMemoryError) {
        let service = try RequestView(region, at: offset, timeout: timeout)
        let (index, generation) = try service.withLock { () throws(SharedMemoryError) -> (Int, UInt32) in
            var free = (0..<service.layout.clients).first { service.atomic(service.slot($0) + ClientSlot.state.offset, UInt32.self).load(ordering: .acquiring) == R.free }
            if free == nil { free = (0..<service.layout.clients).first { service.reclaimIfDead($0) } }
            guard let s = free else {
                throw SharedMemoryError(.limitExceeded, "all \(service.layout.clients) client slots of the service are taken by live processes", region: service.name)
            }
            let at = service.slot(s)
            service.free(s)
            service.clientSeat(s).occupy()
            let generation = service.atomic(at + ClientSlot.generation.offset, UInt32.self).wrappingIncrementThenLoad(ordering: .relaxed)
            service.atomic(at + ClientSlot.state.offset, UInt32.self).store(R.connected, ordering: .releasing)
            return (s, generation)
        }
        local = .allocate(capacity: 1)
        local.initialize(to: ClientLocal(service: service, index: index, nextCorrelation: UInt64(generation) << 32 | 1))
    }

    /// The largest request.
    public var maxRequest: Int { service.layout.maxRequest }

    /// Sends a request: writes it in place through an `OutputRawSpan` of up to `count` bytes, and rings the server.
    /// Returns the request's correlation id. With `depth` requests outstanding (their responses not yet read), throws
    /// ``SharedMemoryError/Code/busy``: read a response first. Throws ``SharedMemoryError/Code/peerDied`` if the
    /// server finished, or if its process is gone as this client last saw it: this client's first send looks at the
    /// server's process, and so does every call after one that found it gone, until a new server runs. A later send
    /// does not look (a system call and a read of /proc a request): a request sent to a server that died since is
    /// reported by the receive that waits for its response.
    @discardableResult
    public func send(count: Int, _ body: (inout OutputRawSpan) -> Void) throws(SharedMemoryError) -> UInt64 {
        try send(count: count) { place in
            var output = OutputRawSpan(buffer: place, initializedCount: 0)
            body(&output)
            return output.finalize(for: place)
        }
    }

    /// Sends a copy of `bytes` as a request (see ``send(count:_:)``); returns its correlation id.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer) throws(SharedMemoryError) -> UInt64 {
        try send(count: bytes.count) { place in
            if bytes.count > 0 { place.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            return bytes.count
        }
    }

    /// Sends a copy of `bytes` as a request (see ``send(count:_:)``); returns its correlation id.
    @discardableResult
    public func send(_ bytes: [UInt8]) throws(SharedMemoryError) -> UInt64 {
        try send(count: bytes.count) { place in
            place.copyBytes(from: bytes)
            return bytes.count
        }
    }

    /// A request of up to `count` bytes that `fill` writes into its cell, returning how many it wrote.
    private func send(count: Int, fill: (UnsafeMutableRawBufferPointer) -> Int) throws(SharedMemoryError) -> UInt64 {
        let layout = service.layout
        guard count >= 0, count <= layout.maxRequest else {
            throw SharedMemoryError(.invalidArgument, "a request of \(count) bytes does not fit this service: at most \(layout.maxRequest)", region: service.name)
        }
        let at = service.slot(index)
        let write = service.atomic(at + ClientSlot.requestWrite.offset, UInt64.self)
        let responseRead = service.atomic(at + ClientSlot.responseRead.offset, UInt64.self)
        let w = write.load(ordering: .relaxed)
        try checkServer(lookingAtProcess: !serverLookedAt)
        guard w &- responseRead.load(ordering: .relaxed) < UInt64(layout.depth) else {
            throw SharedMemoryError(.busy, "\(layout.depth) requests are outstanding (sent, and their responses not read): read a response first", region: service.name)
        }
        let cell = service.requestCell(index, w)
        let written = fill(UnsafeMutableRawBufferPointer(start: service.base + cell + RequestCell.bytes.offset, count: count))
        let correlation = nextCorrelation
        nextCorrelation = correlation &+ 1
        service.base.storeBytes(of: correlation, toByteOffset: cell, as: UInt64.self)
        service.base.storeBytes(of: UInt64(written), toByteOffset: cell + 8, as: UInt64.self)
        write.store(w &+ 1, ordering: .releasing)
        service.atomic(RequestResponseHeader.doorbell.offset, UInt32.self).wrappingIncrement(ordering: .sequentiallyConsistent)
        if service.atomic(RequestResponseHeader.serverSleeps.offset, UInt32.self).load(ordering: .sequentiallyConsistent) != 0 {
            Syscalls.futexWake(service.base + RequestResponseHeader.doorbell.offset)
        }
        return correlation
    }

    /// Waits for the next response (up to `timeout`, then ``SharedMemoryError/Code/timedOut``; `nil` waits as long
    /// as it takes) and calls `body` with it in place and its correlation id. ``SharedMemoryError/Code/peerDied``
    /// if the server died (or finished) with this request unanswered.
    public func receive<T>(timeout: Duration? = nil, _ body: (RawSpan, UInt64) throws -> T) throws -> T {
        let at = service.slot(index)
        var waiting = Wait(.sleep, timeout: timeout)
        while true {
            let (response, written) = try pendingResponse()
            if let response { return try deliver(response, body) }
            // Whether the server still runs is read from /proc once a server that has not finished has been waited
            // for a whole slice, or at once when a look on a previous call found it dead.
            try checkServer(lookingAtProcess: waiting.lookAtPeer || serverSeenDead)
            if service.sleep(&waiting, flag: at + ClientSlot.clientSleeps.offset, word: at + ClientSlot.responseWrite.offset, seen: written) == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "no response arrived within \(timeout!)", region: service.name)
            }
        }
    }

    /// Waits for the next response as ``receive(timeout:_:)`` does, suspending the task (not blocking a thread) while
    /// none has arrived; cancelling the task ends the wait with `CancellationError` (the response, when it comes, is
    /// the next one received).
    public func receiveAsync<T>(
        timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation, _ body: (RawSpan, UInt64) throws -> T
    ) async throws -> T {
        let at = service.slot(index)
        var waiting = Wait(.sleep, timeout: timeout, async: true)
        while true {
            let (response, written) = try pendingResponse()
            if let response { return try deliver(response, body) }
            try checkServer(lookingAtProcess: waiting.lookAtPeer || serverSeenDead)
            if try await service.sleepAsync(&waiting, flag: at + ClientSlot.clientSleeps.offset, word: at + ClientSlot.responseWrite.offset, seen: written) == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "no response arrived within \(timeout!)", region: service.name)
            }
        }
    }

    /// Sends a request and waits for its response as ``request(count:timeout:_:_:)`` does, suspending the task (not
    /// blocking a thread) while the response is on its way.
    public func requestAsync<T>(
        count: Int, timeout: Duration? = nil, isolation: isolated (any Actor)? = #isolation,
        _ fill: (inout OutputRawSpan) -> Void, _ body: (RawSpan) throws -> T
    ) async throws -> T {
        let correlation = try send(count: count, fill)
        let name = service.name
        return try await receiveAsync(timeout: timeout) { (response: RawSpan, answered: UInt64) throws -> T in
            guard answered == correlation else {
                throw SharedMemoryError(.foreign, "the response answers request \(answered), not \(correlation): responses came out of order", region: name)
            }
            return try body(response)
        }
    }

    /// One look at this client's response queue: the next response (its cell, checked length and correlation id, and
    /// its position), or nil with the write position seen. `invalidArgument` if no request waits for one.
    private func pendingResponse() throws(SharedMemoryError) -> (response: (cell: Int, length: Int, correlation: UInt64, position: UInt64)?, written: UInt64) {
        let layout = service.layout
        let at = service.slot(index)
        let read = service.atomic(at + ClientSlot.responseRead.offset, UInt64.self)
        let r = read.load(ordering: .relaxed)
        let w = service.atomic(at + ClientSlot.responseWrite.offset, UInt64.self).load(ordering: .acquiring)
        guard w >= r, w - r <= UInt64(layout.depth) else {
            throw SharedMemoryError(.foreign, "this client's response positions (read \(r), write \(w)) do not add up", region: service.name)
        }
        if w > r {
            let cell = service.responseCell(index, r)
            let (correlation, length) = try service.cellHeader(cell, largest: layout.maxResponse, what: "response", read: read, position: r)
            return ((cell, length, correlation, r), w)
        }
        guard service.atomic(at + ClientSlot.requestWrite.offset, UInt64.self).load(ordering: .relaxed) != r else {
            throw SharedMemoryError(.invalidArgument, "no request is waiting for a response: send one first", region: service.name)
        }
        return (nil, w)
    }

    /// Calls `body` with a response in place, then frees its cell.
    private func deliver<T>(_ response: (cell: Int, length: Int, correlation: UInt64, position: UInt64), _ body: (RawSpan, UInt64) throws -> T) throws -> T {
        defer { service.atomic(service.slot(index) + ClientSlot.responseRead.offset, UInt64.self).store(response.position &+ 1, ordering: .releasing) }
        let bytes = UnsafeRawBufferPointer(start: service.base + response.cell + RequestCell.bytes.offset, count: response.length)
        return try body(RawSpan(_unsafeBytes: bytes), response.correlation)
    }

    /// Sends a request (see ``send(count:_:)``) and waits for its response (see ``receive(timeout:_:)``),
    /// checking that the response carries the request's correlation id (``SharedMemoryError/Code/foreign`` if not).
    public func request<T>(
        count: Int, timeout: Duration? = nil, _ fill: (inout OutputRawSpan) -> Void, _ body: (RawSpan) throws -> T
    ) throws -> T {
        let correlation = try send(count: count, fill)
        let name = service.name
        return try receive(timeout: timeout) { (response: RawSpan, answered: UInt64) throws -> T in
            guard answered == correlation else {
                throw SharedMemoryError(.foreign, "the response answers request \(answered), not \(correlation): responses came out of order", region: name)
            }
            return try body(response)
        }
    }

    /// Leaves the service: the slot is free at once.
    public consuming func close() {
        Self.leave(service, index)
        local.pointee.closed = true
    }

    /// A client that goes away without ``close()`` (an error thrown past it, a cancelled task) gives its slot back at
    /// once, as `close()` does: a client leaving ends nothing for the server or other clients (a response to a
    /// request it left behind is simply never read). Before, the slot stayed taken for the life of the process.
    deinit {
        if !local.pointee.closed { Self.leave(service, index) }
        local.deinitialize(count: 1)
        local.deallocate()
    }

    /// Frees slot `index` if this process holds it (a copy inherited across `fork` names the parent's slot).
    private static func leave(_ service: RequestView, _ index: Int) {
        try? service.withLock { () throws(SharedMemoryError) in
            guard service.clientSeat(index).isMine else { return }
            service.free(index)
        }
    }

    /// `peerDied` if the server finished, or (looking at its process, which reads /proc) died: a client waiting on it
    /// would wait forever.
    private func checkServer(lookingAtProcess: Bool) throws(SharedMemoryError) {
        let state = service.atomic(RequestResponseHeader.serverState.offset, UInt32.self).load(ordering: .acquiring)
        if state == 2 {
            throw SharedMemoryError(.peerDied, "the server finished with this client's request unanswered", region: service.name)
        }
        if state == 1, lookingAtProcess || serverSeenDead, let server = service.server {
            serverLookedAt = true
            serverSeenDead = !server.isAlive
            if serverSeenDead {
                throw SharedMemoryError(.peerDied, "the server (process \(server.pid)) died with this client's request unanswered", region: service.name)
            }
        }
    }
}

/// What a ``Client`` holds: the service's view, its slot, the correlation id of its next request, what it last
/// found of the server's process, and whether ``Client/close()`` gave the slot back already (the deinit then has
/// nothing to do).
struct ClientLocal {
    let service: RequestView
    let index: Int
    var nextCorrelation: UInt64
    var serverSeenDead = false
    var serverLookedAt = false
    var closed = false
}
