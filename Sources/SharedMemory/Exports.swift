// The types at SharedMemory's API edge come from swift-system (FileDescriptor, FilePermissions, FilePath, Errno)
// and swift-atomics (UnsafeAtomic and its orderings, from `region.atomic(_:at:)`). They are re-exported, so a
// program that sends a region, sets a mode or uses an atomic in a region needs `import SharedMemory` alone, and
// its Package.swift names only SharedMemory.
@_exported import Atomics
@_exported import SystemPackage
