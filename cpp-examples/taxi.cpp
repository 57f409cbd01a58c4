// taxi: AIFM's nine-step NYC-taxi analysis (AIFM §6.2) in C++ over farmem's DataFrame API, with
// most of the frame in far memory.
//
//   taxi --generate ROWS CSV   writes the seeded generated file farmem-demo uses (seed 42)
//   taxi [--local-bytes N] CSV runs the nine steps through the C++ step wrappers and prints
//                              each result in exactly the format of farmem-demo (the Display
//                              impls of runtime/dataframe/src/taxi.rs), step 7's preview of
//                              the first rows included
//   taxi --reference CSV       has the library print the nine steps itself (fm_taxi_run_all)
//
// Lines of our own (load, traffic) start with "taxi:" so the comparison script can drop them.
// tests/taxi-compare.sh diffs the result lines against --reference and farmem-demo.
#include <farmem.hpp>

#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

/// Rust's `{:?}` of a `Vec<i64>`: `[1, 2]`.
std::string debug_list(const std::vector<std::int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(v[i]);
  }
  return s + "]";
}

/// Rust's `{}` of an f64: the shortest digits that round-trip, never an exponent.
std::string rust_f64(double v) {
  char buf[400];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  if (res.ec != std::errc()) return "?";
  return std::string(buf, res.ptr);
}

/// `YYYY-MM-DD HH:MM:SS` of seconds since the epoch, as farmem's `format_timestamp` writes it
/// (the file's wall clock read as UTC; Howard Hinnant's `civil_from_days`, years clamped to
/// 0..=9999).
std::string format_timestamp(std::int64_t ts) {
  constexpr std::int64_t kDay = 86400;
  std::int64_t days = ts / kDay;
  std::int64_t secs = ts % kDay;
  if (secs < 0) {
    secs += kDay;
    days -= 1;
  }
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
  std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  year = year < 0 ? 0 : (year > 9999 ? 9999 : year);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d", static_cast<int>(year),
                static_cast<int>(month), static_cast<int>(day), static_cast<int>(secs / 3600),
                static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60));
  return buf;
}

/// `label: k=n k=n` (taxi.rs `write_counts`).
void print_counts(const char* label, const std::vector<farmem::taxi::Count>& counts) {
  std::printf("%s:", label);
  for (const auto& [k, n] : counts) {
    std::printf(" %" PRIu64 "=%" PRIu64, k, n);
  }
  std::printf("\n");
}

/// The step header farmem-demo prints: `== NAME (T ms)`.
void header(const char* name, Clock::time_point started) {
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  std::printf("== %s (%.1f ms)\n", name, ms);
}

void run_steps(farmem::DataFrame& df) {
  namespace taxi = farmem::taxi;
  auto t = Clock::now();
  const taxi::VendorSummary vendors = taxi::vendor_summary(df);
  header("1 vendor ids", t);
  std::printf("VendorID values: %" PRIu64 "\n", vendors.count);
  std::printf("unique VendorIDs: %zu %s\n", vendors.unique.size(), debug_list(vendors.unique).c_str());

  for (std::int64_t vendor : {1, 2}) {
    t = Clock::now();
    const taxi::PassengerHistogram h = taxi::passenger_histogram(df, vendor);
    header(vendor == 1 ? "2 passengers, vendor 1" : "3 passengers, vendor 2", t);
    const std::string label = "passenger_count of vendor " + std::to_string(h.vendor);
    print_counts(label.c_str(), h.counts);
  }

  t = Clock::now();
  const taxi::DurationStats d = taxi::trip_duration(df);
  header("4 trip duration", t);
  if (d.max && d.min && d.mean) {
    std::printf("duration max %" PRId64 " s, min %" PRId64 " s, mean %.2f s\n", *d.max, *d.min,
                *d.mean);
  } else {
    std::printf("duration: no trips\n");
  }

  t = Clock::now();
  const taxi::StoreAndForward sf = taxi::store_and_forward(df);
  header("5 store and forward", t);
  std::printf("store_and_fwd_flag N: %" PRIu64 " of %" PRIu64 " (%.4f%%)\n", sf.n_rows, sf.rows,
              sf.n_share * 100.0);
  std::printf("vendors with flag Y: %s\n", debug_list(sf.y_vendors).c_str());

  t = Clock::now();
  const std::uint64_t long_trips = taxi::long_trips(df);
  header("6 haversine distance", t);
  std::printf("trips over 100 km: %" PRIu64 "\n", long_trips);

  t = Clock::now();
  const auto hours = taxi::pickup_time_parts(df, taxi::TimePart::Hour);
  const auto days = taxi::pickup_time_parts(df, taxi::TimePart::Day);
  const auto months = taxi::pickup_time_parts(df, taxi::TimePart::Month);
  const std::vector<taxi::PickupRow> preview = taxi::pickup_preview(df);
  header("7 pickup hour/day/month", t);
  print_counts("pickup_hour", hours);
  print_counts("pickup_day (0 = Sunday)", days);
  print_counts("pickup_month", months);
  std::printf("tpep_pickup_datetime  pickup_hour pickup_day pickup_month\n");
  for (const taxi::PickupRow& r : preview) {
    std::printf("%s  %11u %10u %12u\n", format_timestamp(r.pickup).c_str(),
                static_cast<unsigned>(r.hour), static_cast<unsigned>(r.day),
                static_cast<unsigned>(r.month));
  }

  for (const char* key : {"pickup_day", "pickup_month"}) {
    t = Clock::now();
    const taxi::DurationMedians m = taxi::median_duration_by(df, key);
    header(std::strcmp(key, "pickup_day") == 0 ? "8 median duration by day"
                                               : "9 median duration by month",
           t);
    std::printf("median duration by %s:", m.key.c_str());
    for (const auto& [k, median] : m.medians) {
      std::printf(" %" PRIu64 "=%s", k, rust_f64(median).c_str());
    }
    std::printf("\n");
  }
}

int usage() {
  std::fprintf(stderr,
               "usage: taxi --generate ROWS CSV | taxi [--local-bytes N] [--reference] CSV\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t local_bytes = 4u << 20;
  bool reference = false;
  std::string csv;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--generate" && i + 2 < argc) {
        const std::uint64_t rows = std::strtoull(argv[i + 1], nullptr, 10);
        farmem::generate_taxi_csv(argv[i + 2], rows, 42);
        std::printf("taxi: generated %" PRIu64 " rows into %s\n", rows, argv[i + 2]);
        return 0;
      } else if (a == "--local-bytes" && i + 1 < argc) {
        local_bytes = std::strtoull(argv[++i], nullptr, 10);
      } else if (a == "--reference") {
        reference = true;
      } else if (!a.empty() && a[0] != '-' && csv.empty()) {
        csv = a;
      } else {
        return usage();
      }
    }
    if (csv.empty()) return usage();

    farmem::Runtime rt(farmem::Config().local_bytes(local_bytes).far_bytes(1ull << 30).workers(2));
    bool remote = false;
    rt.run([&] {
      farmem::DataFrame df = farmem::DataFrame::load_taxi_csv(rt, csv);
      const std::vector<std::string> names = df.column_names();
      std::printf("taxi: loaded %" PRIu64 " rows, %zu columns (first %s) into far memory\n",
                  df.rows(), names.size(), names.empty() ? "-" : names.front().c_str());
      std::fflush(stdout);
      if (reference) {
        farmem::taxi::run_all(df);
      } else {
        run_steps(df);
      }
      std::fflush(stdout);
      const std::vector<std::string> after = df.column_names();
      std::printf("taxi: %zu columns after the steps (last %s)\n", after.size(),
                  after.empty() ? "-" : after.back().c_str());
      const farmem::Metrics m = rt.metrics();
      remote = m.bytes_written_back > m.local_bytes_budget && m.bytes_fetched > 0;
      std::printf("taxi: local budget %" PRIu64 " B, written back %" PRIu64 " B, fetched %" PRIu64
                  " B, misses %" PRIu64 "\n",
                  m.local_bytes_budget, m.bytes_written_back, m.bytes_fetched, m.misses);
    });
    std::printf("taxi: remote: %s\n", remote ? "yes" : "no");
    rt.close();
    return remote ? 0 : 1;
  } catch (const farmem::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "taxi: farmem error %s: %s\n", e.kind_name(), e.what());
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "taxi: error: %s\n", e.what());
  }
  return 1;
}
