// An in-region object hands out no pointer to keep: the mutex has no address member a user can reach, so nothing
// can hold on to it past the mapping the mutex keeps alive.
// expect: has no member 'address'
import SharedMemory

func mutexRawAddress(_ region: borrowing AnyRegion) throws {
    let mutex = try ProcessMutex.existing(in: region, at: 0)
    _ = mutex.address
}
