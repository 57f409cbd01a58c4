/**
 * @file farmem/dataframe.hpp
 * @brief The far-memory DataFrame and AIFM's nine NYC-taxi steps over `farmem/dataframe.h`.
 *
 * Design note
 * -----------
 * Builds on `farmem/core.hpp` (errors are exceptions, one owner per handle). A DataFrame is
 * move-only and used by one call at a time (the library serialises calls). Each step in
 * farmem::taxi is one C call returning plain values: variable-length results go through
 * taxi::detail::sized_call, which starts with a buffer large enough for every result over a
 * `u8` key and grows it when the library answers FM_INVALID_ARGUMENT with the size needed, so a
 * step with side effects (4, 6, 7 add columns) normally runs once.
 */
#ifndef FARMEM_DATAFRAME_HPP
#define FARMEM_DATAFRAME_HPP

#include "core.hpp"
#include "dataframe.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

/// farmem's C++ interface (see `farmem/core.hpp`).
namespace farmem {

/// Writes a seeded generated taxi CSV of `rows` rows to `path` (the generator `farmem-demo`
/// uses, so the same rows and seed give the same file).
inline void generate_taxi_csv(const std::string& path, std::uint64_t rows,
                              std::uint64_t seed = 42) {
  check(fm_taxi_generate(path.c_str(), rows, seed));
}

/// A columnar DataFrame whose columns live in a runtime's far memory.
class DataFrame {
 public:
  /// Loads a taxi CSV (NYC TLC yellow-trip layout) into far-memory columns of `rt`.
  static DataFrame load_taxi_csv(const Runtime& rt, const std::string& path) {
    fm_dataframe_t* df = nullptr;
    check(fm_dataframe_load_taxi_csv(rt.get(), path.c_str(), &df));
    return DataFrame(df);
  }
  /// Number of rows.
  std::uint64_t rows() const {
    std::uint64_t n = 0;
    check(fm_dataframe_rows(df_.get(), &n));
    return n;
  }
  /// Column names in order (derived columns the taxi steps add included).
  std::vector<std::string> column_names() const {
    std::size_t count = 0;
    check(fm_dataframe_column_count(df_.get(), &count));
    std::vector<std::string> names;
    names.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      std::size_t needed = 0;
      check(fm_dataframe_column_name(df_.get(), i, nullptr, 0, &needed));
      std::string buf(needed, '\0');
      check(fm_dataframe_column_name(df_.get(), i, buf.data(), buf.size(), &needed));
      buf.resize(needed > 0 ? needed - 1 : 0);
      names.push_back(std::move(buf));
    }
    return names;
  }
  /// The C handle.
  fm_dataframe_t* handle() const noexcept { return df_.get(); }

 private:
  explicit DataFrame(fm_dataframe_t* df) : df_(df) {}
  using H = detail::Handle<fm_dataframe_t, &fm_dataframe_destroy>;
  H df_;
};

/// The nine steps of AIFM's NYC-taxi analysis (AIFM §6.2) over a DataFrame loaded with
/// DataFrame::load_taxi_csv(). Steps 4, 6 and 7 add columns that steps 8 and 9 need (they throw
/// ErrorKind::NotFound naming the column otherwise).
namespace taxi {

/// `(key, trips)` of a histogram.
using Count = std::pair<std::uint64_t, std::uint64_t>;

/// Step 1: how many `VendorID` values there are and which.
struct VendorSummary {
  std::uint64_t count = 0;        ///< Rows with a `VendorID` (all of them).
  std::vector<std::int64_t> unique;  ///< Distinct vendor ids, ascending.
};

/// Steps 2 and 3: the `passenger_count` histogram of one vendor's trips.
struct PassengerHistogram {
  std::int64_t vendor = 0;        ///< The vendor.
  std::vector<Count> counts;      ///< `(passenger_count, trips)`, ascending.
};

/// Step 4: trip duration statistics in seconds; empty optionals for an empty frame.
struct DurationStats {
  std::optional<std::int64_t> max;  ///< Longest duration.
  std::optional<std::int64_t> min;  ///< Shortest duration.
  std::optional<double> mean;       ///< Mean duration.
};

/// Step 5: the store-and-forward flag.
struct StoreAndForward {
  std::uint64_t rows = 0;            ///< Rows in the frame.
  std::uint64_t n_rows = 0;          ///< Rows with flag `N`.
  double n_share = 0.0;              ///< `n_rows / rows` (0 for an empty frame).
  std::vector<std::int64_t> y_vendors;  ///< Distinct vendors of the `Y` rows, ascending.
};

/// Which pickup time part step 7 histograms.
enum class TimePart : int {
  Hour = 0,   ///< Hour of day 0..=23 (`pickup_hour`).
  Day = 1,    ///< Day of week, 0 = Sunday (`pickup_day`).
  Month = 2,  ///< Month 1..=12 (`pickup_month`).
};

/// One row of step 7's preview (the table `farmem-demo` prints under step 7).
struct PickupRow {
  std::int64_t pickup = 0;  ///< `tpep_pickup_datetime`, seconds since the epoch (as UTC).
  std::uint8_t hour = 0;    ///< `pickup_hour`, 0..=23.
  std::uint8_t day = 0;     ///< `pickup_day`, 0 = Sunday.
  std::uint8_t month = 0;   ///< `pickup_month`, 1..=12.
};

/// Steps 8 and 9: median trip duration per key.
struct DurationMedians {
  std::string key;                                   ///< `pickup_day` or `pickup_month`.
  std::vector<std::pair<std::uint64_t, double>> medians;  ///< `(key, median s)`, ascending.
};

namespace detail {
/// Runs a C step that fills `cap` items of `out` and sets `*len`, growing the buffer when the
/// library answers FM_INVALID_ARGUMENT with a larger `*len`. `guess` is large enough for every
/// histogram over a `u8` key, so steps with side effects run once.
template <typename Item, typename Call>
std::vector<Item> sized_call(std::size_t guess, Call&& call) {
  std::vector<Item> buf(guess);
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::size_t len = 0;
    fm_status_t st = call(buf.data(), buf.size(), &len);
    if (st == FM_OK) {
      buf.resize(len < buf.size() ? len : buf.size());
      return buf;
    }
    if (st == FM_INVALID_ARGUMENT && len > buf.size()) {
      buf.resize(len);
      continue;
    }
    check(st);
  }
  throw Error(ErrorKind::Internal, "taxi step: result size kept growing between calls");
}
}  // namespace detail

/// Step 1: count of `VendorID` and its unique values.
inline VendorSummary vendor_summary(DataFrame& df) {
  VendorSummary r;
  r.unique = detail::sized_call<std::int64_t>(64, [&](std::int64_t* out, std::size_t cap,
                                                       std::size_t* len) {
    return fm_taxi_vendor_summary(df.handle(), &r.count, out, cap, len);
  });
  return r;
}

/// Steps 2–3: the `passenger_count` histogram of the trips of `vendor`.
inline PassengerHistogram passenger_histogram(DataFrame& df, std::int64_t vendor) {
  PassengerHistogram r;
  r.vendor = vendor;
  auto pairs = detail::sized_call<fm_count_pair_t>(
      256, [&](fm_count_pair_t* out, std::size_t cap, std::size_t* len) {
        return fm_taxi_passenger_histogram(df.handle(), vendor, out, cap, len);
      });
  for (const auto& p : pairs) r.counts.emplace_back(p.key, p.count);
  return r;
}

/// Step 4: adds `duration` and returns its max, min and mean.
inline DurationStats trip_duration(DataFrame& df) {
  fm_duration_stats_t s{};
  check(fm_taxi_trip_duration(df.handle(), &s));
  DurationStats r;
  if (s.has_values) {
    r.max = s.max;
    r.min = s.min;
    r.mean = s.mean;
  }
  return r;
}

/// Step 5: share of flag `N` and the vendors of the `Y` rows.
inline StoreAndForward store_and_forward(DataFrame& df) {
  fm_store_and_forward_t s{};
  StoreAndForward r;
  r.y_vendors = detail::sized_call<std::int64_t>(
      64, [&](std::int64_t* out, std::size_t cap, std::size_t* len) {
        return fm_taxi_store_and_forward(df.handle(), &s, out, cap, len);
      });
  r.rows = s.rows;
  r.n_rows = s.n_rows;
  r.n_share = s.n_share;
  return r;
}

/// Step 6: adds `haversine_distance` and counts the trips over 100 km.
inline std::uint64_t long_trips(DataFrame& df) {
  std::uint64_t n = 0;
  check(fm_taxi_long_trips(df.handle(), &n));
  return n;
}

/// Step 7: the histogram of one pickup time part (adding its column).
inline std::vector<Count> pickup_time_parts(DataFrame& df, TimePart which) {
  auto pairs = detail::sized_call<fm_count_pair_t>(
      256, [&](fm_count_pair_t* out, std::size_t cap, std::size_t* len) {
        return fm_taxi_pickup_time_parts(df.handle(), static_cast<int>(which), out, cap, len);
      });
  std::vector<Count> r;
  for (const auto& p : pairs) r.emplace_back(p.key, p.count);
  return r;
}

/// Step 7's preview: its first (up to 10) rows, in frame order (runs step 7 again, which
/// recomputes its columns identically).
inline std::vector<PickupRow> pickup_preview(DataFrame& df) {
  auto rows = detail::sized_call<fm_pickup_row_t>(
      16, [&](fm_pickup_row_t* out, std::size_t cap, std::size_t* len) {
        return fm_taxi_pickup_preview(df.handle(), out, cap, len);
      });
  std::vector<PickupRow> r;
  r.reserve(rows.size());
  for (const auto& row : rows) r.push_back(PickupRow{row.pickup, row.hour, row.day, row.month});
  return r;
}

/// Steps 8 (`"pickup_day"`) and 9 (`"pickup_month"`): median `duration` per key.
inline DurationMedians median_duration_by(DataFrame& df, const std::string& key) {
  DurationMedians r;
  r.key = key;
  auto pairs = detail::sized_call<fm_key_median_t>(
      256, [&](fm_key_median_t* out, std::size_t cap, std::size_t* len) {
        return fm_taxi_median_duration_by(df.handle(), key.c_str(), out, cap, len);
      });
  for (const auto& p : pairs) r.medians.emplace_back(p.key, p.median);
  return r;
}

/// Runs all nine steps in the library, printing exactly what `farmem-demo` prints for them.
inline void run_all(DataFrame& df) { check(fm_taxi_run_all(df.handle())); }

}  // namespace taxi
}  // namespace farmem

#endif  // FARMEM_DATAFRAME_HPP
