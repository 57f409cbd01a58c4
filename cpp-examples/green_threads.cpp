// green_threads: many green threads each walk a far-memory array that is mostly remote.
//
// AIFM §4.2: a far-memory miss parks only the green thread that missed; its worker runs other
// green threads while the fetch is in flight. With a single worker thread, green threads only
// overlap when one of them parks, so "max in flight > 1" below shows that misses park the
// green thread rather than block the worker (a green thread here never yields on its own). Each
// thread's sum is checked against the closed form, and an exception thrown on a green thread
// must come back from join(). Prints "green_threads: PASS" last when every check held.
#include <farmem.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kThreads = 16;
constexpr std::size_t kElements = 128 * 1024;  // 1 MiB per array, 16 MiB in all
constexpr std::uint64_t kLocalBytes = 4u << 20;

std::uint64_t value_at(std::size_t thread, std::size_t i) {
  return static_cast<std::uint64_t>(thread) * 1000003u + static_cast<std::uint64_t>(i);
}

std::uint64_t expected_sum(std::size_t thread) {
  const std::uint64_t n = kElements;
  return static_cast<std::uint64_t>(thread) * 1000003u * n + n * (n - 1) / 2;
}

}  // namespace

int main() {
  bool ok = true;
  try {
    // One worker: green threads overlap only by parking.
    farmem::Runtime rt(farmem::Config().local_bytes(kLocalBytes).far_bytes(256u << 20).workers(1));

    // Fill the arrays (bulk writes; the evacuator pushes most of them out).
    std::vector<farmem::Array<std::uint64_t>> arrays;
    rt.run([&] {
      std::vector<std::uint64_t> buf(4096);
      for (std::size_t t = 0; t < kThreads; ++t) {
        arrays.emplace_back(rt, kElements);
        farmem::DerefScope scope(rt);
        for (std::size_t start = 0; start < kElements; start += buf.size()) {
          for (std::size_t j = 0; j < buf.size(); ++j) buf[j] = value_at(t, start + j);
          arrays.back().write(start, buf, scope);
          scope.renew();
        }
      }
    });
    const farmem::Metrics before = rt.metrics();

    // Walk them element by element, one green thread per array, all spawned before any runs.
    std::atomic<int> in_flight{0};
    std::atomic<int> max_in_flight{0};
    std::vector<std::uint64_t> sums = rt.run([&] {
      std::vector<farmem::Task<std::uint64_t>> tasks;
      for (std::size_t t = 0; t < kThreads; ++t) {
        tasks.push_back(farmem::spawn(rt, [&, t] {
          const int now = in_flight.fetch_add(1) + 1;
          int seen = max_in_flight.load();
          while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
          }
          farmem::DerefScope scope(rt);
          std::uint64_t sum = 0;
          for (std::size_t i = 0; i < kElements; ++i) {
            sum += arrays[t].get(i, scope);
            if (i % 1024 == 1023) scope.renew();
          }
          in_flight.fetch_sub(1);
          return sum;
        }));
      }
      std::vector<std::uint64_t> out;
      for (auto& task : tasks) out.push_back(task.join());
      return out;
    });
    std::size_t right = 0;
    for (std::size_t t = 0; t < kThreads; ++t) right += sums[t] == expected_sum(t) ? 1 : 0;
    std::printf("%zu green threads, %zu sums right, max in flight on one worker: %d\n", kThreads,
                right, max_in_flight.load());
    ok = ok && right == kThreads && max_in_flight.load() > 1;

    const farmem::Metrics after = rt.metrics();
    const std::uint64_t data_bytes = kThreads * kElements * sizeof(std::uint64_t);
    const std::uint64_t fetched = after.bytes_fetched - before.bytes_fetched;
    const bool remote = after.local_bytes_budget * 4 <= data_bytes && fetched >= data_bytes / 2;
    std::printf("local budget %llu B, data %llu B, fetched during the walk %llu B, misses %llu\n",
                static_cast<unsigned long long>(after.local_bytes_budget),
                static_cast<unsigned long long>(data_bytes),
                static_cast<unsigned long long>(fetched),
                static_cast<unsigned long long>(after.misses - before.misses));
    std::printf("remote: %s\n", remote ? "yes" : "no");
    ok = ok && remote;

    // Exceptions cross from the green thread to join(), C++ ones and farmem::Error alike.
    bool cpp_rethrown = false;
    bool farmem_rethrown = false;
    auto thrower = farmem::spawn(rt, []() -> int { throw std::runtime_error("boom"); });
    try {
      thrower.join();
    } catch (const std::runtime_error& e) {
      cpp_rethrown = std::string(e.what()) == "boom";
    }
    auto misuser = farmem::spawn(rt, [&] {
      farmem::DerefScope scope(rt);
      return arrays[0].get(kElements, scope);  // one past the end
    });
    try {
      misuser.join();
    } catch (const farmem::Error& e) {
      farmem_rethrown = e.kind() == farmem::ErrorKind::InvalidArgument;
      std::printf("out-of-range get on a green thread: %s: %s\n", e.kind_name(), e.what());
    }
    std::printf("exceptions rethrown by join: %s\n",
                cpp_rethrown && farmem_rethrown ? "yes" : "no");
    ok = ok && cpp_rethrown && farmem_rethrown;

    // yield() and sleep_for() park the green thread and come back.
    auto sleeper = farmem::spawn(rt, [] {
      farmem::yield();
      farmem::sleep_for(std::chrono::microseconds(500));
      return 7;
    });
    const bool slept = sleeper.join() == 7;
    std::printf("yield and sleep_for on a green thread: %s\n", slept ? "ok" : "WRONG");
    ok = ok && slept;

    arrays.clear();
    rt.close();
  } catch (const farmem::Error& e) {
    std::printf("green_threads: farmem error %s: %s\n", e.kind_name(), e.what());
    ok = false;
  } catch (const std::exception& e) {
    std::printf("green_threads: error: %s\n", e.what());
    ok = false;
  }
  std::printf("green_threads: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
