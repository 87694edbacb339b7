// The backends are a closed set: a switch over AnyRegion that forgets one does not compile.
// expect: switch must be exhaustive
import SharedMemory

func missingBackend(_ region: borrowing AnyRegion) -> String {
    switch region {
    case .systemV: "segment"
    case .posix: "object"
    case .file: "file"
    case .anonymous: "anonymous"
    }
}
