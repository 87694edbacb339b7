// Typed request/response: a service whose requests are one `BitwiseCopyable` type's values and whose responses are
// another's, both recorded in its header (the hash of each type's name, its size and alignment; Swift only, as the
// service is) and checked on attach. A thin layer over `Server` and `Client`, as the typed publish/subscribe is over
// `Publisher` and `Subscriber`.

extension RequestResponse {
    /// Bytes a service of `Request` and `Response` values takes (``size(maxRequest:maxResponse:clients:depth:)`` with
    /// their sizes).
    public static func size<Request: BitwiseCopyable, Response: BitwiseCopyable>(
        requestType: Request.Type, responseType: Response.Type, clients: Int, depth: Int
    ) -> Int {
        size(maxRequest: MemoryLayout<Request>.size, maxResponse: MemoryLayout<Response>.size, clients: clients, depth: depth)
    }

    /// Makes a new service at `offset` whose requests are `Request` values and whose responses are `Response` values,
    /// as ``format(_:at:maxRequest:maxResponse:clients:depth:)`` does, with both types' identities in its header:
    /// ``TypedServer`` and ``TypedClient`` of other types are then ``SharedMemoryError/Code/typeMismatch``. A type
    /// of 0 bytes, or aligned to more than 64, is `invalidArgument`.
    public static func format<Request: BitwiseCopyable, Response: BitwiseCopyable>(
        _ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, requestType: Request.Type, responseType: Response.Type,
        clients: Int, depth: Int
    ) throws(SharedMemoryError) {
        try PublishSubscribe.checkSampleType(Request.self, region.name)
        try PublishSubscribe.checkSampleType(Response.self, region.name)
        try format(region, at: offset, maxRequest: MemoryLayout<Request>.size, maxResponse: MemoryLayout<Response>.size, clients: clients,
                   depth: depth, types: (TypeIdentity.of(Request.self), TypeIdentity.of(Response.self)))
    }

    /// Waits up to `timeout` for the service at `offset`, then `typeMismatch` unless its requests are `Request` and
    /// its responses `Response` values.
    @usableFromInline
    static func expectTypes<Request: BitwiseCopyable, Response: BitwiseCopyable>(
        _: Request.Type, _: Response.Type, _ region: borrowing some SharedRegion & ~Copyable, at offset: Int, timeout: Duration
    ) throws(SharedMemoryError) {
        let service = try RequestView(region, at: offset, timeout: timeout)
        try expectType(.of(Request.self), "requests", service.base, RequestResponseHeader.requestType, .requestSize, .requestAlignment, service.name)
        try expectType(.of(Response.self), "responses", service.base, RequestResponseHeader.responseType, .responseSize, .responseAlignment, service.name)
        // Type fields that disagree with the cells' sizes would have a request or response written past its cell.
        guard service.layout.maxRequest == MemoryLayout<Request>.size, service.layout.maxResponse == MemoryLayout<Response>.size else {
            throw SharedMemoryError(.foreign, "the service's header gives its requests and responses \(MemoryLayout<Request>.size) and \(MemoryLayout<Response>.size) bytes by type, and \(service.layout.maxRequest) and \(service.layout.maxResponse) by size", region: service.name)
        }
    }

    /// What the header at `base` says its requests and responses are, for `shm inspect`: `bytes`, or each type's size
    /// and alignment (the header keeps their names' hashes, not the names).
    static func typesText(_ base: UnsafeRawPointer) -> String {
        guard RequestResponseHeader.requestType.load(base, UInt64.self) != 0 else { return "bytes" }
        func type(_ size: RequestResponseHeader, _ alignment: RequestResponseHeader) -> String {
            "size \(size.load(base, UInt32.self)), alignment \(alignment.load(base, UInt32.self))"
        }
        return "typed: requests \(type(.requestSize, .requestAlignment)); responses \(type(.responseSize, .responseAlignment))"
    }

    /// `typeMismatch` unless the header at `base` records `wanted` in the three fields given.
    static func expectType(
        _ wanted: TypeIdentity, _ what: String, _ base: UnsafeRawPointer, _ hash: RequestResponseHeader, _ size: RequestResponseHeader,
        _ alignment: RequestResponseHeader, _ name: RegionName
    ) throws(SharedMemoryError) {
        let found = (hash.load(base, UInt64.self), Int(size.load(base, UInt32.self)), Int(alignment.load(base, UInt32.self)))
        guard found != (wanted.hash, wanted.size, wanted.alignment) else { return }
        let other = found.0 == 0 ? "bytes (it was formatted with no types)" : "another type (size \(found.1), alignment \(found.2))"
        throw SharedMemoryError(.typeMismatch, "the service's \(what) are \(other), not \(wanted.nameText) (size \(wanted.size), alignment \(wanted.alignment))", region: name)
    }
}

/// The server of a typed request/response service
/// (``RequestResponse/format(_:at:requestType:responseType:clients:depth:)``): a ``Server`` whose requests are
/// `Request` values and whose responses are `Response` values.
///
/// ```swift
/// struct Lookup: BitwiseCopyable { var key: UInt64 }
/// struct Price: BitwiseCopyable { var value: Double }
/// let server = try TypedServer<Lookup, Price>.create(RegionName("posix:/prices"), clients: 8)
/// try server.handle(timeout: .seconds(60)) { lookup, _ in Price(value: Double(lookup.key) / 100) }
/// ```
public struct TypedServer<Request: BitwiseCopyable, Response: BitwiseCopyable>: ~Copyable {
    @usableFromInline let server: Server

    /// Takes the server's seat of the typed service at `offset`, as ``Server/init(_:at:timeout:)`` does; a service of
    /// other types (or of bytes) is ``SharedMemoryError/Code/typeMismatch``.
    @inlinable
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration = .zero) throws(SharedMemoryError) {
        try RequestResponse.expectTypes(Request.self, Response.self, region, at: offset, timeout: timeout)
        server = try Server(region, at: offset)
    }

    /// Waits for the next request from any client, as ``Server/handle(timeout:_:)`` does, and answers it with what
    /// `body` returns. A request whose length is not `Request`'s (a byte client's) is answered with no response and
    /// reported here as ``SharedMemoryError/Code/foreign``; a `body` that throws answers with no response too (the
    /// client's ``TypedClient/receive(timeout:)`` then says the server did not answer) and the error is rethrown.
    public func handle(timeout: Duration? = nil, _ body: (Request, RequestInfo) throws -> Response) throws {
        let size = MemoryLayout<Request>.size, name = server.service.name
        try server.handle(timeout: timeout) { request, response, info in
            guard request.byteCount == size else {
                throw SharedMemoryError(.foreign, "a request of \(request.byteCount) bytes, not a \(Request.self): its client wrote bytes", region: name)
            }
            let answer = try body(request.withUnsafeBytes { $0.loadUnaligned(as: Request.self) }, info)
            response.append(answer, as: Response.self)
        }
    }

    /// Stops serving (``Server/finish()``).
    public consuming func finish() { server.finish() }
}

/// A client of a typed request/response service: a ``Client`` that sends `Request` values and reads `Response`
/// values. It holds a slot and gives it back as a `Client` does.
public struct TypedClient<Request: BitwiseCopyable, Response: BitwiseCopyable>: ~Copyable {
    @usableFromInline let client: Client

    /// Connects to the typed service at `offset`, as ``Client/init(_:at:timeout:)`` does; a service of other types
    /// (or of bytes) is ``SharedMemoryError/Code/typeMismatch``.
    @inlinable
    public init(_ region: borrowing some SharedRegion & ~Copyable, at offset: Int = 0, timeout: Duration = .zero) throws(SharedMemoryError) {
        try RequestResponse.expectTypes(Request.self, Response.self, region, at: offset, timeout: timeout)
        client = try Client(region, at: offset)
    }

    /// Sends a copy of `request` and returns its correlation id (``Client/send(count:_:)``: `busy` with `depth`
    /// requests outstanding, `peerDied` if the server is gone).
    @inlinable @discardableResult
    public func send(_ request: Request) throws(SharedMemoryError) -> UInt64 {
        try withUnsafeBytes(of: request) { (bytes) throws(SharedMemoryError) in try client.send(bytes) }
    }

    /// Waits for the next response, as ``Client/receive(timeout:_:)`` does, and returns a copy of it with the
    /// correlation id of the request it answers. A response with no bytes means the server's handler threw for that
    /// request: ``SharedMemoryError/Code/foreign``, as any response of another length than `Response`'s.
    public func receive(timeout: Duration? = nil) throws -> (response: Response, correlation: UInt64) {
        let name = client.service.name
        return try client.receive(timeout: timeout) { bytes, correlation in
            (try Self.response(from: bytes, correlation, name), correlation)
        }
    }

    /// Sends `request` and waits for its response (``Client/request(count:timeout:_:_:)``).
    public func request(_ request: Request, timeout: Duration? = nil) throws -> Response {
        let name = client.service.name
        return try client.request(count: MemoryLayout<Request>.size, timeout: timeout, { output in output.append(request, as: Request.self) }) { response in
            try Self.response(from: response, nil, name)
        }
    }

    /// The response in `bytes`, or `foreign` if they are not one.
    static func response(from bytes: RawSpan, _ correlation: UInt64?, _ name: RegionName) throws(SharedMemoryError) -> Response {
        guard bytes.byteCount == MemoryLayout<Response>.size else {
            let which = correlation.map { "request \($0)" } ?? "the request"
            throw SharedMemoryError(.foreign, bytes.byteCount == 0
                ? "the server answered \(which) with no response: its handler threw"
                : "a response of \(bytes.byteCount) bytes, not a \(Response.self): its server wrote bytes", region: name)
        }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: Response.self) }
    }

    /// Leaves the service (``Client/close()``).
    public consuming func close() { client.close() }
}

extension TypedServer {
    /// Creates the region `name` sized for a typed service (see
    /// ``RequestResponse/size(requestType:responseType:clients:depth:)``), formats it, and takes its server's seat.
    /// `alreadyExists` if the name exists.
    public static func create(_ name: RegionName, clients: Int, depth: Int = 4, options: CreateOptions = .init()) throws(SharedMemoryError) -> TypedServer {
        try typedServerByName(name, clients: clients, depth: depth, options: options, openTimeout: nil)
    }

    /// Takes the server's seat of the typed service `name`, making it first if there is none, as
    /// ``Server/openOrCreate(_:maxRequest:maxResponse:clients:depth:timeout:options:)`` does: a service of other
    /// types is ``SharedMemoryError/Code/typeMismatch``, another configuration names each difference.
    public static func openOrCreate(
        _ name: RegionName, clients: Int, depth: Int = 4, timeout: Duration = .seconds(5), options: CreateOptions = .init()
    ) throws(SharedMemoryError) -> TypedServer {
        try typedServerByName(name, clients: clients, depth: depth, options: options, openTimeout: timeout)
    }

    /// `create` (nil `timeout`) or `openOrCreate`.
    private static func typedServerByName(
        _ name: RegionName, clients: Int, depth: Int, options: CreateOptions, openTimeout timeout: Duration?
    ) throws(SharedMemoryError) -> TypedServer {
        try PublishSubscribe.checkSampleType(Request.self, name)
        try PublishSubscribe.checkSampleType(Response.self, name)
        try refuse(RequestResponse.Layout.check(maxRequest: MemoryLayout<Request>.size, maxResponse: MemoryLayout<Response>.size, clients: clients, depth: depth),
                   "a request/response service", name)
        let size = RequestResponse.size(requestType: Request.self, responseType: Response.self, clients: clients, depth: depth)
        let make = { (region: borrowing AnyRegion) throws(SharedMemoryError) -> TypedServer in
            try RequestResponse.format(region, requestType: Request.self, responseType: Response.self, clients: clients, depth: depth)
            return try TypedServer(region)
        }
        guard let timeout else { return try creatingStructure(name, size: size, options: options, make) }
        return try openingOrCreatingStructure(name, size: size, options: options, timeout: timeout, create: make) { region, left throws(SharedMemoryError) in
            try RequestResponse.expectTypes(Request.self, Response.self, region, at: 0, timeout: left)
            let found = try RequestView(region, at: 0, timeout: .zero).layout
            try expectConfiguration("request/response service", name, found: [("clients", found.clients), ("depth", found.depth)], asked: [clients, depth])
            return try TypedServer(region)
        }
    }
}

extension TypedClient {
    /// Opens the region `name` and connects to the typed service at its start, waiting up to `timeout` for the name to
    /// appear and the service to be formatted (``Client/open(_:timeout:options:)``).
    public static func open(_ name: RegionName, timeout: Duration = .zero, options: OpenOptions = .init()) throws(SharedMemoryError) -> TypedClient {
        try openingStructure(name, options: options, header: RequestResponseHeader.slots.offset, timeout: timeout) { region, left throws(SharedMemoryError) in
            try TypedClient(region, timeout: left)
        }
    }
}
