import Atomics
import Glibc

/// Requests from many clients to one server, and each request's response back to the client that sent it, through a
/// region: each client has a slot with a queue of requests and a queue of responses, written and read in place.
///
/// ```swift
/// try RequestResponse.format(region, maxRequest: 256, maxResponse: 4096, clients: 8, depth: 4)   // once
/// var server = try Server(region)                                             // one process
/// try server.handle { (request: RawSpan, response: inout OutputRawSpan, _: RequestInfo) in
///     response.append(UInt8(request.byteCount))
/// }
/// var client = try Client(region)                                             // up to 8 processes
/// let count = try client.request(count: 3, { $0.append(1); $0.append(2); $0.append(3) }) { (response: RawSpan) in
///     response.unsafeLoad(as: UInt8.self)
/// }
/// ```
///
/// - A client has up to `depth` requests outstanding (sent, and their responses not yet read); a send beyond that
///   is ``SharedMemoryError/Code/busy``, so the server never waits for room.
/// - Every request carries a correlation id, which its response carries back: ``Client/send(count:_:)``
///   returns it, ``Client/receive(timeout:_:)`` reports it; ``Client/request(count:timeout:_:_:)`` does both and
///   checks they match.
/// - The server takes requests from the clients in turn. A client that dies has its slot reclaimed by the server
///   (or by a client needing a slot); a server that dies is ``SharedMemoryError/Code/peerDied`` to every client
///   waiting for a response, never a wait forever; a new server can take its place.
/// - Everything read from the region is checked: what does not add up is ``SharedMemoryError/Code/foreign``.
public enum RequestResponse {
    // The header's, a slot's and a cell's fields are declared in Kit/Formats.swift.
    static let free: UInt32 = 0, connected: UInt32 = 1

    static let magic: UInt64 = 0x5345_5251_4552_4D53  // "SMREQRES"
    static let major: UInt16 = 1
    static let minor: UInt16 = 1  // 1: the request and response type fields (zero in 1.0: bytes)

    /// The configuration a formatted service's header states (its magic already seen), checked as every reader
    /// checks it: a version this library reads, a configuration SharedMemory writes, and a size within the `room`
    /// bytes from `offset`; else `foreign`. Reads only.
    static func readLayout(_ base: UnsafeRawPointer, room: Int, offset: Int, region: RegionName?) throws(SharedMemoryError) -> Layout {
        let found = RequestResponseHeader.major.load(base, UInt16.self)
        guard found == major else {
            throw SharedMemoryError(.foreign, "the service has format version \(found); this library reads version \(major)", region: region)
        }
        let maxRequest = Int(truncatingIfNeeded: RequestResponseHeader.maxRequest.load(base, UInt64.self))
        let maxResponse = Int(truncatingIfNeeded: RequestResponseHeader.maxResponse.load(base, UInt64.self))
        let clients = Int(RequestResponseHeader.clients.load(base, UInt32.self))
        let depth = Int(RequestResponseHeader.depth.load(base, UInt32.self))
        if let wanted = Layout.check(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth) {
            throw SharedMemoryError(.foreign, "the service's header is not one SharedMemory writes (it must have \(wanted))", region: region)
        }
        let layout = Layout(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth)
        guard layout.size <= room else {
            throw SharedMemoryError(.foreign, "the service's header says it takes \(layout.size) bytes, and the region has \(room) from offset \(offset)", region: region)
        }
        return layout
    }

    struct Layout: Equatable {
        let maxRequest: Int
        let maxResponse: Int
        let clients: Int
        let depth: Int

        var requestCell: Int { (RequestCell.bytes.offset + maxRequest + 63) & ~63 }
        var responseCell: Int { (RequestCell.bytes.offset + maxResponse + 63) & ~63 }
        var slotStride: Int { ClientSlot.entries.offset + depth * (requestCell + responseCell) }
        var size: Int { RequestResponseHeader.slots.offset + clients * slotStride }

        static func check(maxRequest: Int, maxResponse: Int, clients: Int, depth: Int) -> String? {
            if maxRequest < 0 || maxRequest > 1 << 32 || maxResponse < 0 || maxResponse > 1 << 32 { return "requests and responses of 0 bytes to 4 GiB" }
            if clients < 1 || clients > 4096 { return "1 to 4096 clients" }
            if depth < 1 || depth > 4096 { return "a depth of 1 to 4096 outstanding requests" }
            return nil
        }
    }

    /// Bytes a service with this configuration takes in a region: a header, and per client `depth` cells of
    /// `maxRequest` bytes and `depth` of `maxResponse` (each plus 16, rounded to 64). A configuration too large for
    /// ``format(_:at:maxRequest:maxResponse:clients:depth:)`` takes `Int.max` bytes (no region has that many).
    public static func size(maxRequest: Int, maxResponse: Int, clients: Int, depth: Int) -> Int {
        let (maxRequest, maxResponse, clients, depth) = (max(maxRequest, 0), max(maxResponse, 0), max(clients, 1), max(depth, 1))
        guard Layout.check(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth) == nil else { return .max }
        return Layout(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth).size
    }

    /// Makes a new service at `offset` of a region that holds nothing there yet (its first 8 bytes zero). Its magic
    /// number is written last: a process attaching meanwhile waits for it.
    public static func format(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, maxRequest: Int, maxResponse: Int, clients: Int, depth: Int
    ) throws(SharedMemoryError) {
        try format(region, at: offset, maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth, types: nil)
    }

    /// ``format(_:at:maxRequest:maxResponse:clients:depth:)`` for a service whose requests and responses are
    /// `types`' values (their identities recorded in the header), or bytes (nil).
    static func format(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int, maxRequest: Int, maxResponse: Int, clients: Int, depth: Int,
        types: (request: TypeIdentity, response: TypeIdentity)?
    ) throws(SharedMemoryError) {
        if let wanted = Layout.check(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth) {
            throw SharedMemoryError(.invalidArgument, "a request/response service takes \(wanted)", region: region.name)
        }
        let layout = Layout(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth)
        let base = try region.sharedObjectAddress(at: offset, size: layout.size, alignment: 64, what: "a request/response service").address
        guard base.load(as: UInt64.self) == 0 else {
            throw SharedMemoryError(.alreadyExists, "the region already holds something at offset \(offset) (a service, or other data): formatting would overwrite it", region: region.name)
        }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: layout.size)
        RequestResponseHeader.major.store(major, base)
        RequestResponseHeader.minor.store(minor, base)
        RequestResponseHeader.clients.store(UInt32(clients), base)
        RequestResponseHeader.maxRequest.store(UInt64(maxRequest), base)
        RequestResponseHeader.maxResponse.store(UInt64(maxResponse), base)
        RequestResponseHeader.depth.store(UInt32(depth), base)
        if let types {
            RequestResponseHeader.requestType.store(types.request.hash, base)
            RequestResponseHeader.requestSize.store(UInt32(types.request.size), base)
            RequestResponseHeader.requestAlignment.store(UInt32(types.request.alignment), base)
            RequestResponseHeader.responseType.store(types.response.hash, base)
            RequestResponseHeader.responseSize.store(UInt32(types.response.size), base)
            RequestResponseHeader.responseAlignment.store(UInt32(types.response.alignment), base)
        }
        try RobustMutex(address: base + RequestResponseHeader.lock.offset, region: region.name).initialize()
        Handshake.publish(magic, at: base + RequestResponseHeader.magic.offset)  // last; wakes a process attaching meanwhile
    }
}

/// Who sent a request, as the server sees it.
public struct RequestInfo: Sendable, Hashable {
    /// The request's correlation id (its response carries it back).
    public var correlation: UInt64
    /// The sending client's process.
    public var clientPID: Int32
}

/// One process's view of a request/response service, checked against the region; holds the mapping.
struct RequestView: @unchecked Sendable {
    let mapping: RegionMapping
    let base: UnsafeMutableRawPointer
    let layout: RequestResponse.Layout
    typealias R = RequestResponse

    var name: RegionName { mapping.name }

    init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int, timeout: Duration) throws(SharedMemoryError) {
        let base = try region.sharedObjectAddress(at: offset, size: RequestResponseHeader.slots.offset, alignment: 64, what: "a request/response service").address
        let deadline = Deadline(after: timeout).end
        try Handshake.expect(R.magic, at: base + RequestResponseHeader.magic.offset, until: deadline, what: "request/response service", offset: offset, region: region.name)
        let layout = try R.readLayout(base, room: region.size - offset, offset: offset, region: region.name)
        let whole = try region.sharedObjectAddress(at: offset, size: layout.size, alignment: 64, what: "a request/response service of \(layout.size) bytes")
        mapping = whole.mapping
        self.base = whole.address
        self.layout = layout
    }

    func atomic<T: AtomicValue>(_ at: Int, _ type: T.Type) -> UnsafeAtomic<T> where T.AtomicRepresentation.Value == T {
        MessageRing.atomic(base, at, type)
    }

    func slot(_ s: Int) -> Int { RequestResponseHeader.slots.offset + s * layout.slotStride }

    /// The correlation id and length a request or response cell at `cell` states, the length checked against the
    /// `largest` the service carries: past it, the reader's position (`read`, at `position`) moves past the cell and
    /// the cell is `foreign`.
    func cellHeader(_ cell: Int, largest: Int, what: String, read: UnsafeAtomic<UInt64>, position: UInt64) throws(SharedMemoryError) -> (UInt64, Int) {
        let correlation = base.load(fromByteOffset: cell, as: UInt64.self)
        let length = base.load(fromByteOffset: cell + 8, as: UInt64.self)
        guard length <= UInt64(largest) else {
            read.store(position &+ 1, ordering: .releasing)
            throw SharedMemoryError(.foreign, "a \(what) says it has \(length) bytes; the service's largest is \(largest)", region: name)
        }
        return (correlation, Int(length))
    }
    func requestCell(_ s: Int, _ position: UInt64) -> Int { slot(s) + ClientSlot.entries.offset + Int(position % UInt64(layout.depth)) * layout.requestCell }
    func responseCell(_ s: Int, _ position: UInt64) -> Int {
        slot(s) + ClientSlot.entries.offset + layout.depth * layout.requestCell + Int(position % UInt64(layout.depth)) * layout.responseCell
    }

    /// The server's seat (see ``Seat``).
    var serverSeat: Seat { .server(base) }
    /// The process that serves, if any.
    var server: Creator? { serverSeat.occupant }

    /// Client slot `s`'s seat.
    func clientSeat(_ s: Int) -> Seat { .client(base + slot(s)) }

    /// Runs `body` holding the connections' lock (a dead holder leaves nothing to repair: every change under it is
    /// one store, or a reclaim that the next locker redoes).
    func withLock<T>(_ body: () throws(SharedMemoryError) -> T) throws(SharedMemoryError) -> T {
        let lock = RobustMutex(address: base + RequestResponseHeader.lock.offset, region: name)
        if try lock.lock() == .ownerDied { try lock.markConsistent() }
        defer { try? lock.unlock() }
        return try body()
    }

    /// Frees client `s`'s slot if its process is dead (lock held). Whether it did.
    @discardableResult
    func reclaimIfDead(_ s: Int) -> Bool {
        let state = atomic(slot(s) + ClientSlot.state.offset, UInt32.self)
        guard state.load(ordering: .acquiring) != R.free, !clientSeat(s).isHeldByLiveProcess else { return false }
        free(s)
        return true
    }

    /// Empties and frees client `s`'s slot (lock held).
    func free(_ s: Int) {
        let at = slot(s)
        for position in [ClientSlot.requestWrite.offset, ClientSlot.requestRead.offset, ClientSlot.responseWrite.offset, ClientSlot.responseRead.offset] {
            atomic(at + position, UInt64.self).store(0, ordering: .relaxed)
        }
        clientSeat(s).clear()
        atomic(at + ClientSlot.state.offset, UInt32.self).store(R.free, ordering: .releasing)
    }

    /// Sleeps in `waiting` on the low half of the 64-bit position at `word` while it holds `seen`, the sleeping
    /// flag at `flag` raised around the sleep (and a look after raising it, so that no wake is missed).
    func sleep(_ waiting: inout Wait, flag: Int, word: Int, seen: UInt64) -> Wait.Slept {
        let sleeps = atomic(flag, UInt32.self)
        return try! waiting.sleep(on: base + word, raise: { () throws(SharedMemoryError) -> UInt32? in
            sleeps.store(1, ordering: .sequentiallyConsistent)
            if atomic(word, UInt64.self).load(ordering: .sequentiallyConsistent) == seen { return UInt32(truncatingIfNeeded: seen) }
            sleeps.store(0, ordering: .relaxed)
            return nil
        }, lower: { sleeps.store(0, ordering: .relaxed) })
    }

    /// ``sleep(_:flag:word:seen:)``, suspending the task.
    func sleepAsync(_ waiting: inout Wait, flag: Int, word: Int, seen: UInt64, isolation: isolated (any Actor)? = #isolation) async throws -> Wait.Slept {
        let sleeps = atomic(flag, UInt32.self)
        return try await waiting.sleepAsync(on: base + word, raise: { () throws(SharedMemoryError) -> UInt32? in
            sleeps.store(1, ordering: .sequentiallyConsistent)
            if atomic(word, UInt64.self).load(ordering: .sequentiallyConsistent) == seen { return UInt32(truncatingIfNeeded: seen) }
            sleeps.store(0, ordering: .relaxed)
            return nil
        }, lower: { sleeps.store(0, ordering: .relaxed) })
    }
}

/// The server of a request/response service: takes each client's requests in turn and writes each response in place.
/// One per service; holds the server's seat and the region's mapping.
public struct Server: ~Copyable {
    /// What the server holds, in memory of its own: a handle of one word, kept in a class's `let` too with nothing
    /// copied per call (Docs/Design.md, "A handle is one or two words").
    let local: UnsafeMutablePointer<ServerLocal>
    /// The service's view.
    var service: RequestView { _read { yield local.pointee.service } }
    /// The client slot to look at first next time (turns go round).
    private var next: Int {
        get { local.pointee.next }
        nonmutating set { local.pointee.next = newValue }
    }

    typealias R = RequestResponse

    /// Takes the server's seat of the service at `offset`, waiting up to `timeout` for it to be formatted.
    /// ``SharedMemoryError/Code/busy`` if a live process serves; a dead server's seat is taken over, and dead clients'
    /// slots (with their unanswered requests) are reclaimed.
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration = .zero) throws(SharedMemoryError) {
        let service = try RequestView(region, at: offset, timeout: timeout)
        try service.withLock { () throws(SharedMemoryError) in
            let serving = service.atomic(RequestResponseHeader.serverState.offset, UInt32.self).load(ordering: .acquiring) == 1
            try service.serverSeat.claim(region: service.name, holderIsDone: !serving) { "process \($0) already serves this service; a service has one server" }
            service.atomic(RequestResponseHeader.serverState.offset, UInt32.self).store(1, ordering: .releasing)
            // Requests from clients that died meanwhile are not worth answering.
            for s in 0..<service.layout.clients { service.reclaimIfDead(s) }
        }
        local = .allocate(capacity: 1)
        local.initialize(to: ServerLocal(service: service))
    }

    /// A server that goes away without ``finish()`` vacates its seat: another process may then serve, and nothing
    /// ends (clients' requests wait for the next server; this process's death is still `peerDied` to them).
    deinit {
        service.serverSeat.vacate()
        local.deinitialize(count: 1)
        local.deallocate()
    }

    /// The largest response.
    public var maxResponse: Int { service.layout.maxResponse }

    /// Waits for the next request from any client (up to `timeout`, then ``SharedMemoryError/Code/timedOut``; `nil`
    /// waits as long as it takes) and calls `body` with it in place and an `OutputRawSpan` over the response's
    /// place in that client's response queue; what `body` writes is the response, sent when `body` returns (if
    /// `body` throws, the client gets an empty response and the error is rethrown here). Dead clients found meanwhile
    /// are reclaimed. The request's correlation id is in `info`, and goes back with the response.
    public func handle(timeout: Duration? = nil, _ body: (RawSpan, inout OutputRawSpan, RequestInfo) throws -> Void) throws {
        let service = self.service
        let layout = service.layout
        var waiting = Wait(.sleep, timeout: timeout)
        while true {
            let doorbell = service.atomic(RequestResponseHeader.doorbell.offset, UInt32.self).load(ordering: .acquiring)
            for turn in 0..<layout.clients {
                let s = (next + turn) % layout.clients
                let at = service.slot(s)
                guard service.atomic(at + ClientSlot.state.offset, UInt32.self).load(ordering: .acquiring) == R.connected else { continue }
                let read = service.atomic(at + ClientSlot.requestRead.offset, UInt64.self)
                let r = read.load(ordering: .relaxed)
                let w = service.atomic(at + ClientSlot.requestWrite.offset, UInt64.self).load(ordering: .acquiring)
                guard w > r else { continue }
                guard w - r <= UInt64(layout.depth) else {
                    throw SharedMemoryError(.foreign, "client \(s)'s request positions (read \(r), write \(w)) do not add up", region: service.name)
                }
                next = (s + 1) % layout.clients
                let request = service.requestCell(s, r)
                let (correlation, length) = try service.cellHeader(request, largest: layout.maxRequest, what: "request", read: read, position: r)
                // The response's cell: free, since a client never has more than `depth` requests outstanding.
                let responseWrite = service.atomic(at + ClientSlot.responseWrite.offset, UInt64.self)
                let rw = responseWrite.load(ordering: .relaxed)
                let response = service.responseCell(s, rw)
                let info = RequestInfo(correlation: correlation, clientPID: service.clientSeat(s).pidValue)
                let place = UnsafeMutableRawBufferPointer(start: service.base + response + RequestCell.bytes.offset, count: layout.maxResponse)
                var output = OutputRawSpan(buffer: place, initializedCount: 0)
                var failure: (any Error)? = nil
                do {
                    try body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(start: service.base + request + RequestCell.bytes.offset, count: length)), &output, info)
                } catch {
                    failure = error
                }
                // A body that threw still answers: with an empty response, so the client is not left waiting.
                let finalized = output.finalize(for: place)
                let written = failure == nil ? finalized : 0
                service.base.storeBytes(of: correlation, toByteOffset: response, as: UInt64.self)
                service.base.storeBytes(of: UInt64(written), toByteOffset: response + 8, as: UInt64.self)
                read.store(r &+ 1, ordering: .releasing)
                responseWrite.store(rw &+ 1, ordering: .sequentiallyConsistent)
                if service.atomic(at + ClientSlot.clientSleeps.offset, UInt32.self).load(ordering: .sequentiallyConsistent) != 0 {
                    Syscalls.futexWake(service.base + at + ClientSlot.responseWrite.offset)
                }
                if let failure { throw failure }
                return
            }
            // Nothing waiting: reclaim the dead, then sleep on the doorbell.
            try service.withLock { () throws(SharedMemoryError) in
                for s in 0..<layout.clients { service.reclaimIfDead(s) }
            }
            let sleeps = service.atomic(RequestResponseHeader.serverSleeps.offset, UInt32.self)
            let bell = service.atomic(RequestResponseHeader.doorbell.offset, UInt32.self)
            let slept = try waiting.sleep(on: service.base + RequestResponseHeader.doorbell.offset, raise: { () throws(SharedMemoryError) -> UInt32? in
                sleeps.store(1, ordering: .sequentiallyConsistent)
                if bell.load(ordering: .sequentiallyConsistent) == doorbell { return doorbell }
                sleeps.store(0, ordering: .relaxed)
                return nil
            }, lower: { sleeps.store(0, ordering: .relaxed) })
            if slept == .deadlinePassed {
                throw SharedMemoryError(.timedOut, "no request arrived within \(timeout!)", region: service.name)
            }
        }
    }

    /// Stops serving: clients waiting for a response, and later sends, get ``SharedMemoryError/Code/peerDied``
    /// (saying the server finished). Another process may then serve.
    public consuming func finish() {
        service.atomic(RequestResponseHeader.serverState.offset, UInt32.self).store(2, ordering: .releasing)
        for s in 0..<service.layout.clients { Syscalls.futexWake(service.base + service.slot(s) + ClientSlot.responseWrite.offset) }
    }
}

/// What a ``Server`` holds: the service's view and the client slot it looks at first next time.
struct ServerLocal {
    let service: RequestView
    var next = 0
}
