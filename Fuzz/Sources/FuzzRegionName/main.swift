// libFuzzer: any bytes as a region name string. A name either parses and prints back to something that parses
// to the same name, or is refused with invalidName; nothing crashes, and no refusal reaches a system call.
import Glibc
import FuzzDriver
import SharedMemory

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let name = try RegionName(text)
        let again = try RegionName(name.description)
        precondition(again == name, "\(text) printed as \(name) parses to \(again)")
    } catch {
        precondition(error.code == .invalidName, "\(text): \(error)")
        precondition(error.systemCall == nil && error.errno == nil, "a bad name reached a system call: \(error)")
    }
    return 0
}

runFuzzer { data, size in fuzz(data, size) }
