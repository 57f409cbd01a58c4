/* farmem/dataframe.h -- a columnar DataFrame in far memory and AIFM's nine NYC-taxi steps.
 *
 * A dataframe is used by one call at a time (calls are serialised by a lock that parks green
 * threads); it keeps its runtime from being destroyed until it is destroyed. The steps run on the
 * calling thread (an OS thread or a green thread).
 */
#ifndef FARMEM_DATAFRAME_H
#define FARMEM_DATAFRAME_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fm_dataframe fm_dataframe_t;

/* Loads a taxi CSV (the taxi schema: VendorID, tpep_pickup_datetime, ...) into far-memory columns
 * of rt. FM_IO for a missing or unreadable file, FM_PARSE for a malformed row. */
fm_status_t fm_dataframe_load_taxi_csv(fm_runtime_t *rt, const char *path, fm_dataframe_t **out);
/* Writes a seeded generated taxi CSV with `rows` rows to path (the generator farmem-demo uses). */
fm_status_t fm_taxi_generate(const char *path, uint64_t rows, uint64_t seed);
fm_status_t fm_dataframe_destroy(fm_dataframe_t *df);
fm_status_t fm_dataframe_rows(const fm_dataframe_t *df, uint64_t *out);
fm_status_t fm_dataframe_column_count(const fm_dataframe_t *df, size_t *out);
/* Column name i into buf (NUL-terminated, truncated to cap bytes including the NUL); *needed =
 * full length + 1. buf may be NULL with cap 0 to ask for the size. needed may be NULL. */
fm_status_t fm_dataframe_column_name(const fm_dataframe_t *df, size_t i, char *buf, size_t cap, size_t *needed);

/* ---- the nine taxi steps --------------------------------------------------------------------- */
/* Steps fill caller-owned structs. Variable-length results go into caller arrays of `cap`
 * entries, with *len = the number of entries. To ask for the size, pass out = NULL and cap = 0:
 * FM_OK with *len = the number needed (the step is computed). A cap that is too small gives
 * FM_INVALID_ARGUMENT with *len = the number needed and nothing written to out. Steps 4, 6 and 7
 * add (or replace) derived columns that 8 and 9 need (FM_NOT_FOUND naming the column otherwise);
 * running a step again recomputes it with identical results. */
typedef struct fm_count_pair {
  uint64_t key;
  uint64_t count;
} fm_count_pair_t;
typedef struct fm_key_median {
  uint64_t key;
  double median;
} fm_key_median_t;

/* Step 1: *count = rows with a VendorID; unique[0..*len] = the distinct vendor ids, ascending. */
fm_status_t fm_taxi_vendor_summary(fm_dataframe_t *df, uint64_t *count, int64_t *unique, size_t cap, size_t *len);
/* Steps 2, 3: (passenger_count, trips) of one vendor's trips, ascending. */
fm_status_t fm_taxi_passenger_histogram(fm_dataframe_t *df, int64_t vendor, fm_count_pair_t *out, size_t cap, size_t *len);

typedef struct fm_duration_stats {
  int64_t max, min; /* seconds */
  double mean;
  int has_values;   /* 0 for an empty frame (then max, min and mean are 0) */
} fm_duration_stats_t;
/* Step 4: adds the "duration" column (dropoff - pickup, seconds). */
fm_status_t fm_taxi_trip_duration(fm_dataframe_t *df, fm_duration_stats_t *out);

typedef struct fm_store_and_forward {
  uint64_t rows, n_rows;
  double n_share; /* n_rows / rows, 0 for an empty frame */
} fm_store_and_forward_t;
/* Step 5: the N share, and y_vendors[0..*len] = the vendors of the Y rows, ascending. */
fm_status_t fm_taxi_store_and_forward(fm_dataframe_t *df, fm_store_and_forward_t *out, int64_t *y_vendors, size_t cap, size_t *len);
/* Step 6: adds "haversine_distance" (km) and counts the trips over 100 km. */
fm_status_t fm_taxi_long_trips(fm_dataframe_t *df, uint64_t *over_100km);
/* Step 7: adds "pickup_hour", "pickup_day" (0 = Sunday), "pickup_month"; returns one histogram:
 * which = 0 hours, 1 days, 2 months. */
fm_status_t fm_taxi_pickup_time_parts(fm_dataframe_t *df, int which, fm_count_pair_t *out, size_t cap, size_t *len);

typedef struct fm_pickup_row {
  int64_t pickup; /* tpep_pickup_datetime, seconds since 1970-01-01 00:00:00 (the file's wall clock
                   * read as UTC: format it with gmtime, not localtime) */
  uint8_t hour;   /* pickup_hour, 0..=23 */
  uint8_t day;    /* pickup_day, 0 = Sunday .. 6 = Saturday */
  uint8_t month;  /* pickup_month, 1..=12 */
} fm_pickup_row_t;
/* Step 7's preview: runs step 7 (as fm_taxi_pickup_time_parts does) and writes its first rows,
 * out[0..*len] with *len = min(10, rows), in frame order -- the table farmem-demo prints under
 * step 7. Sized like the other steps: out = NULL, cap = 0 asks for *len. */
fm_status_t fm_taxi_pickup_preview(fm_dataframe_t *df, fm_pickup_row_t *out, size_t cap, size_t *len);
/* Steps 8, 9: median "duration" per key = "pickup_day" or "pickup_month", ascending by key. */
fm_status_t fm_taxi_median_duration_by(fm_dataframe_t *df, const char *key, fm_key_median_t *out, size_t cap, size_t *len);
/* All nine steps, printing exactly what farmem-demo prints for them (taxi::run_all) to stdout
 * (C stdio is flushed first, so output stays in order). */
fm_status_t fm_taxi_run_all(fm_dataframe_t *df);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FARMEM_DATAFRAME_H */
