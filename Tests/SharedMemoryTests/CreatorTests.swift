import Foundation
import Testing
@testable import SharedMemory

/// Who created a region, whether it still runs, and which regions are orphans.
@Suite("Creators and orphans")
struct CreatorTests {
    @Test("the creator is known, and so is whether it still runs", arguments: [Backend.sysv, .posix, .file])
    func creator(backend: Backend) throws {
        try Names.with(backend) { name in
            let mine = try SharedMemory.create(name, size: 4096)
            let info = try mine.info()
            #expect(info.creatorPID == getpid())
            #expect(info.creatorIsAlive == true)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
        }
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096"]) == "ok 4096")
            let info = try SharedMemory.info(name)
            #expect(info.creatorPID != nil && info.creatorPID != getpid())
            #expect(info.creatorIsAlive == false)
        }
    }

    @Test("an orphan is unattached with a dead creator; removeOrphan checks again before removing", arguments: [Backend.sysv, .posix])
    func orphans(backend: Backend) throws {
        try Names.with(backend) { name throws in
            #expect(try Probe.run(["create", name.description, "4096"]) == "ok 4096")
            let orphan = try #require(try SharedMemory.orphans().first { $0.name == name })
            #expect(orphan.attachCount == 0)

            // Attached again, it is no orphan: removeOrphan leaves it.
            let holder = try Probe.Holder(name)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
            #expect(try SharedMemory.removeOrphan(orphan) == false)
            holder.release()

            #expect(try SharedMemory.removeOrphan(orphan) == true)
            expectError(.notFound) { try SharedMemory.info(name) }
            #expect(try SharedMemory.removeOrphan(orphan) == false)
        }
    }

    @Test("objects other programs made have no recorded creator and are never orphans")
    func unknownCreator() throws {
        try Names.with(.posix) { name in
            #expect(FileManager.default.createFile(atPath: path(of: name), contents: Data(count: 100), attributes: [.posixPermissions: 0o600]))
            let info = try SharedMemory.info(name)
            #expect(info.creatorPID == nil)
            #expect(info.creatorIsAlive == nil)
            #expect(!(try SharedMemory.orphans()).contains { $0.name == name })
        }
    }
}
