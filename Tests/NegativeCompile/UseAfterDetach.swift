// A detached region cannot be used: detach consumes the handle.
// expect: used after consume
import SharedMemory

func useAfterDetach(_ name: RegionName) throws {
    let region = try SharedMemory.create(name, size: 4096)
    try region.detach()
    _ = try region.get(UInt8.self, at: 0)
}
