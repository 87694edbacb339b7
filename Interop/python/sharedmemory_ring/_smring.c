/* The C side of the Python package: smring.h's functions with plain C linkage, for ctypes, and a Python module
 * init so the shared library can also be imported (it has no Python-level functions of its own). */
#include <Python.h>  /* first, as Python asks; it turns on the POSIX and GNU declarations smring.h needs */
#include "smring.h"
#include <stdlib.h>

smring *smr_attach(void *ring, uint64_t room, int seat, int *result) {
    smring *r = malloc(sizeof *r);
    if (!r) { *result = SMRING_INVALID; return NULL; }
    *result = smring_attach(r, ring, room, seat);
    if (*result != SMRING_OK) { free(r); return NULL; }
    return r;
}

void smr_free(smring *r) { free(r); }
int smr_format(void *ring, uint64_t room, uint64_t capacity) { return smring_format(ring, room, capacity); }
int smr_wait_formatted(void *ring, uint64_t room, int64_t timeout_ns) { return smring_wait_formatted(ring, room, timeout_ns); }
uint64_t smr_capacity(smring *r) { return r->capacity; }
uint32_t smr_maximum_message(smring *r) { return smring_maximum_message(r->capacity); }
int smr_send(smring *r, const void *bytes, uint32_t length, int64_t timeout_ns) { return smring_send(r, bytes, length, timeout_ns); }
void smr_finish(smring *r) { smring_finish(r); }
void smr_close(smring *r) { smring_close(r); }
int smr_is_finished(smring *r) { return smring_is_finished(r); }

/* The next message in place; its length in *length. Released with smr_release. */
int smr_receive(smring *r, const void **message, uint32_t *length, int64_t timeout_ns) {
    return smring_receive(r, message, length, timeout_ns);
}

void smr_release(smring *r) { smring_release(r); }

static struct PyModuleDef module = { PyModuleDef_HEAD_INIT, "_smring", NULL, -1, NULL };
PyMODINIT_FUNC PyInit__smring(void) { return PyModule_Create(&module); }
