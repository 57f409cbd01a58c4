// hello: the sum of a far-memory array whose data is mostly remote.
//
// A 32 MiB array of uint64_t goes through a 4 MiB local budget, so the evacuator must write most
// of it to the (embedded) memory server and reads fetch it back. The sum is checked against the
// closed form; the runtime's metrics show the traffic. Prints "hello: PASS" last, after the
// runtime is gone, only when every check held.
#include <farmem.hpp>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kElements = std::size_t{1} << 22;  // 32 MiB of uint64_t
constexpr std::uint64_t kLocalBytes = 4u << 20;
constexpr std::size_t kBatch = 4096;  // elements per bulk copy; the scope is renewed per batch

std::uint64_t value_at(std::size_t i) { return 3 * static_cast<std::uint64_t>(i) + 1; }

}  // namespace

int main(int argc, char** argv) {
  // `hello --server ADDR --token TOKEN` uses a running farmem-server instead of an embedded one.
  farmem::Config config;
  config.local_bytes(kLocalBytes).far_bytes(256u << 20).workers(2);
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--server") {
      config.server(argv[i + 1]);
    } else if (flag == "--token") {
      config.token(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: hello [--server HOST:PORT --token TOKEN]\n");
      return 2;
    }
  }
  bool ok = true;
  try {
    farmem::Runtime rt(config);
    const std::uint64_t sum = rt.run([&] {
      farmem::Array<std::uint64_t> a(rt, kElements);
      if (a.size() != kElements) throw std::runtime_error("array has the wrong length");
      farmem::DerefScope scope(rt);
      std::vector<std::uint64_t> buf(kBatch);
      for (std::size_t start = 0; start < kElements; start += kBatch) {
        for (std::size_t j = 0; j < kBatch; ++j) buf[j] = value_at(start + j);
        a.write(start, buf, scope);
        scope.renew();
      }
      // Element-wise access on a stride, then a bulk read of everything.
      for (std::size_t i = 0; i < kElements; i += 997) {
        if (a.get(i, scope) != value_at(i)) throw std::runtime_error("get returned a wrong value");
        a.set(i, value_at(i), scope);
        if (i % (997 * 64) == 0) scope.renew();
      }
      std::uint64_t total = 0;
      for (std::size_t start = 0; start < kElements; start += kBatch) {
        a.read(start, buf.data(), kBatch, scope);
        for (std::uint64_t v : buf) total += v;
        scope.renew();
      }
      return total;
    });
    const std::uint64_t n = kElements;
    const std::uint64_t expected = 3 * (n * (n - 1) / 2) + n;
    std::printf("sum of %zu elements = %llu (expected %llu)\n", kElements,
                static_cast<unsigned long long>(sum), static_cast<unsigned long long>(expected));
    ok = ok && sum == expected;

    const farmem::Metrics m = rt.metrics();
    const std::uint64_t data_bytes = kElements * sizeof(std::uint64_t);
    const bool remote = m.local_bytes_budget < data_bytes / 4 &&
                        m.bytes_written_back >= data_bytes / 2 && m.bytes_fetched >= data_bytes / 2;
    std::printf("local budget %llu B, data %llu B, written back %llu B, fetched %llu B, misses %llu\n",
                static_cast<unsigned long long>(m.local_bytes_budget),
                static_cast<unsigned long long>(data_bytes),
                static_cast<unsigned long long>(m.bytes_written_back),
                static_cast<unsigned long long>(m.bytes_fetched),
                static_cast<unsigned long long>(m.misses));
    std::printf("remote: %s\n", remote ? "yes" : "no");
    ok = ok && remote;
    rt.close();
  } catch (const farmem::Error& e) {
    std::printf("hello: farmem error %s: %s\n", e.kind_name(), e.what());
    ok = false;
  } catch (const std::exception& e) {
    std::printf("hello: error: %s\n", e.what());
    ok = false;
  }
  std::printf("hello: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
