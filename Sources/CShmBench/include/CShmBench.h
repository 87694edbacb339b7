#ifndef CSHMBENCH_H
#define CSHMBENCH_H

/// The C side of `shm bench` (shmbench.c): runs one experiment as the command line `argv` says and prints its
/// result on standard output. Returns the process's exit status.
int shmbench_main(int argc, char **argv);

#endif
