// libFuzzer: a heap (SharedHeap) as a broken or hostile peer could leave it. The input is a list of patches (a 16-bit
// offset, a length of 1 to 8, that many bytes) written over a heap with blocks allocated and freed and named objects
// made; then the heap is verified, allocated from, freed into, searched, and its named objects made, listed and
// destroyed. Every step succeeds or says why (foreign, invalidArgument, noSpace, outOfBounds, typeMismatch,
// alreadyExists): nothing traps, hangs, or reads or writes outside the heap (it fills a region between guard pages,
// so an access past it is a crash). The heap's lock (the 40 bytes from 64) is left alone (a peer that writes over a
// lock can make others wait; see Docs/StructuredData.md); every other byte, the directory's words at 112 and 120
// among them, is fair game.
import Glibc
import FuzzDriver
import SharedMemory

let allowed: Set<SharedMemoryError.Code> = [.foreign, .invalidArgument, .noSpace, .outOfBounds, .typeMismatch, .alreadyExists]
nonisolated(unsafe) let place = GuardedPlace(size: 65536)
let lock = 64..<(64 + ProcessMutex.size)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var heap: SharedHeap
    var blocks: [HeapPointer<UInt8>] = []
    do {
        heap = try SharedHeap(formatting: place.region())
        for index in 0..<24 { blocks.append(try heap.allocate(byteCount: 16 + index * 53)) }
        for index in stride(from: 0, to: 24, by: 3) { try heap.deallocate(blocks[index]) }
        for index in 0..<12 { _ = try heap.construct("n\(index)", repeating: UInt16(index), count: index) }
    } catch {
        fatalError("setting up: \(error)")
    }
    let region = heap.intoRegion()
    try! region.withUnsafeMutableBytes { bytes in applyPatches(input, to: bytes, sparing: lock) }
    inspectEveryWay(region, at: 0)
    func check(_ body: () throws -> Void) { expectAnswer(allowed, body) }
    guard let attached = try? SharedHeap(attaching: region) else { return 0 }  // foreign or not ready: refused whole
    heap = attached
    check { _ = try heap.verify() }
    check { try heap.deallocate(blocks[1]) }
    check { _ = try heap.allocate(byteCount: 700) }
    check { _ = try heap.allocate(byteCount: 9000) }
    check { _ = try heap.find("n7", as: UInt16.self) }
    check { _ = try heap.findOrConstruct("fresh", repeating: UInt8(1)) }
    check { try heap.destroy("n5") }
    check { _ = try heap.namedObjects() }
    check { _ = try heap.statistics() }
    return 0
}
runFuzzer { data, size in fuzz(data, size) }
