// The heap's instruction counts in Boost.Interprocess, for the Swift/Boost ratio (run.sh): the same operations as
// the Swift harness's heap-allocate (a 64-byte allocate and free, 1 000 other blocks in use) and heap-find (a find
// of one of 1 000 named objects), through managed_shared_memory's default allocator (rbtree_best_fit).
#include <boost/interprocess/managed_shared_memory.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
namespace bip = boost::interprocess;
int main(int argc, char **argv) {
    std::string op = argv[1]; long n = atol(argv[2]);
    const char *name = "/smboostinst";
    bip::shared_memory_object::remove(name);
    bip::managed_shared_memory segment(bip::create_only, name, 4 << 20);
    unsigned long sum = 0;
    if (op == "heap-allocate") {
        for (int i = 0; i < 1000; i++) segment.allocate(48);
        for (long i = 0; i < n; i++) { void *p = segment.allocate(64); segment.deallocate(p); }
    } else {
        std::vector<std::string> names;
        for (int i = 0; i < 1000; i++) { names.push_back("object-" + std::to_string(i)); segment.construct<unsigned long>(names.back().c_str())(i); }
        for (long i = 0; i < n; i++) sum += *segment.find<unsigned long>(names[i % 1000].c_str()).first;
    }
    bip::shared_memory_object::remove(name);
    if (sum == 42) printf("x\n");
}
