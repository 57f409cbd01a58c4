/* farmem/objects.h -- dereference scopes and far-memory containers of fixed-size elements.
 *
 * Elements are plain bytes of a fixed size (1..=FM_ELEM_SIZE_MAX), copied in and out: C never
 * gets a pointer into far memory. Every element call passes elem_size again and gets
 * FM_INVALID_ARGUMENT when it differs from the container's. Containers start empty (arrays
 * zeroed). A container may be used from any thread, one call at a time per container (calls on one
 * container are serialised by a lock that parks green threads); fm_queue_t and fm_hashmap_t are
 * built for sharing. A container keeps its runtime from being destroyed until it is destroyed.
 */
#ifndef FARMEM_OBJECTS_H
#define FARMEM_OBJECTS_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest element (and hash-map key or value) size, bytes. */
#define FM_ELEM_SIZE_MAX 4096

/* ---- scopes ---------------------------------------------------------------------------------- */

/* A DerefScope (AIFM): while it is open, what it dereferenced stays in local memory. Used on the
 * OS thread that opened it only (a green thread is pinned to its worker, so on that green thread);
 * one call at a time. A scope used after fm_scope_end, from another OS thread, or while another
 * call is using it gives FM_INVALID_ARGUMENT. Renew it (fm_scope_renew) every few thousand element
 * calls so the evacuator can make progress; bulk calls (fm_array_read/write) renew it themselves. */
typedef struct fm_scope fm_scope_t;
fm_status_t fm_scope_begin(fm_runtime_t *rt, fm_scope_t **out);
fm_status_t fm_scope_renew(fm_scope_t *scope);
/* Ends the scope and frees its handle; from another thread it fails and the scope stays open.
 * End every scope before its thread exits: an abandoned scope keeps its runtime from being
 * destroyed (and the evacuator from reclaiming what it pinned until its grace timeout). */
fm_status_t fm_scope_end(fm_scope_t *scope);

/* ---- array: fixed length, zeroed ------------------------------------------------------------- */
typedef struct fm_array fm_array_t;
/* FM_OUT_OF_FAR_MEMORY when len * elem_size cannot fit the embedded server's far_bytes. */
fm_status_t fm_array_create(fm_runtime_t *rt, size_t elem_size, size_t len, fm_array_t **out);
fm_status_t fm_array_destroy(fm_array_t *a);
fm_status_t fm_array_len(const fm_array_t *a, size_t *out);
fm_status_t fm_array_get(fm_array_t *a, fm_scope_t *s, size_t index, void *out, size_t elem_size);
fm_status_t fm_array_set(fm_array_t *a, fm_scope_t *s, size_t index, const void *value, size_t elem_size);
/* Bulk copies of `count` elements starting at `start` (renewing s between chunks). */
fm_status_t fm_array_read(fm_array_t *a, fm_scope_t *s, size_t start, size_t count, void *out, size_t elem_size);
fm_status_t fm_array_write(fm_array_t *a, fm_scope_t *s, size_t start, size_t count, const void *src, size_t elem_size);

/* ---- vector: growable ------------------------------------------------------------------------ */
typedef struct fm_vector fm_vector_t;
fm_status_t fm_vector_create(fm_runtime_t *rt, size_t elem_size, fm_vector_t **out);
fm_status_t fm_vector_destroy(fm_vector_t *v);
fm_status_t fm_vector_len(const fm_vector_t *v, size_t *out);
fm_status_t fm_vector_push(fm_vector_t *v, fm_scope_t *s, const void *value, size_t elem_size);
/* *popped = 1 and *out = the last element, or *popped = 0 (out untouched) when empty. */
fm_status_t fm_vector_pop(fm_vector_t *v, fm_scope_t *s, void *out, size_t elem_size, int *popped);
fm_status_t fm_vector_get(fm_vector_t *v, fm_scope_t *s, size_t index, void *out, size_t elem_size);
fm_status_t fm_vector_set(fm_vector_t *v, fm_scope_t *s, size_t index, const void *value, size_t elem_size);

/* ---- list: double-ended, insert/remove anywhere ---------------------------------------------- */
typedef struct fm_list fm_list_t;
fm_status_t fm_list_create(fm_runtime_t *rt, size_t elem_size, fm_list_t **out);
fm_status_t fm_list_destroy(fm_list_t *l);
fm_status_t fm_list_len(const fm_list_t *l, size_t *out);
fm_status_t fm_list_push_back(fm_list_t *l, fm_scope_t *s, const void *value, size_t elem_size);
fm_status_t fm_list_push_front(fm_list_t *l, fm_scope_t *s, const void *value, size_t elem_size);
fm_status_t fm_list_pop_back(fm_list_t *l, fm_scope_t *s, void *out, size_t elem_size, int *popped);
fm_status_t fm_list_pop_front(fm_list_t *l, fm_scope_t *s, void *out, size_t elem_size, int *popped);
fm_status_t fm_list_get(fm_list_t *l, fm_scope_t *s, size_t index, void *out, size_t elem_size);
/* Inserts so that the value becomes element `index` (index <= len). */
fm_status_t fm_list_insert(fm_list_t *l, fm_scope_t *s, size_t index, const void *value, size_t elem_size);
/* Removes element `index`, copying it to *out (out may be NULL to discard it). */
fm_status_t fm_list_remove(fm_list_t *l, fm_scope_t *s, size_t index, void *out, size_t elem_size);

/* ---- stack and queue: no scope (each call opens its own) ------------------------------------- */
typedef struct fm_stack fm_stack_t;
fm_status_t fm_stack_create(fm_runtime_t *rt, size_t elem_size, fm_stack_t **out);
fm_status_t fm_stack_destroy(fm_stack_t *s);
fm_status_t fm_stack_len(const fm_stack_t *s, size_t *out);
fm_status_t fm_stack_push(fm_stack_t *s, const void *value, size_t elem_size);
fm_status_t fm_stack_pop(fm_stack_t *s, void *out, size_t elem_size, int *popped);
fm_status_t fm_stack_peek(fm_stack_t *s, void *out, size_t elem_size, int *found);

/* A FIFO queue, safe to share between threads and green threads (linearisable). */
typedef struct fm_queue fm_queue_t;
fm_status_t fm_queue_create(fm_runtime_t *rt, size_t elem_size, fm_queue_t **out);
fm_status_t fm_queue_destroy(fm_queue_t *q);
fm_status_t fm_queue_len(const fm_queue_t *q, size_t *out);
fm_status_t fm_queue_push(fm_queue_t *q, const void *value, size_t elem_size);
fm_status_t fm_queue_pop(fm_queue_t *q, void *out, size_t elem_size, int *popped);
fm_status_t fm_queue_peek(fm_queue_t *q, void *out, size_t elem_size, int *found);

/* ---- hash map: index on the memory server, hot entries cached locally ------------------------ */
/* Fixed-size keys and values (sizes fixed at creation, 1..=FM_ELEM_SIZE_MAX, checked on every
 * call); keys compare bytewise. Safe to share between threads. Needs a memory server that runs
 * the hash index (the embedded one does). */
typedef struct fm_hashmap fm_hashmap_t;
fm_status_t fm_hashmap_create(fm_runtime_t *rt, size_t key_size, size_t value_size, uint64_t cache_bytes, fm_hashmap_t **out);
fm_status_t fm_hashmap_destroy(fm_hashmap_t *m);
fm_status_t fm_hashmap_len(fm_hashmap_t *m, uint64_t *out);
/* Inserts or replaces; *inserted_new = 1 when the key was new (inserted_new may be NULL). */
fm_status_t fm_hashmap_put(fm_hashmap_t *m, const void *key, size_t key_size, const void *value, size_t value_size, int *inserted_new);
/* *found = 1 and *out = the value, or *found = 0 (out untouched). */
fm_status_t fm_hashmap_get(fm_hashmap_t *m, const void *key, size_t key_size, void *out, size_t value_size, int *found);
/* *removed = 1 when the key was there (removed may be NULL). */
fm_status_t fm_hashmap_remove(fm_hashmap_t *m, const void *key, size_t key_size, int *removed);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FARMEM_OBJECTS_H */
