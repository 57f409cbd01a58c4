/* A C program over libfarmem: containers, errors, green threads and the taxi steps.
 * Usage: smoke TAXI_CSV_PATH. Prints the taxi report (fm_taxi_run_all) between the lines
 * "-- report --" and "-- end --", then "smoke: ok"; exits 1 with a message on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farmem.h"

#define CHECK(call)                                                                   \
  do {                                                                                \
    fm_status_t st_ = (call);                                                         \
    if (st_ != FM_OK) {                                                               \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,             \
              fm_status_str(st_), fm_last_error());                                   \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

#define EXPECT(cond)                                                                  \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);             \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

typedef struct {
  fm_runtime_t *rt;
  fm_vector_t *v;
  uint64_t base;
} job_t;

/* Pushes 1000 values base..base+999 into a vector of its own, returns their count. */
static int push_values(void *arg) {
  job_t *job = (job_t *)arg;
  fm_scope_t *s = NULL;
  if (fm_scope_begin(job->rt, &s) != FM_OK) return -1;
  for (uint64_t i = 0; i < 1000; i++) {
    uint64_t v = job->base + i;
    if (fm_vector_push(job->v, s, &v, sizeof v) != FM_OK) return -1;
    if (i % 100 == 0) fm_yield();
  }
  if (fm_scope_end(s) != FM_OK) return -1;
  return 1000;
}

/* Runs three push_values tasks as green threads of the caller's runtime and joins them. */
static int fan_out(void *arg) {
  job_t *jobs = (job_t *)arg;
  fm_task_t *tasks[3];
  for (int k = 0; k < 3; k++)
    if (fm_spawn(NULL, push_values, &jobs[k], &tasks[k]) != FM_OK) return -1;
  int total = 0;
  for (int k = 0; k < 3; k++) {
    int r = 0;
    if (fm_task_join(tasks[k], &r) != FM_OK) return -1;
    total += r;
  }
  return total;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: smoke TAXI_CSV_PATH\n");
    return 2;
  }
  EXPECT(fm_abi_version() == FM_ABI_VERSION);
  EXPECT(strcmp(fm_status_str(FM_OUT_OF_FAR_MEMORY), "FM_OUT_OF_FAR_MEMORY") == 0);

  fm_config_t cfg;
  fm_config_init(&cfg);
  cfg.local_bytes = 256 << 10;
  cfg.far_bytes = 256 << 20;
  cfg.workers = 2;
  fm_runtime_t *rt = NULL;
  CHECK(fm_runtime_create(&cfg, &rt));

  /* An array of 200k uint64_t (1.6 MB) through a 256 KiB local budget. */
  size_t n = 200000;
  fm_array_t *a = NULL;
  CHECK(fm_array_create(rt, sizeof(uint64_t), n, &a));
  uint64_t *buf = malloc(n * sizeof *buf);
  EXPECT(buf != NULL);
  for (size_t i = 0; i < n; i++) buf[i] = i * 7;
  fm_scope_t *s = NULL;
  CHECK(fm_scope_begin(rt, &s));
  CHECK(fm_array_write(a, s, 0, n, buf, sizeof *buf));
  memset(buf, 0, n * sizeof *buf);
  CHECK(fm_array_read(a, s, 0, n, buf, sizeof *buf));
  for (size_t i = 0; i < n; i++) EXPECT(buf[i] == i * 7);
  uint64_t v = 99;
  CHECK(fm_array_set(a, s, 12345, &v, sizeof v));
  v = 0;
  CHECK(fm_array_get(a, s, 12345, &v, sizeof v));
  EXPECT(v == 99);

  /* Errors: a status and a message, never a crash. */
  EXPECT(fm_array_get(a, s, n, &v, sizeof v) == FM_INVALID_ARGUMENT);
  EXPECT(strstr(fm_last_error(), "fm_array_get") != NULL);
  EXPECT(strstr(fm_last_error(), "out of bounds") != NULL);
  EXPECT(fm_array_get(a, s, 0, &v, 4) == FM_INVALID_ARGUMENT);
  EXPECT(fm_array_get(NULL, s, 0, &v, sizeof v) == FM_INVALID_ARGUMENT);
  EXPECT(fm_runtime_destroy(rt) == FM_INVALID_ARGUMENT);
  EXPECT(strstr(fm_last_error(), "still use this runtime") != NULL);
  CHECK(fm_scope_end(s));
  EXPECT(fm_scope_end(s) == FM_INVALID_ARGUMENT);
  CHECK(fm_array_destroy(a));
  EXPECT(fm_array_destroy(a) == FM_INVALID_ARGUMENT);
  free(buf);

  /* Green threads: three tasks fill three vectors. */
  job_t jobs[3];
  for (int k = 0; k < 3; k++) {
    jobs[k].rt = rt;
    jobs[k].base = (uint64_t)k * 1000000;
    CHECK(fm_vector_create(rt, sizeof(uint64_t), &jobs[k].v));
  }
  int total = 0;
  CHECK(fm_runtime_run(rt, fan_out, jobs, &total));
  EXPECT(total == 3000);
  CHECK(fm_scope_begin(rt, &s));
  for (int k = 0; k < 3; k++) {
    size_t len = 0;
    CHECK(fm_vector_len(jobs[k].v, &len));
    EXPECT(len == 1000);
    CHECK(fm_vector_get(jobs[k].v, s, 999, &v, sizeof v));
    EXPECT(v == jobs[k].base + 999);
    CHECK(fm_vector_destroy(jobs[k].v));
  }
  CHECK(fm_scope_end(s));

  /* A queue and a hash map. */
  fm_queue_t *q = NULL;
  CHECK(fm_queue_create(rt, 3, &q));
  CHECK(fm_queue_push(q, "abc", 3));
  CHECK(fm_queue_push(q, "xyz", 3));
  char three[3];
  int popped = 0;
  CHECK(fm_queue_pop(q, three, 3, &popped));
  EXPECT(popped == 1 && memcmp(three, "abc", 3) == 0);
  CHECK(fm_queue_destroy(q));
  fm_hashmap_t *m = NULL;
  CHECK(fm_hashmap_create(rt, sizeof(uint32_t), sizeof(double), 1 << 16, &m));
  for (uint32_t k = 0; k < 500; k++) {
    double d = k / 2.0;
    CHECK(fm_hashmap_put(m, &k, sizeof k, &d, sizeof d, NULL));
  }
  uint32_t key = 321;
  double d = 0;
  int found = 0;
  CHECK(fm_hashmap_get(m, &key, sizeof key, &d, sizeof d, &found));
  EXPECT(found == 1 && d == 160.5);
  CHECK(fm_hashmap_destroy(m));

  /* The taxi steps on a generated CSV. */
  CHECK(fm_taxi_generate(argv[1], 3000, 11));
  fm_dataframe_t *df = NULL;
  CHECK(fm_dataframe_load_taxi_csv(rt, argv[1], &df));
  uint64_t rows = 0;
  CHECK(fm_dataframe_rows(df, &rows));
  EXPECT(rows == 3000);
  size_t len = 0;
  uint64_t count = 0;
  CHECK(fm_taxi_vendor_summary(df, &count, NULL, 0, &len));
  int64_t *unique = malloc(len * sizeof *unique);
  EXPECT(unique != NULL);
  CHECK(fm_taxi_vendor_summary(df, &count, unique, len, &len));
  EXPECT(count == 3000 && len >= 1);
  free(unique);
  fm_key_median_t medians[16];
  EXPECT(fm_taxi_median_duration_by(df, "pickup_day", medians, 16, &len) == FM_NOT_FOUND);
  printf("-- report --\n");
  CHECK(fm_taxi_run_all(df));
  printf("-- end --\n");
  CHECK(fm_taxi_median_duration_by(df, "pickup_day", medians, 16, &len));
  EXPECT(len >= 1 && len <= 7);
  CHECK(fm_dataframe_destroy(df));

  fm_metrics_t metrics;
  memset(&metrics, 0, sizeof metrics);
  metrics.struct_size = sizeof metrics;
  CHECK(fm_runtime_metrics(rt, &metrics));
  EXPECT(metrics.bytes_written_back > 0);
  EXPECT(metrics.local_bytes_budget == 256 << 10);
  CHECK(fm_runtime_destroy(rt));
  EXPECT(fm_runtime_destroy(rt) == FM_INVALID_ARGUMENT);
  CHECK(fm_runtime_destroy(NULL));
  printf("smoke: ok\n");
  return 0;
}
