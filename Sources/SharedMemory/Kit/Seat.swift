import Atomics
import Glibc

/// Who holds a role in a region: a ring's sender or receiver, a service's publisher or server, a subscriber's or
/// client's slot, a seqlock cell's writer. Every format keeps a seat as two words, declared in its layout: the
/// holder's pid (`Int32`, 0 when empty, written last with release) and its start time (`UInt64`, clock ticks since
/// boot from /proc/PID/stat, plain, written before the pid). This is the one place that claims, gives back and
/// judges liveness; each engine adds only its own rule for what a taken seat means.
///
/// - Liveness is the pid *and* the start time (``Creator/isAlive``): a reused pid is not the holder, and a start
///   time of 0 is never alive (a peer cannot hold a seat for ever by writing `pid 1, start 0`).
/// - A seat is given back only by the process that holds it (a compare-and-swap from its own pid), so a copy of a
///   handle inherited across `fork`, or a handle whose seat was taken over meanwhile, changes nothing.
/// - A role whose holder's death its peers must hear of (a ring's sides, a publisher, a server, a seqlock's
///   writer) has a third word, `…Vacated`: a handle that goes away without `close()` writes its pid there
///   (``vacate()``) and leaves its pid in the seat. Another process may then take the seat over though this one
///   lives, and until it does, peers still see this process and hear of its death: a handle's lifetime (which the
///   optimiser may end at its last use) ends nothing and keeps nobody out. Slots (subscribers', clients') have no
///   such word: nobody waits on their holder's death, and they are given back whole.
struct Seat {
    let pid: UnsafeAtomic<Int32>
    let start: UnsafeMutableRawPointer
    let vacated: UnsafeAtomic<Int32>?

    /// The seat whose pid is at `pidAt`, start time at `startAt` and vacated mark (if it has one) at `vacatedAt`
    /// bytes from `base` (all checked to lie in the region by the format's header check before a seat is made).
    init(_ base: UnsafeRawPointer, pid pidAt: Int, start startAt: Int, vacated vacatedAt: Int? = nil) {
        let base = UnsafeMutableRawPointer(mutating: base)
        pid = UnsafeAtomic(at: (base + pidAt).assumingMemoryBound(to: Int32.AtomicRepresentation.self))
        start = base + startAt
        vacated = vacatedAt.map { UnsafeAtomic(at: (base + $0).assumingMemoryBound(to: Int32.AtomicRepresentation.self)) }
    }

    /// The pid in the seat, 0 when empty (what a peer wrote: any value).
    var pidValue: Int32 { pid.load(ordering: .acquiring) }

    /// The process in the seat, or nil if it is empty.
    var occupant: Creator? {
        let holder = pid.load(ordering: .acquiring)
        guard holder != 0 else { return nil }
        return Creator.seat(pid: holder, start: start.load(as: UInt64.self))
    }

    /// Whether a live process holds the seat (an empty seat: no).
    var isHeldByLiveProcess: Bool { occupant?.isAlive ?? false }

    /// Whether this process holds the seat.
    var isMine: Bool { pid.load(ordering: .acquiring) == getpid() }

    /// Whether the holder's handle went away (see ``vacate()``): the seat may be taken over though the holder lives.
    var isVacated: Bool {
        guard let vacated else { return false }
        let holder = pid.load(ordering: .acquiring)
        return holder != 0 && vacated.load(ordering: .acquiring) == holder
    }

    /// Claims the seat for this process: `busy` (with `busy(pid)` as the reason) if a live process holds it through
    /// a live handle, this process included, unless `holderIsDone` says that holder has given up its role in the
    /// format's own terms (a publisher or server that finished). A handle vacates its seat when it goes, so a seat
    /// naming this process, not vacated, belongs to a live handle of it. A dead holder's seat is taken over: it is
    /// returned, for the engine to recover what it left. Clears the vacated mark, writes the start time, then the
    /// pid with a compare-and-swap from the holder seen, and tries again if another claimant came between (no lock
    /// is needed; engines that hold one claim under it anyway).
    @discardableResult
    func claim(
        region: RegionName?, holderIsDone: Bool = false, busy: (Int32) -> String
    ) throws(SharedMemoryError) -> Creator? {
        let me = Creator.current
        while true {
            let holder = occupant
            let alive = holder?.isAlive ?? false
            if let holder, alive, !holderIsDone, !isVacated {
                throw SharedMemoryError(.busy, busy(holder.pid), region: region)
            }
            vacated?.store(0, ordering: .relaxed)
            start.storeBytes(of: me.startTime ?? 0, as: UInt64.self)
            if pid.compareExchange(expected: holder?.pid ?? 0, desired: me.pid, ordering: .acquiringAndReleasing).exchanged {
                return alive ? nil : holder
            }
        }
    }

    /// Takes the seat for this process without looking at who had it: for a slot its engine has found free or
    /// reclaimed under its lock.
    func occupy() {
        let me = Creator.current
        start.storeBytes(of: me.startTime ?? 0, as: UInt64.self)
        pid.store(me.pid, ordering: .releasing)
    }

    /// The handle holding the seat went away without `close()`: marks the seat as free to take over, leaving this
    /// process in it (peers still hear of its death). Nothing if this process does not hold it (a copy inherited
    /// across `fork`, a seat taken over or given back meanwhile). A seat with no vacated word is given back.
    func vacate() {
        guard let vacated else { release(); return }
        let me = getpid()
        if pid.load(ordering: .acquiring) == me { vacated.store(me, ordering: .releasing) }
    }

    /// Gives the seat back if this process holds it; whether it did. Giving a seat back ends nothing for peers: an
    /// empty seat means "nobody yet", never "the peer died" or "the stream ended".
    @discardableResult
    func release() -> Bool {
        pid.compareExchange(expected: getpid(), desired: 0, ordering: .acquiringAndReleasing).exchanged
    }

    /// Empties the seat whoever holds it: for reclaiming a dead holder's slot under the engine's lock.
    func clear() {
        pid.store(0, ordering: .releasing)
    }
}

/// Each format's seats, from its declared fields: the engines and the inspector find them here.
extension Seat {
    /// A ring's sender's seat.
    static func sender(_ ring: UnsafeRawPointer) -> Seat {
        Seat(ring, pid: RingHeader.senderPID.offset, start: RingHeader.senderStart.offset, vacated: RingHeader.senderVacated.offset)
    }

    /// A ring's receiver's seat.
    static func receiver(_ ring: UnsafeRawPointer) -> Seat {
        Seat(ring, pid: RingHeader.receiverPID.offset, start: RingHeader.receiverStart.offset, vacated: RingHeader.receiverVacated.offset)
    }

    /// A publish/subscribe service's publisher's seat.
    static func publisher(_ service: UnsafeRawPointer) -> Seat {
        Seat(service, pid: ServiceHeader.publisherPID.offset, start: ServiceHeader.publisherStart.offset, vacated: ServiceHeader.publisherVacated.offset)
    }

    /// A subscriber's seat, in its slot at `slot`.
    static func subscriber(_ slot: UnsafeRawPointer) -> Seat {
        Seat(slot, pid: SubscriberSlot.pid.offset, start: SubscriberSlot.start.offset)
    }

    /// A request/response service's server's seat.
    static func server(_ service: UnsafeRawPointer) -> Seat {
        Seat(service, pid: RequestResponseHeader.serverPID.offset, start: RequestResponseHeader.serverStart.offset, vacated: RequestResponseHeader.serverVacated.offset)
    }

    /// A client's seat, in its slot at `slot`.
    static func client(_ slot: UnsafeRawPointer) -> Seat {
        Seat(slot, pid: ClientSlot.pid.offset, start: ClientSlot.start.offset)
    }

    /// A seqlock cell's writer's seat.
    static func writer(_ cell: UnsafeRawPointer) -> Seat {
        Seat(cell, pid: SeqlockLayout.writerPID.offset, start: SeqlockLayout.writerStart.offset, vacated: SeqlockLayout.writerVacated.offset)
    }
}
