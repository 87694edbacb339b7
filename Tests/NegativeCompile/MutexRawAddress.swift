// An in-region object hands out no pointer to keep: the mutex's address is not public, so nothing can hold on to
// it past the mapping the mutex keeps alive.
// expect: inaccessible
import SharedMemory

func mutexRawAddress(_ region: borrowing AnyRegion) throws {
    let mutex = try ProcessMutex.existing(in: region, at: 0)
    _ = mutex.address
}
