// A span returned out of withBytes would outlive the body, and perhaps the mapping.
// expect: Escapable
import SharedMemory

func spanEscapes(_ name: RegionName) throws {
    let region = try SharedMemory.create(name, size: 4096)
    let span: RawSpan = region.withBytes { (bytes: RawSpan) -> RawSpan in bytes }
    _ = span.byteCount
}
