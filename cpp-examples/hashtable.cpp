// hashtable: a far-memory hash map (AIFM's RemHashtable) used from many green threads.
//
// The map's index lives on the memory server (AIFM's remote agent answers each lookup next to
// the data); this side keeps a CLOCK cache bounded by cache_bytes, here a small fraction of the
// entries' bytes, so most lookups go remote. Eight green threads insert, then look up, disjoint
// key ranges; replacing, missing keys and removal are checked too. Prints "hashtable: PASS" last
// when every check held.
#include <farmem.hpp>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

namespace {

/// The value stored per key: any trivially copyable struct works.
struct Trip {
  std::uint64_t id;
  std::uint32_t passengers;
  std::uint32_t vendor;
  double fare;
};

constexpr std::uint64_t kKeys = 20000;
constexpr std::size_t kThreads = 8;
constexpr std::uint64_t kCacheBytes = 64u << 10;

Trip trip_for(std::uint64_t key) {
  return Trip{key, static_cast<std::uint32_t>(key % 6 + 1), static_cast<std::uint32_t>(key % 2 + 1),
              2.5 + static_cast<double>(key % 1000) / 4.0};
}

bool same(const Trip& a, const Trip& b) {
  return a.id == b.id && a.passengers == b.passengers && a.vendor == b.vendor && a.fare == b.fare;
}

/// Keys are spread out (not 0..n) so the map sees arbitrary 64-bit keys.
std::uint64_t key_at(std::uint64_t i) { return i * 0x9E3779B97F4A7C15ull; }

}  // namespace

int main() {
  bool ok = true;
  try {
    farmem::Runtime rt(farmem::Config().local_bytes(1u << 20).far_bytes(256u << 20).workers(2));
    ok = rt.run([&] {
      farmem::HashMap<std::uint64_t, Trip> map(rt, kCacheBytes);
      bool good = true;

      // Insert from kThreads green threads, each its own slice; every put must be new.
      std::vector<farmem::Task<std::uint64_t>> tasks;
      for (std::size_t t = 0; t < kThreads; ++t) {
        tasks.push_back(farmem::spawn(rt, [&map, t] {
          std::uint64_t fresh = 0;
          for (std::uint64_t i = t; i < kKeys; i += kThreads) {
            fresh += map.put(key_at(i), trip_for(i)) ? 1 : 0;
          }
          return fresh;
        }));
      }
      std::uint64_t fresh = 0;
      for (auto& task : tasks) fresh += task.join();
      tasks.clear();
      std::printf("inserted %llu keys, %llu new, size %llu\n",
                  static_cast<unsigned long long>(kKeys), static_cast<unsigned long long>(fresh),
                  static_cast<unsigned long long>(map.size()));
      good = good && fresh == kKeys && map.size() == kKeys;

      // Look every key up from green threads; count the right answers.
      for (std::size_t t = 0; t < kThreads; ++t) {
        tasks.push_back(farmem::spawn(rt, [&map, t] {
          std::uint64_t right = 0;
          for (std::uint64_t i = t; i < kKeys; i += kThreads) {
            const std::optional<Trip> v = map.find(key_at(i));
            right += (v && same(*v, trip_for(i))) ? 1 : 0;
          }
          return right;
        }));
      }
      std::uint64_t right = 0;
      for (auto& task : tasks) right += task.join();
      std::printf("lookups right: %llu of %llu\n", static_cast<unsigned long long>(right),
                  static_cast<unsigned long long>(kKeys));
      good = good && right == kKeys;

      // Replacing returns false and is visible; absent keys are absent.
      Trip changed = trip_for(7);
      changed.fare = 99.75;
      const bool replaced_is_new = map.put(key_at(7), changed);
      const std::optional<Trip> now = map.find(key_at(7));
      const bool absent = !map.find(key_at(kKeys + 1)).has_value() && !map.contains(12345);
      std::printf("replace reported new: %s, replaced value visible: %s, absent keys absent: %s\n",
                  replaced_is_new ? "yes" : "no", (now && same(*now, changed)) ? "yes" : "no",
                  absent ? "yes" : "no");
      good = good && !replaced_is_new && now && same(*now, changed) && absent;

      // Remove every tenth key; a second remove finds nothing.
      std::uint64_t removed = 0;
      std::uint64_t removed_twice = 0;
      for (std::uint64_t i = 0; i < kKeys; i += 10) {
        removed += map.remove(key_at(i)) ? 1 : 0;
        removed_twice += map.remove(key_at(i)) ? 1 : 0;
      }
      const std::uint64_t left = map.size();
      const bool gone = !map.find(key_at(10)).has_value() && map.find(key_at(11)).has_value();
      std::printf("removed %llu (again: %llu), size now %llu, removed key gone: %s\n",
                  static_cast<unsigned long long>(removed),
                  static_cast<unsigned long long>(removed_twice),
                  static_cast<unsigned long long>(left), gone ? "yes" : "no");
      good = good && removed == kKeys / 10 && removed_twice == 0 && left == kKeys - kKeys / 10 &&
             gone;

      // The index is on the server; this side caches at most kCacheBytes of entries.
      const std::uint64_t entry_bytes = kKeys * (sizeof(std::uint64_t) + sizeof(Trip));
      std::printf("entries %llu B, local cache bound %llu B\n",
                  static_cast<unsigned long long>(entry_bytes),
                  static_cast<unsigned long long>(kCacheBytes));
      std::printf("remote: %s\n", kCacheBytes * 4 < entry_bytes ? "yes" : "no");
      return good;
    });
    rt.close();
  } catch (const farmem::Error& e) {
    std::printf("hashtable: farmem error %s: %s\n", e.kind_name(), e.what());
    ok = false;
  } catch (const std::exception& e) {
    std::printf("hashtable: error: %s\n", e.what());
    ok = false;
  }
  std::printf("hashtable: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
