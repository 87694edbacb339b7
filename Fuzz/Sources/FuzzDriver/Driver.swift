import Glibc
@_spi(Tools) import SharedMemory

// libFuzzer's own main does not run in a SwiftPM executable (Swift's does), so each fuzzer hands it the loop.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32

/// Runs libFuzzer with this process's arguments, calling `body` with each input, and exits with its status.
public func runFuzzer(_ body: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, body))
}

/// Places in this process's address space between two `PROT_NONE` pages: each input's region is created exactly in
/// a fresh one (`.fixed`), so that a read or write past either end of it is a SIGSEGV libFuzzer reports, where
/// otherwise it would touch whatever the kernel mapped next (another region, the Swift heap) and go unseen. A hole
/// kept between inputs would be taken by the fuzzer's own allocations, so each input reserves guards and hole anew,
/// gives the hole back and creates the region there at once (retrying elsewhere if something mapped there first);
/// the previous input's guards are unmapped then, its region being gone.
public final class GuardedPlace {
    /// Bytes between the guard pages (a multiple of the page).
    public let size: Int
    private let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    private var guards: [UnsafeMutableRawPointer] = []

    /// Places of `size` bytes, rounded up to a page.
    public init(size: Int) {
        self.size = (size + page - 1) / page * page
    }

    /// A fresh memfd region between guard pages; the previous input's must have been dropped.
    public func region() -> AnyRegion {
        for guardPage in guards { munmap(guardPage, page) }
        guards = []
        for _ in 0..<100 {
            guard let area = mmap(nil, size + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                  area != MAP_FAILED else { fatalError("reserving \(size) bytes between guard pages failed") }
            munmap(area + page, size)
            do {
                let region = try SharedMemory.create(.memfd("fuzz"), size: size, options: .init(address: .fixed(UInt(bitPattern: area + page))))
                guards = [area, area + page + size]
                return region
            } catch {
                munmap(area, page)
                munmap(area + page + size, page)
                guard error.code == .busy else { fatalError("creating the fuzzed region between guard pages: \(error)") }
            }
        }
        fatalError("creating the fuzzed region between guard pages: every place tried was taken")
    }

    /// The offset at which `bytes` aligned to `alignment` end exactly at the place's end (the last guard page).
    public func offset(endingHere bytes: Int, alignment: Int) -> Int {
        precondition(bytes <= size && (size - bytes) % alignment == 0, "\(bytes) bytes cannot end at the guard page with alignment \(alignment)")
        return size - bytes
    }
}

/// Writes the input's patches over `bytes`: each is a 16-bit little-endian offset (taken modulo the bytes' count), a
/// length of 1 to 8 (the byte modulo 8, plus 1), then that many bytes; bytes in `spared` (a lock another process's
/// write over which can only make others wait, which is not what these fuzzers look for) are left alone.
public func applyPatches(_ input: UnsafeRawBufferPointer, to bytes: UnsafeMutableRawBufferPointer, sparing spared: Range<Int>) {
    var next = 0
    while next + 3 <= input.count {
        let offset = Int(input[next]) | Int(input[next + 1]) << 8
        let length = Int(input[next + 2] % 8) + 1
        next += 3
        for k in 0..<length where next + k < input.count {
            let target = (offset + k) % bytes.count
            if !spared.contains(target) { bytes[target] = input[next + k] }
        }
        next += length
    }
}

/// Runs one step of a fuzzer: it succeeds, or throws a ``SharedMemoryError`` whose code is in `allowed` (an answer
/// that says why); anything else stops the fuzzer, which reports the input.
public func expectAnswer(_ allowed: Set<SharedMemoryError.Code>, _ body: () throws -> Void) {
    do {
        try body()
    } catch let error as SharedMemoryError {
        precondition(allowed.contains(error.code), "\(error)")
    } catch {
        preconditionFailure("\(error)")
    }
}

/// What `shm inspect` makes of the structure at `offset`, recognised by its magic number and read as each format in
/// turn: every look answers (a report, or a problem), and none reads outside the region (it lies between guard
/// pages) or waits.
public func inspectEveryWay(_ region: borrowing AnyRegion, at offset: Int) {
    region.withUnsafeBytes { bytes in
        for format in [nil] + Inspection.Format.allCases.map(Optional.some) {
            _ = Inspection.inspect(bytes, at: offset, as: format, objects: true, patient: false)
        }
    }
}
