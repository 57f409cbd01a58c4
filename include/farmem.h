/* farmem.h -- the C interface of farmem, a far-memory runtime (libfarmem.so / libfarmem.a).
 *
 *   farmem/core.h       status codes, errors, the runtime, green threads, metrics
 *   farmem/objects.h    dereference scopes and far-memory containers
 *   farmem/dataframe.h  the far-memory DataFrame and the nine NYC-taxi steps
 *
 * Build: cargo build --release -p farmem-ffi  ->  target/release/libfarmem.so and libfarmem.a
 * Link:  -lfarmem; with the static library: libfarmem.a -lgcc_s -lutil -lrt -lpthread -lm -ldl.
 * Checked: ffi/src/drift.rs compiles bindgen's reading of these headers against the library's
 * Rust declarations (functions, structs, typedefs, constants), so the two cannot drift apart.
 * The C++ API is include/farmem.hpp (header-only RAII over this one).
 *
 * Changes from the draft (the contract shared with farmem.hpp):
 *   - No signature or name of the draft changed.
 *   - Added: fm_abi_version() and FM_ABI_VERSION, FM_ELEM_SIZE_MAX; fm_taxi_pickup_preview()
 *     (step 7's first rows); fm_config_t's alloc_wait_ms and evacuator_threads (appended: a
 *     caller built with the older, shorter struct passes its struct_size and keeps working).
 *   - Specified where the draft was silent:
 *       every *_destroy accepts NULL (no-op);
 *       fm_runtime_destroy fails with FM_INVALID_ARGUMENT, naming them, while containers,
 *         scopes, dataframes, unjoined tasks or calls in flight use the runtime (it stays usable);
 *         it must not be called from a green thread;
 *       NULL is allowed for `result` (fm_runtime_run, fm_task_join), `inserted_new`, `removed`,
 *         fm_list_remove's `out` and fm_dataframe_column_name's `needed`;
 *       fm_metrics_t.struct_size: set it (0 means this header's size); it is set to the bytes
 *         written;
 *       steps with arrays: out = NULL, cap = 0 asks for the size (FM_OK, *len = needed); a short
 *         cap is FM_INVALID_ARGUMENT with *len = needed;
 *       fm_task_join consumes the handle even when it fails;
 *       an element size is 1..=FM_ELEM_SIZE_MAX (4096);
 *       fm_array_create fails with FM_OUT_OF_FAR_MEMORY when the array cannot fit the embedded
 *         server (far_bytes).
 */
#ifndef FARMEM_H
#define FARMEM_H

#include "farmem/core.h"
#include "farmem/objects.h"
#include "farmem/dataframe.h"

#endif /* FARMEM_H */
