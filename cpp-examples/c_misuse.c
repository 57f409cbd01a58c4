/* c_misuse: misuse of the C ABI gives an error code and a clear message, never a crash.
 *
 * Exercises NULL handles and out-pointers, destroyed and wrong-type handles, a scope used after
 * it ended, a wrong element size, out-of-range indexes, a runtime destroyed while handles use
 * it, taxi steps out of order and a too-small result buffer. Each check compares the status and
 * looks for the function name and the offending detail in fm_last_error(). Linked against the
 * static library (the examples cover the shared one). Prints "c_misuse: PASS" last.
 */
#define _GNU_SOURCE /* strcasestr */
#include <farmem.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

/* What a second OS thread saw when it used the main thread's scope. */
struct cross_thread {
  fm_array_t *array;
  fm_scope_t *scope;
  fm_status_t status;
  char message[512];
};

static void *use_scope_elsewhere(void *arg) {
  struct cross_thread *ct = arg;
  uint64_t v = 0;
  ct->status = fm_array_get(ct->array, ct->scope, 3, &v, sizeof v);
  snprintf(ct->message, sizeof ct->message, "%s", fm_last_error());
  return NULL;
}

static void check_true(int cond, const char *what) {
  printf("%-58s %s\n", what, cond ? "ok" : "WRONG");
  if (!cond) failures++;
}

/* The call returned `want` and the message names every needle (case-insensitive). */
static void check_err(fm_status_t got, fm_status_t want, const char *what, const char *needle1,
                      const char *needle2) {
  const char *msg = fm_last_error();
  int ok = got == want && msg != NULL && strlen(msg) > 0 &&
           (needle1 == NULL || strcasestr(msg, needle1) != NULL) &&
           (needle2 == NULL || strcasestr(msg, needle2) != NULL);
  printf("%-58s %s\n    %s (%u): %s\n", what, ok ? "ok" : "WRONG", fm_status_str(got),
         (unsigned)got, msg ? msg : "(null)");
  if (!ok) failures++;
}

int main(void) {
  check_true(fm_last_error() != NULL && fm_last_error()[0] == '\0',
             "fm_last_error is \"\" before any failure");
  check_true(strcmp(fm_status_str(FM_OUT_OF_FAR_MEMORY), "FM_OUT_OF_FAR_MEMORY") == 0 &&
                 strcmp(fm_status_str(FM_OK), "FM_OK") == 0 &&
                 strcmp(fm_status_str(999), "FM_UNKNOWN") == 0,
             "fm_status_str names statuses");
  check_true(fm_abi_version() == FM_ABI_VERSION, "fm_abi_version matches the header");

  /* NULL handles and out-pointers. */
  size_t n = 0;
  check_err(fm_array_len(NULL, &n), FM_INVALID_ARGUMENT, "NULL array handle", "fm_array_len", NULL);
  check_err(fm_scope_begin(NULL, NULL), FM_INVALID_ARGUMENT, "NULL runtime and out", "fm_scope_begin",
            NULL);
  check_err(fm_runtime_create(NULL, NULL), FM_INVALID_ARGUMENT, "NULL out-pointer",
            "fm_runtime_create", NULL);
  check_true(fm_array_destroy(NULL) == FM_OK && fm_runtime_destroy(NULL) == FM_OK,
             "destroying NULL is a no-op");

  fm_config_t cfg;
  fm_config_init(&cfg);
  cfg.local_bytes = 10; /* below the minimum */
  fm_runtime_t *rt = NULL;
  check_err(fm_runtime_create(&cfg, &rt), FM_INVALID_ARGUMENT, "local_bytes below the minimum",
            "local", NULL);

  /* A caller built against the first fm_config_t (before alloc_wait_ms): its struct, exactly
   * that long on the heap, so the ASan build reports any read past its end. */
  const size_t v1_size = offsetof(fm_config_t, alloc_wait_ms);
  fm_config_init(&cfg);
  cfg.struct_size = v1_size;
  cfg.local_bytes = 1 << 20;
  cfg.far_bytes = 64 << 20;
  cfg.workers = 1;
  void *old_caller = malloc(v1_size);
  memcpy(old_caller, &cfg, v1_size);
  fm_runtime_t *old_rt = NULL;
  check_true(fm_runtime_create((const fm_config_t *)old_caller, &old_rt) == FM_OK && old_rt != NULL,
             "a first-version fm_config_t (shorter struct_size) works");
  check_true(fm_runtime_destroy(old_rt) == FM_OK, "its runtime is destroyed");
  free(old_caller);
  cfg.struct_size = v1_size - 8;
  check_err(fm_runtime_create(&cfg, &rt), FM_INVALID_ARGUMENT,
            "struct_size below the first version", "struct_size", NULL);
  fm_config_init(&cfg);
  cfg.evacuator_threads = 65;
  check_err(fm_runtime_create(&cfg, &rt), FM_INVALID_ARGUMENT, "65 evacuator threads",
            "evacuator_threads", "65");

  fm_config_init(&cfg);
  cfg.local_bytes = 1 << 20;
  cfg.far_bytes = 64 << 20;
  cfg.workers = 1;
  cfg.alloc_wait_ms = 10000;
  cfg.evacuator_threads = 2;
  fm_status_t st = fm_runtime_create(&cfg, &rt);
  check_true(st == FM_OK && rt != NULL, "runtime starts");
  if (st != FM_OK) {
    printf("fm_runtime_create: %s\nc_misuse: FAIL\n", fm_last_error());
    return 1;
  }

  /* Element sizes. */
  fm_array_t *a = NULL;
  check_err(fm_array_create(rt, 0, 10, &a), FM_INVALID_ARGUMENT, "element size 0", "fm_array_create",
            "0");
  check_err(fm_array_create(rt, FM_ELEM_SIZE_MAX + 1, 10, &a), FM_INVALID_ARGUMENT,
            "element size 4097", "fm_array_create", "4097");
  check_true(fm_array_create(rt, sizeof(uint64_t), 16, &a) == FM_OK, "array of 16 uint64_t");

  fm_scope_t *s = NULL;
  check_true(fm_scope_begin(rt, &s) == FM_OK, "scope begins");
  uint64_t v = 7;
  uint32_t small = 0;
  check_err(fm_array_set(a, s, 3, &v, sizeof(uint32_t)), FM_INVALID_ARGUMENT,
            "wrong element size on set (4 for 8)", "fm_array_set", "8");
  check_err(fm_array_get(a, s, 3, &small, sizeof small), FM_INVALID_ARGUMENT,
            "wrong element size on get (4 for 8)", "fm_array_get", "4");

  /* Out-of-range indexes. */
  check_err(fm_array_get(a, s, 16, &v, sizeof v), FM_INVALID_ARGUMENT, "array index 16 of 16",
            "fm_array_get", "16");
  check_err(fm_array_set(a, s, (size_t)-1, &v, sizeof v), FM_INVALID_ARGUMENT,
            "array index SIZE_MAX", "fm_array_set", NULL);
  uint64_t buf[8];
  check_err(fm_array_read(a, s, 12, 8, buf, sizeof(uint64_t)), FM_INVALID_ARGUMENT,
            "bulk read 12..20 of 16", "fm_array_read", "16");
  check_err(fm_array_get(a, s, 0, NULL, sizeof v), FM_INVALID_ARGUMENT, "NULL out buffer",
            "fm_array_get", NULL);

  /* Valid use still works after the errors. */
  v = 99;
  check_true(fm_array_set(a, s, 3, &v, sizeof v) == FM_OK, "set after errors");
  v = 0;
  check_true(fm_array_get(a, s, 3, &v, sizeof v) == FM_OK && v == 99, "get returns what was set");

  /* A scope used from another OS thread. */
  struct cross_thread ct = {a, s, FM_OK, ""};
  pthread_t th;
  check_true(pthread_create(&th, NULL, use_scope_elsewhere, &ct) == 0 && pthread_join(th, NULL) == 0,
             "second OS thread ran");
  printf("    %s (%u): %s\n", fm_status_str(ct.status), (unsigned)ct.status, ct.message);
  check_true(ct.status == FM_INVALID_ARGUMENT && strcasestr(ct.message, "thread") != NULL,
             "a scope used from another OS thread");
  check_true(fm_array_get(a, s, 3, &v, sizeof v) == FM_OK && v == 99,
             "the scope still works on its own thread");

  /* A scope used after it ended. */
  check_true(fm_scope_end(s) == FM_OK, "scope ends");
  check_err(fm_array_get(a, s, 3, &v, sizeof v), FM_INVALID_ARGUMENT, "array get with an ended scope",
            "fm_array_get", "scope");
  check_err(fm_scope_renew(s), FM_INVALID_ARGUMENT, "renewing an ended scope", "fm_scope_renew",
            NULL);
  check_err(fm_scope_end(s), FM_INVALID_ARGUMENT, "ending a scope twice", "fm_scope_end", NULL);

  /* Vector: wrong type of handle, and index past the end. */
  fm_vector_t *vec = NULL;
  check_true(fm_vector_create(rt, sizeof(uint64_t), &vec) == FM_OK, "vector created");
  check_err(fm_array_len((const fm_array_t *)(const void *)vec, &n), FM_INVALID_ARGUMENT,
            "a vector handle passed as an array", "fm_array_len", NULL);
  check_true(fm_scope_begin(rt, &s) == FM_OK, "second scope begins");
  check_err(fm_vector_get(vec, s, 0, &v, sizeof v), FM_INVALID_ARGUMENT,
            "vector index 0 of an empty vector", "fm_vector_get", "0");
  int popped = 1;
  check_true(fm_vector_pop(vec, s, &v, sizeof v, &popped) == FM_OK && popped == 0,
             "pop of an empty vector: OK, popped = 0");

  /* List: out-of-range insert. */
  fm_list_t *list = NULL;
  check_true(fm_list_create(rt, sizeof(uint64_t), &list) == FM_OK, "list created");
  check_err(fm_list_insert(list, s, 5, &v, sizeof v), FM_INVALID_ARGUMENT,
            "list insert at 5 of an empty list", "fm_list_insert", "5");
  check_true(fm_scope_end(s) == FM_OK, "second scope ends");

  /* A runtime destroyed while handles use it refuses, and stays usable. */
  check_err(fm_runtime_destroy(rt), FM_INVALID_ARGUMENT, "destroying a runtime still in use",
            "fm_runtime_destroy", "handle");
  check_true(fm_array_len(a, &n) == FM_OK && n == 16, "the runtime still works after the refusal");

  /* Destroyed handles. */
  check_true(fm_array_destroy(a) == FM_OK, "array destroyed");
  check_err(fm_array_len(a, &n), FM_INVALID_ARGUMENT, "a destroyed array handle", "fm_array_len",
            NULL);
  check_err(fm_array_destroy(a), FM_INVALID_ARGUMENT, "destroying an array twice",
            "fm_array_destroy", NULL);
  check_true(fm_vector_destroy(vec) == FM_OK && fm_list_destroy(list) == FM_OK,
             "vector and list destroyed");

  /* Hash map: wrong key size. */
  fm_hashmap_t *map = NULL;
  check_true(fm_hashmap_create(rt, 8, 16, 0, &map) == FM_OK, "hash map created");
  char value[16] = {0};
  int found = 0;
  check_err(fm_hashmap_get(map, &small, sizeof small, value, sizeof value, &found),
            FM_INVALID_ARGUMENT, "hash map key of 4 bytes for 8", "fm_hashmap_get", "8");
  check_true(fm_hashmap_destroy(map) == FM_OK, "hash map destroyed");

  /* DataFrame: a missing file, steps out of order, a too-small buffer. */
  fm_dataframe_t *df = NULL;
  st = fm_dataframe_load_taxi_csv(rt, "/nonexistent/taxi.csv", &df);
  check_err(st, st == FM_NOT_FOUND ? FM_NOT_FOUND : FM_IO, "loading a missing CSV",
            "/nonexistent/taxi.csv", NULL);
  char csv[64];
  snprintf(csv, sizeof csv, "/tmp/farmem-c-misuse-%ld.csv", (long)getpid());
  check_true(fm_taxi_generate(csv, 500, 7) == FM_OK, "500-row taxi CSV generated");
  check_true(fm_dataframe_load_taxi_csv(rt, csv, &df) == FM_OK, "taxi CSV loaded");
  unlink(csv);
  fm_key_median_t medians[16];
  size_t len = 0;
  check_err(fm_taxi_median_duration_by(df, "pickup_day", medians, 16, &len), FM_NOT_FOUND,
            "step 8 before step 4", "duration", NULL);
  check_err(fm_taxi_median_duration_by(df, "no_such_key", medians, 16, &len), FM_INVALID_ARGUMENT,
            "step 8 with an unknown key", "no_such_key", NULL);
  fm_count_pair_t hours[2];
  len = 0;
  check_err(fm_taxi_pickup_time_parts(df, 0, hours, 2, &len), FM_INVALID_ARGUMENT,
            "hour histogram into 2 entries", "fm_taxi_pickup_time_parts", NULL);
  check_true(len > 2 && len <= 24, "the too-small buffer reports the size needed");
  check_err(fm_taxi_pickup_time_parts(df, 3, NULL, 0, &len), FM_INVALID_ARGUMENT,
            "time part 3 (only 0, 1, 2)", "3", NULL);
  fm_pickup_row_t preview[3];
  len = 0;
  check_err(fm_taxi_pickup_preview(df, preview, 3, &len), FM_INVALID_ARGUMENT,
            "step 7 preview into 3 rows", "fm_taxi_pickup_preview", "cap >= ");
  check_true(len > 3 && len <= 10, "the too-small preview buffer reports the size needed");
  check_err(fm_taxi_pickup_preview(NULL, NULL, 0, &len), FM_INVALID_ARGUMENT,
            "step 7 preview of a NULL frame", "fm_taxi_pickup_preview", "df");
  size_t need = 0;
  check_true(fm_dataframe_column_name(df, 0, NULL, 0, &need) == FM_OK && need == strlen("VendorID") + 1,
             "column 0 name size asked with NULL buffer");
  check_err(fm_dataframe_column_name(df, 1000, NULL, 0, &need), FM_INVALID_ARGUMENT,
            "column 1000 of the frame", "1000", NULL);
  check_true(fm_dataframe_destroy(df) == FM_OK, "dataframe destroyed");

  check_true(fm_runtime_destroy(rt) == FM_OK, "runtime destroyed once nothing uses it");
  check_err(fm_runtime_destroy(rt), FM_INVALID_ARGUMENT, "destroying a runtime twice",
            "fm_runtime_destroy", NULL);
  fm_metrics_t metrics;
  memset(&metrics, 0, sizeof metrics);
  metrics.struct_size = sizeof metrics;
  check_err(fm_runtime_metrics(rt, &metrics), FM_INVALID_ARGUMENT, "metrics of a destroyed runtime",
            "fm_runtime_metrics", "stale");

  printf("%d check(s) failed\n", failures);
  printf("c_misuse: %s\n", failures == 0 ? "PASS" : "FAIL");
  return failures == 0 ? 0 : 1;
}
