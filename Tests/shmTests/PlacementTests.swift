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
        #expect(moved == "the CPUs' placement changed during the case (spin round trips of 410, 130, 120 ns, near being under 300)")
        #expect(LoadWatch.placementVerdict([299, 300]) != nil)
    }

    @Test("rows unstable only because their placement moved, or their rounds disagreed, make a quiet machine's summary, not a busy one's")
    func placementIsNotBusy() throws {
        let moved = try #require(LoadWatch.placementVerdict([410, 130, 120]))
        let disagree = try #require(LoadWatch.spreadVerdict([100, 200, 300], what: "Swift's rounds"))
        func row(_ unstable: String?) -> Measurement {
            var m = Measurement(experiment: "peers", name: "ping-pong 64 KiB: ring vs Boost", unit: "ns", swift: Summary(median: 17_000, p99: 20_000, samples: 2000), c: Summary(median: 16_000, p99: 19_000, samples: 2000))
            m.unstable = unstable
            return m
        }
        let machine = Machine(cpu: "test", cores: 2, kernel: "6.18")
        let quiet = Report(machine: machine, results: [row(moved), row([disagree, moved].joined(separator: "; ")), row(nil)]).answers()
        #expect(quiet.last?.hasPrefix("The machine was quiet, but 2 of 3 cases are UNSTABLE") == true, "\(quiet)")
        let busy = Report(machine: machine, results: [row(["machine busy: others used 60% of the CPUs (limit 25%)", moved].joined(separator: "; ")), row(nil)]).answers()
        #expect(busy.last?.hasPrefix("The machine was busy") == true, "\(busy)")
        let stolen = Report(machine: machine, results: [row("12% of CPU time stolen by the hypervisor (limit 5%)")]).answers()
        #expect(stolen.last?.hasPrefix("The machine was busy") == true, "\(stolen)")
    }
}
