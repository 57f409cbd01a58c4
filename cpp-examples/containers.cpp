// containers: Vector, List, Stack and Queue from C++, and farmem::Error on misuse.
//
// A vector of 512K uint64_t (4 MiB) goes through a 1 MiB local budget, so it is mostly
// remote; list, stack and queue are checked against std containers doing the same operations.
// Misuse from C++ (out-of-range index, an ended scope, a moved-from container) must throw
// farmem::Error with ErrorKind::InvalidArgument and a message. The Config builder's
// alloc_wait() and evacuator_threads() reach fm_config_t (and the runtime, which rejects 65
// evacuator threads). Prints "containers: PASS" last.
#include <farmem.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

bool all_ok = true;

void expect(bool cond, const char* what) {
  std::printf("%-52s %s\n", what, cond ? "ok" : "WRONG");
  all_ok = all_ok && cond;
}

/// Runs `f`, expecting farmem::Error of kind InvalidArgument with a non-empty message.
template <typename F>
void expect_invalid(const char* what, F&& f) {
  try {
    f();
    expect(false, what);
  } catch (const farmem::Error& e) {
    std::printf("  %s -> %s: %s\n", what, e.kind_name(), e.what());
    expect(e.kind() == farmem::ErrorKind::InvalidArgument && std::string(e.what()).size() > 10,
           what);
  }
}

struct Point {
  std::int32_t x;
  std::int32_t y;
};

/// The Config builder's knobs land in the C struct it hands the library.
void check_config() {
  const fm_config_t c = farmem::Config()
                            .alloc_wait(std::chrono::seconds(5))
                            .evacuator_threads(3)
                            .workers(2)
                            .to_c();
  expect(c.struct_size == sizeof(fm_config_t) && c.alloc_wait_ms == 5000 &&
             c.evacuator_threads == 3 && c.workers == 2,
         "config: alloc_wait and evacuator_threads reach fm_config_t");
  const fm_config_t d = farmem::Config().alloc_wait(std::chrono::milliseconds(-5)).to_c();
  expect(d.alloc_wait_ms == 0 && d.evacuator_threads == 0,
         "config: a negative wait and unset knobs mean the defaults");
  expect_invalid("a runtime with 65 evacuator threads", [] {
    farmem::Runtime bad(
        farmem::Config().local_bytes(1u << 20).far_bytes(64u << 20).evacuator_threads(65));
  });
}

}  // namespace

int main() {
  try {
    check_config();
    farmem::Runtime rt(farmem::Config()
                           .local_bytes(1u << 20)
                           .far_bytes(128u << 20)
                           .workers(2)
                           .alloc_wait(std::chrono::seconds(5))
                           .evacuator_threads(2));
    rt.run([&] {
      constexpr std::size_t n = 512 * 1024;
      farmem::Vector<std::uint64_t> vec(rt);
      {
        farmem::DerefScope scope(rt);
        for (std::size_t i = 0; i < n; ++i) {
          vec.push_back(i * i, scope);
          if (i % 2048 == 2047) scope.renew();
        }
        vec.set(5, 42, scope);
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < n; ++i) {
          sum += vec.get(i, scope);
          if (i % 2048 == 2047) scope.renew();
        }
        std::uint64_t want = 42;
        for (std::size_t i = 0; i < n; ++i) want += i == 5 ? 0 : i * i;
        expect(vec.size() == n && sum == want, "vector: push, set, get over mostly remote data");
        const auto last = vec.pop_back(scope);
        expect(last && *last == (n - 1) * (n - 1) && vec.size() == n - 1, "vector: pop_back");
      }
      const farmem::Metrics m = rt.metrics();
      std::printf("vector: %zu B through a %llu B budget, written back %llu B, fetched %llu B\n",
                  n * sizeof(std::uint64_t),
                  static_cast<unsigned long long>(m.local_bytes_budget),
                  static_cast<unsigned long long>(m.bytes_written_back),
                  static_cast<unsigned long long>(m.bytes_fetched));
      expect(m.bytes_written_back > 0 && m.bytes_fetched > 0, "vector data went remote and back");

      farmem::Vector<std::uint64_t> empty(rt);
      {
        farmem::DerefScope scope(rt);
        expect(!empty.pop_back(scope).has_value(), "vector: pop_back of empty is nullopt");
      }

      farmem::List<Point> list(rt);
      std::deque<Point> model;
      {
        farmem::DerefScope scope(rt);
        for (std::int32_t i = 0; i < 200; ++i) {
          if (i % 3 == 0) {
            list.push_front({i, -i}, scope);
            model.push_front({i, -i});
          } else {
            list.push_back({i, 2 * i}, scope);
            model.push_back({i, 2 * i});
          }
        }
        list.insert(10, {1000, 1000}, scope);
        model.insert(model.begin() + 10, {1000, 1000});
        const Point removed = list.remove(20, scope);
        const Point want_removed = model[20];
        model.erase(model.begin() + 20);
        bool same = list.size() == model.size() && removed.x == want_removed.x &&
                    removed.y == want_removed.y;
        for (std::size_t i = 0; same && i < model.size(); ++i) {
          const Point p = list.get(i, scope);
          same = p.x == model[i].x && p.y == model[i].y;
        }
        const auto front = list.pop_front(scope);
        const auto back = list.pop_back(scope);
        same = same && front && front->x == model.front().x && back && back->x == model.back().x;
        expect(same, "list: push/insert/remove/get/pop match std::deque");
      }

      farmem::Stack<std::uint32_t> stack(rt);
      for (std::uint32_t i = 1; i <= 1000; ++i) stack.push(i);
      const auto top = stack.peek();
      std::uint64_t popped_sum = 0;
      while (auto v = stack.pop()) popped_sum += *v;
      expect(top && *top == 1000 && popped_sum == 500500 && stack.size() == 0 &&
                 !stack.peek().has_value(),
             "stack: LIFO, peek, pop until empty");

      farmem::Queue<std::uint64_t> queue(rt);
      std::vector<farmem::Task<void>> producers;
      for (std::uint64_t p = 0; p < 4; ++p) {
        producers.push_back(farmem::spawn(rt, [&queue, p] {
          for (std::uint64_t i = 0; i < 500; ++i) queue.push(p * 1000000 + i);
        }));
      }
      for (auto& t : producers) t.join();
      std::uint64_t qsum = 0;
      std::size_t qn = 0;
      const auto head = queue.peek();
      while (auto v = queue.pop()) {
        qsum += *v;
        ++qn;
      }
      std::uint64_t qwant = 0;
      for (std::uint64_t p = 0; p < 4; ++p)
        for (std::uint64_t i = 0; i < 500; ++i) qwant += p * 1000000 + i;
      expect(head.has_value() && qn == 2000 && qsum == qwant && queue.size() == 0,
             "queue: pushes from 4 green threads all popped once");

      // Misuse throws farmem::Error, never crashes.
      farmem::Array<std::uint64_t> arr(rt, 16);
      expect_invalid("array get past the end", [&] {
        farmem::DerefScope scope(rt);
        arr.get(16, scope);
      });
      expect_invalid("array read range past the end", [&] {
        farmem::DerefScope scope(rt);
        std::vector<std::uint64_t> buf(8);
        arr.read(12, buf.data(), 8, scope);
      });
      expect_invalid("using a scope after end()", [&] {
        farmem::DerefScope scope(rt);
        scope.end();
        arr.get(0, scope);
      });
      expect_invalid("list remove out of range", [&] {
        farmem::DerefScope scope(rt);
        list.remove(list.size(), scope);
      });
      expect_invalid("using a moved-from vector", [&] {
        farmem::Vector<std::uint64_t> moved = std::move(empty);
        (void)moved;
        (void)empty.size();  // NOLINT(bugprone-use-after-move): the point of the check
      });
      expect_invalid("joining a task twice", [&] {
        auto t = farmem::spawn(rt, [] { return 1; });
        t.join();
        t.join();
      });
    });
    rt.close();
  } catch (const farmem::Error& e) {
    std::printf("containers: farmem error %s: %s\n", e.kind_name(), e.what());
    all_ok = false;
  } catch (const std::exception& e) {
    std::printf("containers: error: %s\n", e.what());
    all_ok = false;
  }
  std::printf("containers: %s\n", all_ok ? "PASS" : "FAIL");
  return all_ok ? 0 : 1;
}
