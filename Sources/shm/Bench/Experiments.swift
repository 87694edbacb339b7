import Foundation
import Glibc
import SharedMemory
import SystemPackage

/// The Swift side of the benchmarks: the same loops as Benchmarks/c/shmbench.c, through SharedMemory.
enum SwiftBench {
    /// A fresh name for iteration `i`: what the C loop uses, with "swift" in place of "c".
    static func name(_ backend: Backend, _ i: Int) throws -> RegionName {
        switch backend {
        case .sysv: .systemVPrivate
        case .posix: try .posix("/shmbench-swift-\(getpid())-\(i)")
        case .file: try .file(FilePath("/tmp/shmbench-swift-\(getpid())-\(i)"))
        case .anonymous: .anonymous
        case .memfd: try .memfd("shmbench-swift-\(i)")
        }
    }

    /// create → attach → touch one page → remove → detach, `iterations` times; nanoseconds each.
    static func lifecycle(_ backend: Backend, iterations: Int) throws -> [Double] {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let removable = backend.capabilities.contains(.named)
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        for i in 0..<iterations {
            let name = try name(backend, i)
            let start = nanoseconds()
            let region = try SharedMemory.create(name, size: page)
            try region.withUnsafeMutableBytes { $0[0] = 1 }
            if removable { try region.remove() }
            try region.detach()
            samples.append(Double(nanoseconds() - start))
        }
        return samples
    }

    /// create (plain, prefaulted, or with 2 MiB huge pages) and write one byte in every page; nanoseconds each.
    static func firstTouch(_ backend: Backend, mode: String, bytes: Int, repeats: Int) throws -> [Double] {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let options = CreateOptions(hugePages: mode == "huge" ? .explicit(.size2MiB) : nil, prefault: mode == "prefault")
        var samples: [Double] = []
        for i in 0..<repeats {
            let name = try name(backend, i)
            let start = nanoseconds()
            let region = try SharedMemory.create(name, size: bytes, options: options)
            try region.withUnsafeMutableBytes { buffer in
                let base = buffer.baseAddress!
                var offset = 0
                while offset < bytes {
                    base.storeBytes(of: 1, toByteOffset: offset, as: UInt8.self)
                    offset += page
                }
            }
            samples.append(Double(nanoseconds() - start))
            if backend.capabilities.contains(.named) { try region.remove() }
            try region.detach()
        }
        return samples
    }
}
