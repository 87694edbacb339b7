import Testing
@testable import SharedMemory

/// An actor that keeps a region from the factory in a stored property and uses it: what `any SharedRegion`
/// cannot do in Swift 6.3 (a borrowed noncopyable existential cannot be opened), and `AnyRegion` can.
actor Counter {
    let region: AnyRegion
    init(_ region: consuming AnyRegion) { self.region = region }

    func increment() throws(SharedMemoryError) -> UInt64 {
        let value = try region.get(UInt64.self, at: 8) &+ 1
        try region.set(value, at: 8)
        return value
    }
}

/// The same in a class.
final class Keeper {
    let region: AnyRegion
    init(_ region: consuming AnyRegion) { self.region = region }
    func greeting() throws(SharedMemoryError) -> [UInt8] { try region.get(count: 5, at: 0) }
}

/// A service that keeps a region it can close, with errors reported, and resize: an optional `var`.
actor Store {
    var region: AnyRegion?
    init(_ region: consuming AnyRegion) { self.region = .some(region) }

    func grow(to size: Int) throws(SharedMemoryError) {
        try region?.resize(to: size)
    }

    func size() -> Int? { region?.size }

    /// Detaches now and says whether that failed; the store has no region afterwards.
    func close() throws(SharedMemoryError) {
        if let held = region.take() { try held.detach() }
    }
}

@Suite("AnyRegion")
struct AnyRegionTests {
    @Test("a region kept in an actor's optional var can be resized there, and detached with its errors reported", arguments: [Backend.posix, .file, .memfd])
    func storedAndClosed(backend: Backend) async throws {
        let name = Names.unique(backend)
        defer { Names.cleanUp(name) }
        let store = Store(try SharedMemory.create(name, size: 4096))
        try await store.grow(to: 8192)
        #expect(await store.size() == 8192)
        if backend.capabilities.contains(.named) { #expect(try SharedMemory.info(name).attachCount == 1) }
        try await store.close()
        #expect(await store.size() == nil)
        if backend.capabilities.contains(.named) { #expect(try SharedMemory.info(name).attachCount == 0) }
        try await store.close()  // closing again does nothing
    }

    @Test("a region from the factory lives in an actor or a class and is used there; dropping it detaches",
          arguments: Backend.allCases)
    func keptAndUsed(backend: Backend) async throws {
        let name = Names.unique(backend)
        defer { Names.cleanUp(name) }
        do {
            let counter = Counter(try SharedMemory.create(name, size: 4096))
            let highest = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for _ in 0..<50 { group.addTask { try await counter.increment() } }
                return try await group.reduce(0, max)
            }
            #expect(highest == 50)  // the actor ran them one at a time, on the shared bytes
            guard backend.capabilities.contains(.named) else { return }
            let keeper = Keeper(try SharedMemory.open(name))
            try keeper.region.set(bytes: Array("hello".utf8), at: 0)
            #expect(try keeper.greeting() == Array("hello".utf8))
            #expect(try keeper.region.get(UInt64.self, at: 8) == 50)
            #expect(try SharedMemory.info(name).attachCount == 2)
        }
        // Both handles are gone: both attachments detached, none twice.
        if backend.capabilities.contains(.named) {
            #expect(try SharedMemory.info(name).attachCount == 0)
        }
    }

    @Test("erased() hands the attachment over: nothing detached, nothing mapped again", arguments: [Backend.systemV, .posix])
    func erasedKeepsTheAttachment(backend: Backend) throws {
        try Names.with(backend) { name in
            do {
                let typed: AnyRegion
                switch backend {
                case .systemV:
                    let segment = try SystemVRegion.create(name, size: 4096)
                    try segment.set(UInt32(0xfeed), at: 0)
                    typed = segment.erased()
                default:
                    let object = try POSIXRegion.create(name, size: 4096)
                    try object.set(UInt32(0xfeed), at: 0)
                    typed = object.erased()
                }
                #expect(try typed.get(UInt32.self, at: 0) == 0xfeed)
                #expect(try typed.info().attachCount == 1)
                #expect(typed.backend == backend)
            }
            #expect(try SharedMemory.info(name).attachCount == 0)
        }
    }

    @Test("seals through AnyRegion: a memfd's can be added and read; other backends say unsupported")
    func seals() throws {
        var memfd = try SharedMemory.create(.memfd("anyregion-seals"), size: 8192)
        #expect(try memfd.seals.isDisjoint(with: [.shrink, .grow]))
        try memfd.addSeals([.shrink, .grow])
        #expect(try memfd.seals.isSuperset(of: [.shrink, .grow]))
        expectError(.sealed) { try memfd.resize(to: 4096) }
        try Names.with(.posix) { name in
            let posix = try SharedMemory.create(name, size: 4096)
            #expect(try posix.seals == [.seal])  // tmpfs objects from shm_open can never be sealed
            let error = expectError(.unsupported) { try posix.addSeals([.shrink]) }
            #expect(error?.reason.contains("only memfd") == true)
        }
        for backend in [Backend.systemV, .anonymous] {
            try Names.with(backend) { name in
                let region = try SharedMemory.create(name, size: 4096)
                expectError(.unsupported) { try region.seals }
                expectError(.unsupported) { try region.addSeals([.shrink]) }
            }
        }
    }

    @Test("systemVID through AnyRegion: a segment's id, as ipcs shows it; other backends say unsupported")
    func systemVID() throws {
        try Names.with(.systemV) { name in
            let region = try SharedMemory.create(name, size: 4096)
            let id = try region.systemVID
            #expect(try region.info().systemVID == id)
            #expect(try shell("ipcs -m -i \(id)").contains("shmid=\(id)"))
            if case .systemV(let segment) = consume region { #expect(segment.id == id) } else { Issue.record("not a segment") }
        }
        for backend in [Backend.posix, .file, .anonymous, .memfd] {
            try Names.with(backend) { name in
                let region = try SharedMemory.create(name, size: 4096)
                let error = expectError(.unsupported) { try region.systemVID }
                #expect(error?.reason.contains("only sysv") == true)
            }
        }
    }
}
