// Compile-only checks of farmem.hpp's element rules (tests/element-rules.sh builds each case):
// case 0 must compile warning-free; every other case must be rejected by its static_assert.
#include <farmem.hpp>

#include <cstdint>
#include <string>

struct Plain {
  std::int32_t a;
  std::int32_t b;
};
struct Padded {
  std::uint8_t tag;
  std::uint64_t value;  // 7 bytes of padding before it: not a byte-comparable key
};
struct alignas(16) Wide {
  std::uint64_t lo, hi;
};
struct Huge {
  char bytes[4097];
};

void use(farmem::Runtime& rt) {
#if FARMEM_CASE == 0
  farmem::Array<Plain> a(rt, 4);
  farmem::Vector<double> v(rt);
  farmem::List<Padded> l(rt);  // padding is fine for values
  farmem::HashMap<std::uint64_t, Padded> m(rt);
  farmem::Stack<char> s(rt);
  farmem::Queue<Huge*> q(rt);  // a pointer is plain data, if only useful within this process
  (void)a, (void)v, (void)l, (void)m, (void)s, (void)q;
#elif FARMEM_CASE == 1
  farmem::Vector<std::string> v(rt);  // not trivially copyable
#elif FARMEM_CASE == 2
  farmem::Array<Wide> a(rt, 4);  // alignment 16
#elif FARMEM_CASE == 3
  farmem::Stack<Huge> s(rt);  // 4097 bytes
#elif FARMEM_CASE == 4
  farmem::HashMap<Padded, std::uint64_t> m(rt);  // key with padding
#elif FARMEM_CASE == 5
  farmem::HashMap<double, std::uint64_t> m(rt);  // floating-point key (+0.0 / -0.0)
#endif
}

int main() { return 0; }
