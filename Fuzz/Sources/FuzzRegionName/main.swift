// libFuzzer: any bytes as a region name string. A name either parses and prints back to something that parses
// to the same name, or is refused with invalidName; nothing crashes, and no refusal reaches a system call.
import Glibc
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

// libFuzzer's own main does not run in a SwiftPM executable (Swift's does), so hand it the loop.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzer(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
) -> Int32

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzer(&argc, &argv) { data, size in fuzz(data, size) })
