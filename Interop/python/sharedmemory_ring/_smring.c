/* The C side of the Python package: smring.h's and smpubsub.h's functions with plain C linkage, for ctypes, and a
 * Python module init so the shared library can also be imported (it has no Python-level functions of its own). */
#include <Python.h>  /* first, as Python asks; it turns on the POSIX and GNU declarations smring.h needs */
#include "smpubsub.h"
#include <stdlib.h>

smring *smr_attach(void *ring, uint64_t room, int seat, int *result) {
    smring *r = malloc(sizeof *r);
    if (!r) { *result = SMRING_INVALID; return NULL; }
    *result = smring_attach(r, ring, room, seat);
    if (*result != SMRING_OK) { free(r); return NULL; }
    return r;
}

void smr_free(smring *r) { free(r); }

/* The sentence of the error `code` just returned in this thread: the Swift library's sentence for it. */
const char *smr_message(int code) { return smring_message(code); }
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

/* ---- The publish/subscribe service ---- */

uint64_t sps_size(uint64_t max_payload, uint32_t subscribers, uint32_t depth, uint32_t history) {
    return smps_size(max_payload, subscribers, depth, history);
}

int sps_format(void *service, uint64_t room, uint64_t max_payload, uint32_t subscribers, uint32_t depth, uint32_t history) {
    return smps_format(service, room, max_payload, subscribers, depth, history);
}

int sps_wait_formatted(void *service, uint64_t room, int64_t timeout_ns) {
    smps_service s;
    return smps_attach_waiting(&s, service, room, timeout_ns);
}

smps_publisher *sps_publisher(void *service, uint64_t room, int64_t block_timeout_ns, int *result) {
    smps_publisher *p = malloc(sizeof *p);
    if (!p) { *result = SMRING_INVALID; return NULL; }
    *result = smps_publisher_attach(p, service, room, block_timeout_ns);
    if (*result != SMRING_OK) { free(p); return NULL; }
    return p;
}

uint64_t sps_publisher_max_payload(smps_publisher *p) { return p->service.layout.max_payload; }
int sps_loan(smps_publisher *p, void **payload) { return smps_loan(p, payload); }
int sps_publish(smps_publisher *p, uint64_t length, uint64_t *sequence) { return smps_publish(p, length, sequence); }
void sps_cancel(smps_publisher *p) { smps_cancel(p); }
int sps_publish_copy(smps_publisher *p, const void *bytes, uint64_t length, uint64_t *sequence) { return smps_publish_copy(p, bytes, length, sequence); }
int sps_update(smps_publisher *p) { return smps_update(p); }
void sps_finish(smps_publisher *p) { smps_finish(p); }
uint64_t sps_last_sequence(smps_publisher *p) { return smps_last_sequence(p); }

uint32_t sps_subscriber_count(smps_publisher *p) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->service.layout.subscribers; i++) n += smps__state(&p->service, i) == SMPS_CONNECTED;
    return n;
}

smps_subscriber *sps_subscribe(void *service, uint64_t room, uint32_t depth, uint32_t overflow, uint32_t history, int *result) {
    smps_subscriber *s = malloc(sizeof *s);
    if (!s) { *result = SMRING_INVALID; return NULL; }
    *result = smps_subscribe(s, service, room, depth, overflow, history);
    if (*result != SMRING_OK) { free(s); return NULL; }
    return s;
}

uint64_t sps_subscriber_max_payload(smps_subscriber *s) { return s->service.layout.max_payload; }
int sps_receive(smps_subscriber *s, const void **sample, uint64_t *length, uint64_t *sequence, int64_t timeout_ns) {
    return smps_receive(s, sample, length, sequence, timeout_ns);
}
void sps_release(smps_subscriber *s) { smps_release(s); }
uint64_t sps_lost(smps_subscriber *s) { return smps_lost(s); }
void sps_close(smps_subscriber *s) { smps_close(s); }

static struct PyModuleDef module = { PyModuleDef_HEAD_INIT, "_smring", NULL, -1, NULL };
PyMODINIT_FUNC PyInit__smring(void) { return PyModule_Create(&module); }
