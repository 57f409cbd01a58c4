// consumer: the smallest program using an installed farmem from C++.
#include <farmem.hpp>

#include <cstdint>
#include <cstdio>

int main() {
  try {
    farmem::Runtime rt(farmem::Config().local_bytes(1u << 20).far_bytes(64u << 20).workers(1));
    const std::uint64_t sum = rt.run([&] {
      farmem::Vector<std::uint64_t> v(rt);
      farmem::DerefScope scope(rt);
      for (std::uint64_t i = 1; i <= 10000; ++i) v.push_back(i, scope);
      std::uint64_t total = 0;
      for (std::size_t i = 0; i < v.size(); ++i) total += v.get(i, scope);
      return total;
    });
    rt.close();
    std::printf("consumer: sum %llu %s\n", static_cast<unsigned long long>(sum),
                sum == 50005000 ? "OK" : "WRONG");
    return sum == 50005000 ? 0 : 1;
  } catch (const farmem::Error& e) {
    std::printf("consumer: %s: %s\n", e.kind_name(), e.what());
    return 1;
  }
}
