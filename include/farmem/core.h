/* farmem/core.h -- status codes, errors, the runtime, green threads and metrics of farmem's C ABI.
 *
 * Conventions of every farmem C function (see also farmem.h):
 *   - It returns fm_status_t (FM_OK = 0) unless documented as a getter; results go through
 *     out-parameters, which are written only on FM_OK unless a function says otherwise.
 *   - Handles (fm_runtime_t *, fm_array_t *, ...) are opaque tokens checked against a registry
 *     (slot + generation): a NULL, destroyed, twice-destroyed, forged or wrong-type handle gives
 *     FM_INVALID_ARGUMENT and a message naming the function and the problem, never undefined
 *     behaviour. Every *_destroy accepts NULL as a no-op.
 *   - Every call runs inside a panic boundary: a Rust panic becomes FM_PANICKED.
 *   - On failure, fm_last_error() returns "<kind>: <function>: <what failed, the value, what to do>".
 */
#ifndef FARMEM_CORE_H
#define FARMEM_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ---------------------------------------------------------------------------- */

/* A status code: FM_OK or one of the kinds below. */
typedef uint32_t fm_status_t;

/* Values equal farmem_error::ErrorKind discriminants (stable: new kinds append). */
#define FM_OK 0
#define FM_INVALID_ARGUMENT 1
#define FM_OUT_OF_LOCAL_MEMORY 2
#define FM_OUT_OF_FAR_MEMORY 3
#define FM_OUT_OF_DEVICE_MEMORY 4
#define FM_UNSUPPORTED 5
#define FM_IO 6
#define FM_PROTOCOL 7
#define FM_AUTH 8
#define FM_SERVER_ERROR 9
#define FM_DISCONNECTED 10
#define FM_TIMEOUT 11
#define FM_NOT_FOUND 12
#define FM_CLOSED 13
#define FM_PANICKED 14
#define FM_PARSE 15
#define FM_INTERNAL 16

/* The version of this ABI; fm_abi_version() returns the library's. */
#define FM_ABI_VERSION 1

/* Getter: the ABI version the library implements (FM_ABI_VERSION of its headers). */
uint32_t fm_abi_version(void);

/* Getter: the static name of a status ("FM_OUT_OF_FAR_MEMORY"), never NULL ("FM_UNKNOWN" for a
 * value that is no status). */
const char *fm_status_str(fm_status_t status);

/* Getter: the message of the last failed call on this OS thread ("<kind>: <function>: <context>"),
 * "" if none failed yet. Never NULL. Valid until the next failing farmem call on this thread.
 * Green threads of one worker share its OS thread: read it right after the failed call, before
 * anything that can switch green threads (fm_yield, fm_sleep_us, far-memory misses). */
const char *fm_last_error(void);

/* ---- runtime --------------------------------------------------------------------------------- */

/* One running farmem instance: green-thread workers, far memory with its local budget, and the
 * memory server (embedded in this process unless `server` names one). Thread-safe. */
typedef struct fm_runtime fm_runtime_t;

typedef struct fm_config {
  size_t struct_size;   /* sizeof(fm_config_t): lets the library grow the struct */
  uint64_t local_bytes; /* local memory budget; 0 = default 256 MiB (minimum 128 KiB) */
  uint64_t far_bytes;   /* embedded server capacity; 0 = default 4 GiB */
  const char *server;   /* "host:port" of a farmem-server, or a comma-separated list of them
                         * ("h1:p1,h2:p2": each container lives on one, placed by power of two
                         * choices), or NULL for the embedded server */
  const char *token;    /* the cluster token (NUL-terminated); required with server; without it,
                         * the embedded server gets this token (or a fresh one if NULL) */
  uint32_t connections; /* TCP connections to the server; 0 = default 2 */
  uint32_t workers;     /* green-thread worker OS threads; 0 = one per core */
  uint64_t chunk_bytes; /* far-memory chunk size (a power of two); 0 = picked from local_bytes */
  /* ---- version 2 (fields are only ever appended; see fm_runtime_create) ---- */
  uint64_t alloc_wait_ms;     /* how long a write that needs local memory waits for the evacuator
                               * to free some before failing with FM_OUT_OF_LOCAL_MEMORY, ms;
                               * 0 = default 2000 (raise it on a loaded machine) */
  uint32_t evacuator_threads; /* threads moving cold objects to far memory, 1..=64; 0 = default 1 */
} fm_config_t;

/* Fills *cfg with the defaults (all zero / NULL) and struct_size. NULL is ignored. */
void fm_config_init(fm_config_t *cfg);

/* Starts a runtime. cfg may be NULL (defaults); otherwise cfg->struct_size must be at least the
 * size of the first version of fm_config_t, offsetof(fm_config_t, alloc_wait_ms) (call
 * fm_config_init first). A program built against an older header passes its shorter sizeof:
 * the fields past its struct_size are never read and take their defaults. A larger struct_size
 * (a newer header) is accepted; fields this library does not know are ignored. */
fm_status_t fm_runtime_create(const fm_config_t *cfg, fm_runtime_t **out);

/* Stops a runtime: workers, then far memory, then the embedded server. NULL is a no-op; a
 * destroyed handle is FM_INVALID_ARGUMENT. Fails with FM_INVALID_ARGUMENT ("3 handles still use
 * this runtime: 2 fm_array_t, 1 fm_scope_t") while containers, scopes, dataframes, unjoined tasks
 * or calls in flight on other threads use it -- destroy/join those first; the runtime is then
 * still usable. Must not be called from a green thread. Returns the first background error far
 * memory reported, if any (the runtime is destroyed either way). */
fm_status_t fm_runtime_destroy(fm_runtime_t *rt);

/* ---- green threads --------------------------------------------------------------------------- */

/* A green thread's body; its return value is the task's int result. It runs on a worker OS thread
 * of the runtime (pinned to it once started) and may call any farmem function. */
typedef int (*fm_task_fn)(void *arg);

/* A started green thread, to be joined exactly once. */
typedef struct fm_task fm_task_t;

/* Runs fn(arg) as a green thread of rt and blocks the calling OS thread until it returns (from a
 * green thread, parks only that green thread); *result = its return value. result may be NULL. */
fm_status_t fm_runtime_run(fm_runtime_t *rt, fm_task_fn fn, void *arg, int *result);

/* Starts fn(arg) as a green thread. With rt non-NULL it runs on rt (from any thread); with rt NULL
 * the caller must be a farmem green thread and the task runs on the caller's runtime. The caller
 * promises that arg may be used from the worker thread and stays valid until the task ends. */
fm_status_t fm_spawn(fm_runtime_t *rt, fm_task_fn fn, void *arg, fm_task_t **out);

/* Waits for a task and consumes its handle (even on failure); *result = its return value (result
 * may be NULL). FM_PANICKED when the task panicked, FM_CLOSED when its runtime shut down first. */
fm_status_t fm_task_join(fm_task_t *task, int *result);

/* Lets other green threads of this worker run (on a plain OS thread: yields the OS thread). */
void fm_yield(void);

/* Suspends the calling green thread (or OS thread) for `micros` microseconds. */
fm_status_t fm_sleep_us(uint64_t micros);

/* ---- metrics --------------------------------------------------------------------------------- */

typedef struct fm_metrics {
  size_t struct_size;          /* in: sizeof(fm_metrics_t) (0 = this header's size); out: bytes written */
  uint64_t local_bytes_used;   /* local memory in use by far-memory objects (regions not free) */
  uint64_t local_bytes_budget; /* the configured local budget */
  uint64_t bytes_fetched;      /* bytes read from the memory server (misses and prefetches) */
  uint64_t bytes_written_back; /* bytes written to the memory server (evacuation, write-through) */
  uint64_t misses;             /* dereferences that had to fetch */
  uint64_t hits;               /* dereferences served locally (counted when their scope ends or renews) */
  uint64_t prefetches_issued;  /* chunks the stride prefetcher fetched ahead */
  uint64_t evacuations;        /* local regions the evacuator freed */
} fm_metrics_t;

/* A snapshot of rt's far-memory counters into *out (set out->struct_size first). */
fm_status_t fm_runtime_metrics(fm_runtime_t *rt, fm_metrics_t *out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FARMEM_CORE_H */
