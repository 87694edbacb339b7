// A span captured by an escaping closure would outlive the body.
// expect: escap
import SharedMemory

func spanCaptured(_ name: RegionName) throws -> () -> Int {
    let region = try SharedMemory.create(name, size: 4096)
    var later: () -> Int = { 0 }
    region.withBytes { (bytes: RawSpan) in
        later = { bytes.byteCount }
    }
    return later
}
