// An order book in a heap, kept by processes that come and go: each `writer` adds three orders (the first one
// formats the heap), and a `reader` in another process walks the book through the handles that link its orders.
//
//   swift run heap-book writer --region posix:/book
//   swift run heap-book reader --region posix:/book
//   swift run shm rm posix:/book

import Glibc
import SharedMemory

/// An order: plain values, and a handle (an offset, valid in every process) to the next order.
struct Order: BitwiseCopyable {
    var price: Int64
    var quantity: Int64
    var next: HeapPointer<Order>
}

let arguments = CommandLine.arguments
guard arguments.count == 4, arguments[2] == "--region", let name = try? RegionName(arguments[3]) else {
    print("usage: heap-book writer|reader --region NAME")
    exit(2)
}

/// A failure of this example's own (not the library's), with the sentence to print.
struct ExampleFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The program; what it throws is printed below as one line.
func run() throws {
    switch arguments[1] {
    case "writer":
        var heap = try SharedHeap(formattingOrAttaching: try SharedMemory.openOrCreate(name, size: 1 << 20))
        let (book, _) = try heap.findOrConstruct("book", repeating: HeapPointer<Order>.null)
        var head = try heap.load(book)
        let highest = head.isNull ? 100 : try heap.load(head).price
        for price in highest + 1...highest + 3 {
            head = try heap.allocate(repeating: Order(price: price, quantity: 10 * (price - 100), next: head))
        }
        try heap.store(head, to: book)
        print("writer: added orders at \(highest + 1) to \(highest + 3)")
    case "reader":
        var heap = try SharedHeap(attaching: try SharedMemory.open(name), timeout: .seconds(5))
        guard let book = try heap.find("book", as: HeapPointer<Order>.self) else {
            throw ExampleFailure("no book in \(name) yet: run `heap-book writer --region \(name)` first")
        }
        var cursor = try heap.load(book)
        var count = 0
        while !cursor.isNull {
            let order = try heap.load(cursor)
            print("reader: \(order.quantity) at \(order.price)")
            count += 1
            cursor = order.next
        }
        let statistics = try heap.statistics()
        print("reader: \(count) orders in \(statistics.allocatedBlocks) blocks, \(statistics.namedObjects) named")
    default:
        print("usage: heap-book writer|reader --region NAME")
        exit(2)
    }
}

// An example is what users copy: a failure is one line saying why (the error's description names the region, the
// call and what to do) and exit status 1, never a crash report.
do {
    try run()
} catch {
    let line = "heap-book: \(error)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }  // standard error
    exit(1)
}
