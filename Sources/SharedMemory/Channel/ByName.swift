import Glibc

// One call to a working service, by name, as iceoryx2's service builder gives: `create` makes a region of exactly the
// size the structure takes (`SharedMemory.create`, exclusive), formats the structure at its start and takes the
// creating side; `open` attaches to the region (`SharedMemory.open`), waits up to `timeout` for the name to appear
// and the structure to be formatted, and takes the other side. The handle holds the region's mapping, so nothing
// else need be kept. The three-step form (create or open a region, `format` at an offset, attach) stays for a
// structure inside a larger region.
//
// The region outlives the handles, as any named region does: remove it with `SharedMemory.remove(name)` when the
// service is over, or create it with `CreateOptions(lifetime: .process)` so that `shm gc` may collect it after a
// crash.

/// Creates `name` with `size` bytes and runs `make` on it (format, attach); if `make` fails, the region is removed
/// again, so that a call that fails leaves nothing behind.
func creatingStructure<T: ~Copyable>(
    _ name: RegionName, size: Int, options: CreateOptions, _ make: (borrowing AnyRegion) throws(SharedMemoryError) -> T
) throws(SharedMemoryError) -> T {
    let region = try SharedMemory.create(name, size: size, options: options)
    do {
        return try make(region)
    } catch {
        try? region.remove()
        throw error
    }
}

/// Opens `name` for a structure whose header takes `header` bytes, waiting until `deadline` for the name to appear
/// and be sized. There is no word to sleep on before a region exists, so the name is looked for every millisecond;
/// once it exists, the structure's own handshake waits asleep (with ``Deadline/left(of:)``).
/// With `lookAgain` false, a name that is not there is `notFound` at once (but a region not sized yet is waited for).
func openForStructure(_ name: RegionName, options: OpenOptions, header: Int, until deadline: Deadline, lookAgain: Bool = true) throws(SharedMemoryError) -> AnyRegion {
    while true {
        do {
            let region = try SharedMemory.open(name, options: options)
            // A creator sizes its region right after making it: too small for the header is that moment.
            if region.size >= header || deadline.hasPassed { return region }
        } catch where error.code == .notFound && lookAgain && !deadline.hasPassed {
        } catch where error.code == .notReady && !deadline.hasPassed {}  // a System V or file region not sized yet
        usleep(1000)
    }
}

/// Attach or make, by name (`openOrCreate` semantics): creates `name` exclusively and runs `create` on it (format,
/// take the creating side), or, if it exists, opens it as ``SharedMemory/openOrCreate(_:size:options:)`` would (this
/// user's, a mode no wider than `options`', at least `size` bytes) and runs `attach` with the time left of `timeout`
/// (wait for the format, check its configuration, take the side). Creation is exclusive, so exactly one process
/// formats: the kernel decides who, and no word in the structure has to. A name removed in between is created again.
func openingOrCreatingStructure<T: ~Copyable>(
    _ name: RegionName, size: Int, options: CreateOptions, timeout: Duration,
    create: (borrowing AnyRegion) throws(SharedMemoryError) -> T,
    attach: (borrowing AnyRegion, Duration) throws(SharedMemoryError) -> T
) throws(SharedMemoryError) -> T {
    let deadline = Deadline(after: timeout)
    var vanished = 0
    while true {
        do {
            return try creatingStructure(name, size: size, options: options, create)
        } catch where error.code == .alreadyExists {}
        do throws(SharedMemoryError) {
            // Any size: a structure of another configuration is named by its own header, which `attach` reads.
            let region = try openForStructure(name, options: OpenOptions(existing: options, size: 0), header: min(size, 64), until: deadline, lookAgain: false)
            return try attach(region, deadline.left(of: timeout))
        } catch where (error.code == .notFound || error.code == .removed) && vanished < 100 {
            vanished += 1  // another process removed it between the two calls: create it again
        }
    }
}

/// Open: waits up to `timeout` for `name` to appear and be sized for a header of `header` bytes, then runs `attach`
/// with the time left (its own handshake waits for the format with it).
func openingStructure<T: ~Copyable>(
    _ name: RegionName, options: OpenOptions, header: Int, timeout: Duration,
    _ attach: (borrowing AnyRegion, Duration) throws(SharedMemoryError) -> T
) throws(SharedMemoryError) -> T {
    let deadline = Deadline(after: timeout)
    let region = try openForStructure(name, options: options, header: header, until: deadline)
    return try attach(region, deadline.left(of: timeout))
}

/// A ring side by name, made by `side` from the region: `create` (nil `timeout`) or `openOrCreate`.
func ringByName<Side: ~Copyable>(
    _ name: RegionName, capacity: Int, options: CreateOptions, openTimeout timeout: Duration?,
    _ side: (borrowing AnyRegion) throws(SharedMemoryError) -> Side
) throws(SharedMemoryError) -> Side {
    let size = MessageRing.size(capacity: capacity)
    let make = { (region: borrowing AnyRegion) throws(SharedMemoryError) -> Side in
        try MessageRing.format(region, capacity: capacity)
        return try side(region)
    }
    guard let timeout else { return try creatingStructure(name, size: size, options: options, make) }
    return try openingOrCreatingStructure(name, size: size, options: options, timeout: timeout, create: make) { region, left throws(SharedMemoryError) in
        try MessageRing.waitUntilFormatted(region, timeout: left)
        try expectConfiguration("message ring", name, found: [("capacity", try MessageRing.validate(region, at: 0).2)], asked: [capacity])
        return try side(region)
    }
}

/// `typeMismatch` naming `name` and each difference if the configuration `found` in a structure is not the one
/// `asked` for (both as (name of the setting, value) pairs in the same order).
func expectConfiguration(_ what: String, _ name: RegionName, found: [(String, Int)], asked: [Int]) throws(SharedMemoryError) {
    let differences = zip(found, asked).filter { $0.0.1 != $0.1 }.map { "\($0.0.0) \($0.0.1), not \($0.1)" }
    guard differences.isEmpty else {
        throw SharedMemoryError(.typeMismatch, "the \(what) there has another configuration than the one asked for: \(differences.joined(separator: ", "))", region: name)
    }
}

/// `invalidArgument` naming `name` if `problem` says the configuration is not one the structure takes.
func refuse(_ problem: String?, _ what: String, _ name: RegionName) throws(SharedMemoryError) {
    if let problem { throw SharedMemoryError(.invalidArgument, "\(what) takes \(problem)", region: name) }
}

extension RingSender {
    /// Creates the region `name` holding a ring of `capacity` bytes of data (a power of two, at least 4096), formats
    /// it, and attaches as its sender. `alreadyExists` if the name exists.
    ///
    /// ```swift
    /// let sender = try RingSender.create(RegionName("posix:/orders"), capacity: 1 << 20)
    /// ```
    public static func create(
        _ name: RegionName, capacity: Int, options: CreateOptions = .init(), strategy: WaitStrategy = .default
    ) throws(SharedMemoryError) -> RingSender {
        try ringByName(name, capacity: capacity, options: options, openTimeout: nil) { region throws(SharedMemoryError) in try RingSender(region, strategy: strategy) }
    }

    /// Opens the region `name` and attaches as the sender of the ring at its start, waiting up to `timeout` for the
    /// name to appear and the ring to be formatted (then `notFound` or `timedOut`).
    public static func open(
        _ name: RegionName, timeout: Duration = .zero, options: OpenOptions = .init(), strategy: WaitStrategy = .default
    ) throws(SharedMemoryError) -> RingSender {
        try openingStructure(name, options: options, header: MessageRing.headerSize, timeout: timeout) { region, left throws(SharedMemoryError) in
            try MessageRing.waitUntilFormatted(region, timeout: left)  // (a side's own timeout: zero finds nothing there foreign)
            return try RingSender(region, strategy: strategy)
        }
    }

    /// Attaches as the sender of the ring in the region `name`, making the region and the ring first if there is
    /// none (`openOrCreate` semantics: exactly one of the processes that call this at once creates and formats it;
    /// the others wait up to `timeout` for its format). A ring there of another capacity is
    /// ``SharedMemoryError/Code/typeMismatch`` naming both; a region of another user or a wider mode is `foreign`, as
    /// ``SharedMemory/openOrCreate(_:size:options:)`` says.
    ///
    /// ```swift
    /// let sender = try RingSender.openOrCreate(RegionName("posix:/orders"), capacity: 1 << 20)
    /// ```
    public static func openOrCreate(
        _ name: RegionName, capacity: Int, timeout: Duration = .seconds(5), options: CreateOptions = .init(), strategy: WaitStrategy = .default
    ) throws(SharedMemoryError) -> RingSender {
        try ringByName(name, capacity: capacity, options: options, openTimeout: timeout) { region throws(SharedMemoryError) in try RingSender(region, strategy: strategy) }
    }
}

extension RingReceiver {
    /// Creates the region `name` holding a ring of `capacity` bytes of data, formats it, and attaches as its
    /// receiver. `alreadyExists` if the name exists.
    public static func create(
        _ name: RegionName, capacity: Int, options: CreateOptions = .init(), strategy: WaitStrategy = .default
    ) throws(SharedMemoryError) -> RingReceiver {
        try ringByName(name, capacity: capacity, options: options, openTimeout: nil) { region throws(SharedMemoryError) in try RingReceiver(region, strategy: strategy) }
    }

    /// Opens the region `name` and attaches as the receiver of the ring at its start, waiting up to `timeout` for the
    /// name to appear and the ring to be formatted.
    ///
    /// ```swift
    /// let receiver = try RingReceiver.open(RegionName("posix:/orders"), timeout: .seconds(5))
    /// ```
    public static func open(
        _ name: RegionName, timeout: Duration = .zero, options: OpenOptions = .init(), strategy: WaitStrategy = .default
    ) throws(SharedMemoryError) -> RingReceiver {
        try openingStructure(name, options: options, header: MessageRing.headerSize, timeout: timeout) { region, left throws(SharedMemoryError) in
            try MessageRing.waitUntilFormatted(region, timeout: left)  // (a side's own timeout: zero finds nothing there foreign)
            return try RingReceiver(region, strategy: strategy)
        }
    }

    /// Attaches as the receiver of the ring in the region `name`, making the region and the ring first if there is
    /// none (`openOrCreate` semantics: exactly one of the processes that call this at once creates and formats it;
    /// the others wait up to `timeout` for its format). A ring there of another capacity is
    /// ``SharedMemoryError/Code/typeMismatch`` naming both; a region of another user or a wider mode is `foreign`, as
    /// ``SharedMemory/openOrCreate(_:size:options:)`` says.
    ///
    /// ```swift
    /// let receiver = try RingReceiver.openOrCreate(RegionName("posix:/orders"), capacity: 1 << 20)
    /// ```
    public static func openOrCreate(
        _ name: RegionName, capacity: Int, timeout: Duration = .seconds(5), options: CreateOptions = .init(), strategy: WaitStrategy = .default
    ) throws(SharedMemoryError) -> RingReceiver {
        try ringByName(name, capacity: capacity, options: options, openTimeout: timeout) { region throws(SharedMemoryError) in try RingReceiver(region, strategy: strategy) }
    }
}

extension Publisher {
    /// Creates the region `name` sized for a publish/subscribe service (see
    /// ``PublishSubscribe/size(maxPayload:subscribers:queueDepth:history:)``), formats the service, and takes its
    /// publisher's seat. `alreadyExists` if the name exists.
    ///
    /// ```swift
    /// var publisher = try Publisher.create(RegionName("posix:/quotes"), maxPayload: 4096, subscribers: 8)
    /// ```
    public static func create(
        _ name: RegionName, maxPayload: Int, subscribers: Int, queueDepth: Int = 8, history: Int = 0,
        options: CreateOptions = .init(), blockTimeout: Duration = .seconds(1)
    ) throws(SharedMemoryError) -> Publisher {
        try refuse(PublishSubscribe.Layout.check(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history),
                   "a publish/subscribe service", name)
        let size = PublishSubscribe.size(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history)
        return try creatingStructure(name, size: size, options: options) { region throws(SharedMemoryError) in
            try PublishSubscribe.format(region, maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history)
            return try Publisher(region, blockTimeout: blockTimeout)
        }
    }
    /// Takes the publisher's seat of the service in the region `name`, making the region and the service first if
    /// there is none (`openOrCreate` semantics: one process creates and formats, the others wait up to `timeout` for
    /// the format): the way for a publisher that restarts, or for programs that start in any order. A service there
    /// with another configuration is ``SharedMemoryError/Code/typeMismatch`` naming each difference; a live publisher
    /// there is `busy`.
    ///
    /// ```swift
    /// var publisher = try Publisher.openOrCreate(RegionName("posix:/quotes"), maxPayload: 4096, subscribers: 8)
    /// ```
    public static func openOrCreate(
        _ name: RegionName, maxPayload: Int, subscribers: Int, queueDepth: Int = 8, history: Int = 0,
        timeout: Duration = .seconds(5), options: CreateOptions = .init(), blockTimeout: Duration = .seconds(1)
    ) throws(SharedMemoryError) -> Publisher {
        try refuse(PublishSubscribe.Layout.check(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history),
                   "a publish/subscribe service", name)
        let size = PublishSubscribe.size(maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history)
        return try openingOrCreatingStructure(name, size: size, options: options, timeout: timeout) { region throws(SharedMemoryError) in
            try PublishSubscribe.format(region, maxPayload: maxPayload, subscribers: subscribers, queueDepth: queueDepth, history: history)
            return try Publisher(region, blockTimeout: blockTimeout)
        } attach: { region, left throws(SharedMemoryError) in
            let found = try ServiceView(region, at: 0, timeout: left).layout
            try expectConfiguration("publish/subscribe service", name, found: [
                ("maxPayload", found.maxPayload), ("subscribers", found.subscribers), ("queueDepth", found.queueDepth), ("history", found.history),
            ], asked: [maxPayload, subscribers, queueDepth, history])
            return try Publisher(region, blockTimeout: blockTimeout)
        }
    }
}

extension Subscriber {
    /// Opens the region `name` and connects to the service at its start, as
    /// ``init(_:at:queueDepth:overflow:history:strategy:timeout:)`` does, waiting up to `timeout` for the name to
    /// appear and the service to be formatted.
    ///
    /// ```swift
    /// var subscriber = try Subscriber.open(RegionName("posix:/quotes"), timeout: .seconds(5))
    /// ```
    public static func open(
        _ name: RegionName, queueDepth: Int? = nil, overflow: Overflow = .overwriteOldest, history: Int = 0,
        strategy: WaitStrategy = .default, timeout: Duration = .zero, options: OpenOptions = .init()
    ) throws(SharedMemoryError) -> Subscriber {
        try openingStructure(name, options: options, header: ServiceHeader.historyEntries.offset, timeout: timeout) { region, left throws(SharedMemoryError) in
            try Subscriber(region, queueDepth: queueDepth, overflow: overflow, history: history, strategy: strategy, timeout: left)
        }
    }
}

extension Server {
    /// Creates the region `name` sized for a request/response service (see
    /// ``RequestResponse/size(maxRequest:maxResponse:clients:depth:)``), formats the service, and takes its server's
    /// seat. `alreadyExists` if the name exists.
    public static func create(
        _ name: RegionName, maxRequest: Int, maxResponse: Int, clients: Int, depth: Int = 4, options: CreateOptions = .init()
    ) throws(SharedMemoryError) -> Server {
        try refuse(RequestResponse.Layout.check(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth),
                   "a request/response service", name)
        let size = RequestResponse.size(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth)
        return try creatingStructure(name, size: size, options: options) { region throws(SharedMemoryError) in
            try RequestResponse.format(region, maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth)
            return try Server(region)
        }
    }
    /// Takes the server's seat of the service in the region `name`, making the region and the service first if there
    /// is none (`openOrCreate` semantics, as ``Publisher/openOrCreate(_:maxPayload:subscribers:queueDepth:history:timeout:options:blockTimeout:)``):
    /// a server that restarts finds its clients' slots where they were. Another configuration is
    /// ``SharedMemoryError/Code/typeMismatch`` naming each difference; a live server there is `busy`.
    public static func openOrCreate(
        _ name: RegionName, maxRequest: Int, maxResponse: Int, clients: Int, depth: Int = 4,
        timeout: Duration = .seconds(5), options: CreateOptions = .init()
    ) throws(SharedMemoryError) -> Server {
        try refuse(RequestResponse.Layout.check(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth),
                   "a request/response service", name)
        let size = RequestResponse.size(maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth)
        return try openingOrCreatingStructure(name, size: size, options: options, timeout: timeout) { region throws(SharedMemoryError) in
            try RequestResponse.format(region, maxRequest: maxRequest, maxResponse: maxResponse, clients: clients, depth: depth)
            return try Server(region)
        } attach: { region, left throws(SharedMemoryError) in
            let found = try RequestView(region, at: 0, timeout: left).layout
            try expectConfiguration("request/response service", name, found: [
                ("maxRequest", found.maxRequest), ("maxResponse", found.maxResponse), ("clients", found.clients), ("depth", found.depth),
            ], asked: [maxRequest, maxResponse, clients, depth])
            return try Server(region)
        }
    }
}

extension Client {
    /// Opens the region `name` and connects to the service at its start, waiting up to `timeout` for the name to
    /// appear and the service to be formatted.
    public static func open(_ name: RegionName, timeout: Duration = .zero, options: OpenOptions = .init()) throws(SharedMemoryError) -> Client {
        try openingStructure(name, options: options, header: RequestResponseHeader.slots.offset, timeout: timeout) { region, left throws(SharedMemoryError) in
            try Client(region, timeout: left)
        }
    }
}

extension SharedHeap {
    /// Creates the region `name` of `size` bytes and formats a heap in all of it. `alreadyExists` if the name exists.
    public static func create(_ name: RegionName, size: Int, options: CreateOptions = .init()) throws(SharedMemoryError) -> SharedHeap {
        let region = try SharedMemory.create(name, size: size, options: options)
        let copy = try? SharedMemory.open(name)  // the heap owns its region: a second attachment to remove it by
        do {
            return try SharedHeap(formatting: region)
        } catch {
            try? copy?.remove()
            throw error
        }
    }

    /// Opens the region `name` and attaches to the heap at its start, waiting up to `timeout` for the name to appear
    /// and the heap to be formatted.
    public static func open(_ name: RegionName, timeout: Duration = .zero, options: OpenOptions = .init()) throws(SharedMemoryError) -> SharedHeap {
        let deadline = Deadline(after: timeout)
        let region = try openForStructure(name, options: options, header: HeapHeader.buckets.offset, until: deadline)
        return try SharedHeap(attaching: region, timeout: deadline.left(of: timeout))
    }
    /// Attaches to the heap in the region `name`, or makes the region (`size` bytes) and formats a heap in it if
    /// there is none: ``SharedMemory/openOrCreate(_:size:options:)`` and then
    /// ``init(formattingOrAttaching:at:timeout:)``, for processes that start in any order.
    public static func openOrCreate(_ name: RegionName, size: Int, timeout: Duration = .seconds(5), options: CreateOptions = .init()) throws(SharedMemoryError) -> SharedHeap {
        try SharedHeap(formattingOrAttaching: try SharedMemory.openOrCreate(name, size: size, options: options), timeout: timeout)
    }
}
