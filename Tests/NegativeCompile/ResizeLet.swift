// A region bound with `let` cannot be resized: resizing needs exclusive access.
// expect: cannot use mutating member on immutable value
import SharedMemory

func resizeLet(_ name: RegionName) throws {
    let region = try SharedMemory.create(name, size: 4096)
    try region.resize(to: 8192)
}
