// A handle is not Sendable (Docs/PublishSubscribe.md): its own state (positions, loan cursor, seen reads) is
// behind a pointer no lock guards, so one task or thread uses it at a time; what would hand it to another is refused.
// expect: does not conform to the 'Sendable' protocol
import SharedMemory

func toAnotherTask<Handle: Sendable & ~Copyable>(_ handle: consuming Handle) {}

func handleCrossesTasks(_ region: borrowing AnyRegion) throws {
    toAnotherTask(try Subscriber(region))
}
