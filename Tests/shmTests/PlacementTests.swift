import Testing
@testable import shm

/// `shm bench`'s verdict on a two-process case whose CPUs the hypervisor moved while it ran (a pure function:
/// no timing here).
@Suite("shm bench: placement")
struct PlacementTests {
    @Test("a peers case whose placement probes are all near, or all far, stands; one that saw both is unstable, with the probes")
    func placementVerdict() {
        #expect(LoadWatch.placementVerdict([120, 130, 125]) == nil)
        #expect(LoadWatch.placementVerdict([720, 700, 690]) == nil)
        #expect(LoadWatch.placementVerdict([311, 441, 370]) == nil)  // far, as this VM's far probes read
        #expect(LoadWatch.placementVerdict([120, 271, 250]) == nil)  // near, loaded
        #expect(LoadWatch.placementVerdict([]) == nil)
        let moved = LoadWatch.placementVerdict([410, 130, 120])
        #expect(moved == "the CPUs' placement changed during the case (spin round trips of 410, 130, 120 ns; near is under 300)")
        #expect(LoadWatch.placementVerdict([299, 300]) != nil)
    }
}
