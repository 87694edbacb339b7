import Foundation
import SystemPackage
import Testing
@testable import SharedMemory

@Suite("Region names")
struct RegionNameTests {
    @Test("every valid form parses and prints back", arguments: [
        ("sysv:0x5eed", "sysv:0x00005eed", Backend.systemV),
        ("sysv:24301", "sysv:0x00005eed", .systemV),
        ("sysv:0xFFFFFFFF", "sysv:0xffffffff", .systemV),
        ("sysv:-1", "sysv:0xffffffff", .systemV),
        ("sysv:private", "sysv:private", .systemV),
        ("sysv-id:32768", "sysv-id:32768", .systemV),
        ("sysv-id:0", "sysv-id:0", .systemV),
        ("posix:/orders", "posix:/orders", .posix),
        ("posix:/a b.c-d_e", "posix:/a b.c-d_e", .posix),
        ("posix:/..." , "posix:/...", .posix),
        ("file:/var/tmp/orders", "file:/var/tmp/orders", .file),
        ("anonymous", "anonymous", .anonymous),
    ])
    func valid(text: String, printed: String, backend: Backend) throws {
        let name = try RegionName(text)
        #expect(name.description == printed)
        #expect(name.backend == backend)
        #expect(try RegionName(printed) == name)
    }

    @Test("names the kernel would refuse or half-accept are refused before any system call", arguments: [
        "", "orders", "shm:/x", "posix:", "posix:orders", "posix:/", "posix://x", "posix:/a/b", "posix:/.", "posix:/..",
        "posix:/a\u{0}b", "posix:/" + String(repeating: "x", count: 256),
        "sysv:", "sysv:0", "sysv:0x0", "sysv:0x", "sysv:12ab", "sysv:0x100000000", "sysv:99999999999", "sysv:private2",
        "sysv-id:", "sysv-id:-1", "sysv-id:x", "sysv-id:2147483648",
        "file:", "file:relative/path", "file:/tmp/", "file:/", "file:/tmp/a\u{0}b",
        "file:/tmp/" + String(repeating: "x", count: 256), "file:/" + String(repeating: "a/", count: 2100) + "x",
        "Anonymous", "anonymous:x",
    ])
    func invalid(text: String) {
        let error = expectError(.invalidName) { try RegionName(text) }
        #expect(error?.reason.contains("is not a valid region name") == true)
        #expect(error?.errno == nil)
        #expect(error?.systemCall == nil)
    }

    @Test("the longest POSIX name (255 bytes) is accepted and works")
    func longestPOSIXName() throws {
        let name = try RegionName.posix("/" + String(repeating: "z", count: 243) + "-\(getpid())".padding(toLength: 12, withPad: "-", startingAt: 0))
        defer { Names.cleanUp(name) }
        let region = try SharedMemory.create(name, size: 100)
        #expect(region.size == 100)
    }

    @Test("each refusal says what is allowed")
    func messages() {
        #expect(expectError(.invalidName) { try RegionName("posix:orders") }?.reason.contains("start with a slash") == true)
        #expect(expectError(.invalidName) { try RegionName("posix:/a/b") }?.reason.contains("second slash") == true)
        #expect(expectError(.invalidName) { try RegionName("posix:/..") }?.reason.contains("`.` and `..`") == true)
        #expect(expectError(.invalidName) { try RegionName("sysv:0") }?.reason.contains("sysv:private") == true)
        #expect(expectError(.invalidName) { try RegionName("file:x") }?.reason.contains("relative") == true)
    }

    @Test("names round-trip through Codable as their string form")
    func codable() throws {
        let names = try ["sysv:0x00005eed", "posix:/orders", "file:/tmp/x", "anonymous", "sysv-id:7"].map { try RegionName($0) }
        let data = try JSONEncoder().encode(names)
        #expect(String(decoding: data, as: UTF8.self) == #"["sysv:0x00005eed","posix:\/orders","file:\/tmp\/x","anonymous","sysv-id:7"]"#)
        #expect(try JSONDecoder().decode([RegionName].self, from: data) == names)
        #expect(throws: (any Error).self) { try JSONDecoder().decode([RegionName].self, from: Data(#"["posix:x"]"#.utf8)) }
    }

    @Test("ftok gives the key C's ftok gives, and refuses project id 0 and missing files")
    func ftok() throws {
        let path = "/tmp/smtest-ftok-\(getpid())"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: path) }
        var st = stat()
        #expect(stat(path, &st) == 0)
        let name = try RegionName.ftok(path: FilePath(path), projectID: 0x41)
        // ftok(3): low 8 bits of the id, low 8 bits of the device's minor number, low 16 bits of the inode.
        let expected = UInt32(0x41) << 24 | (UInt32(truncatingIfNeeded: st.st_dev) & 0xff) << 16 | UInt32(truncatingIfNeeded: st.st_ino) & 0xffff
        #expect(name == (try .systemV(key: Int32(bitPattern: expected))))
        expectError(.invalidArgument) { try RegionName.ftok(path: FilePath(path), projectID: 0) }
        expectError(.notFound) { try RegionName.ftok(path: "/nonexistent/smtest", projectID: 1) }
    }
}
