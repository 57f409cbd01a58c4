/**
 * @file farmem/objects.hpp
 * @brief Dereference scopes and far-memory containers (AIFM's RemArray, RemVec, RemList,
 *        RemHashtable) over `farmem/objects.h`.
 *
 * Design note
 * -----------
 * Builds on `farmem/core.hpp` (errors are exceptions, one owner per handle) and adds:
 *
 * - **Elements are plain bytes.** Containers copy elements in and out by value, so `T` must be
 *   trivially copyable with alignment at most 8 and size 1..=4096 (detail::check_element, at
 *   compile time); the element size is passed on every call and the C layer rejects a mismatch.
 *   Hash-map keys are compared as bytes, so `K` must also have a unique object representation.
 * - **Scopes are explicit.** As in AIFM, far-memory data is only dereferenced inside a
 *   DerefScope; every method whose C call takes a scope takes a `const DerefScope&`. Renew long
 *   scans (DerefScope::renew()) so the evacuator can reclaim what the scope pins. Stack and
 *   Queue open their own scope per call.
 */
#ifndef FARMEM_OBJECTS_HPP
#define FARMEM_OBJECTS_HPP

#include "core.hpp"
#include "objects.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

namespace farmem {

/// Implementation details; not part of the API.
namespace detail {

/// Checks the element type rules of every container.
template <typename T>
constexpr bool check_element() {
  static_assert(std::is_trivially_copyable_v<T>,
                "farmem containers copy elements as bytes: T must be trivially copyable");
  static_assert(alignof(T) <= 8, "farmem containers need alignof(T) <= 8");
  static_assert(sizeof(T) >= 1 && sizeof(T) <= 4096,
                "farmem container elements are 1..=4096 bytes");
  return true;
}

}  // namespace detail

/// AIFM's DerefScope: while it lives, far-memory objects it dereferences stay put locally.
/// Use it on the thread (or green thread) that opened it only; from another thread every call
/// throws ErrorKind::InvalidArgument. Not movable (it belongs to its thread's stack frame).
/// RAII: the destructor ends it.
class DerefScope {
 public:
  /// Opens a scope on `rt`'s far memory.
  explicit DerefScope(const Runtime& rt) {
    check(fm_scope_begin(rt.get(), &scope_));
    open_ = true;
  }
  DerefScope(const DerefScope&) = delete;
  DerefScope& operator=(const DerefScope&) = delete;
  DerefScope(DerefScope&&) = delete;
  DerefScope& operator=(DerefScope&&) = delete;
  /// Ends the scope if end() did not.
  ~DerefScope() {
    if (open_) (void)fm_scope_end(scope_);
  }

  /// Ends and reopens the scope, letting the evacuator move what it pinned. Call it every few
  /// thousand element calls in a long scan (bulk read()/write() renew by themselves).
  void renew() { check(fm_scope_renew(scope_)); }

  /// Ends the scope now. Later uses of it throw ErrorKind::InvalidArgument (the library names
  /// the stale handle); ending it twice throws too.
  void end() {
    const fm_status_t status = fm_scope_end(scope_);
    if (status == FM_OK) open_ = false;  // from another thread it fails and stays open
    check(status);
  }

  /// Whether the scope is still open (not end()ed).
  bool is_open() const noexcept { return open_; }

  /// The C handle (stale once ended: the library rejects it).
  fm_scope_t* get() const noexcept { return scope_; }

 private:
  fm_scope_t* scope_ = nullptr;
  bool open_ = false;
};

/// A fixed-length array of `T` in far memory (AIFM's RemArray).
template <typename T>
class Array {
  static_assert(detail::check_element<T>());

 public:
  /// `len` zeroed elements in `rt`'s far memory.
  Array(const Runtime& rt, std::size_t len) {
    fm_array_t* a = nullptr;
    check(fm_array_create(rt.get(), sizeof(T), len, &a));
    a_ = H(a);
  }
  /// Number of elements.
  std::size_t size() const {
    std::size_t n = 0;
    check(fm_array_len(a_.get(), &n));
    return n;
  }
  /// Element `i` (copied out).
  T get(std::size_t i, const DerefScope& s) const {
    T v;
    check(fm_array_get(a_.get(), s.get(), i, &v, sizeof(T)));
    return v;
  }
  /// Sets element `i` to `v`.
  void set(std::size_t i, const T& v, const DerefScope& s) {
    check(fm_array_set(a_.get(), s.get(), i, &v, sizeof(T)));
  }
  /// Copies `count` elements starting at `start` into `out`.
  void read(std::size_t start, T* out, std::size_t count, const DerefScope& s) const {
    check(fm_array_read(a_.get(), s.get(), start, count, out, sizeof(T)));
  }
  /// `count` elements starting at `start`.
  std::vector<T> read(std::size_t start, std::size_t count, const DerefScope& s) const {
    std::vector<T> out(count);
    read(start, out.data(), count, s);
    return out;
  }
  /// Copies `count` elements from `src` to positions `start..start+count`.
  void write(std::size_t start, const T* src, std::size_t count, const DerefScope& s) {
    check(fm_array_write(a_.get(), s.get(), start, count, src, sizeof(T)));
  }
  /// Copies `src` to positions `start..start+src.size()`.
  void write(std::size_t start, const std::vector<T>& src, const DerefScope& s) {
    write(start, src.data(), src.size(), s);
  }
  /// The C handle.
  fm_array_t* handle() const noexcept { return a_.get(); }

 private:
  using H = detail::Handle<fm_array_t, &fm_array_destroy>;
  H a_;
};

/// A growable vector of `T` in far memory (AIFM's RemVec).
template <typename T>
class Vector {
  static_assert(detail::check_element<T>());

 public:
  /// An empty vector in `rt`'s far memory.
  explicit Vector(const Runtime& rt) {
    fm_vector_t* v = nullptr;
    check(fm_vector_create(rt.get(), sizeof(T), &v));
    v_ = H(v);
  }
  /// Number of elements.
  std::size_t size() const {
    std::size_t n = 0;
    check(fm_vector_len(v_.get(), &n));
    return n;
  }
  /// Appends `v`.
  void push_back(const T& v, const DerefScope& s) {
    check(fm_vector_push(v_.get(), s.get(), &v, sizeof(T)));
  }
  /// Removes and returns the last element; `std::nullopt` when empty.
  std::optional<T> pop_back(const DerefScope& s) {
    T v;
    int popped = 0;
    check(fm_vector_pop(v_.get(), s.get(), &v, sizeof(T), &popped));
    return popped ? std::optional<T>(v) : std::nullopt;
  }
  /// Element `i` (copied out).
  T get(std::size_t i, const DerefScope& s) const {
    T v;
    check(fm_vector_get(v_.get(), s.get(), i, &v, sizeof(T)));
    return v;
  }
  /// Sets element `i` to `v`.
  void set(std::size_t i, const T& v, const DerefScope& s) {
    check(fm_vector_set(v_.get(), s.get(), i, &v, sizeof(T)));
  }
  /// The C handle.
  fm_vector_t* handle() const noexcept { return v_.get(); }

 private:
  using H = detail::Handle<fm_vector_t, &fm_vector_destroy>;
  H v_;
};

/// A doubly linked list of `T` in far memory (AIFM's RemList).
template <typename T>
class List {
  static_assert(detail::check_element<T>());

 public:
  /// An empty list in `rt`'s far memory.
  explicit List(const Runtime& rt) {
    fm_list_t* l = nullptr;
    check(fm_list_create(rt.get(), sizeof(T), &l));
    l_ = H(l);
  }
  /// Number of elements.
  std::size_t size() const {
    std::size_t n = 0;
    check(fm_list_len(l_.get(), &n));
    return n;
  }
  /// Appends `v` at the back.
  void push_back(const T& v, const DerefScope& s) {
    check(fm_list_push_back(l_.get(), s.get(), &v, sizeof(T)));
  }
  /// Prepends `v` at the front.
  void push_front(const T& v, const DerefScope& s) {
    check(fm_list_push_front(l_.get(), s.get(), &v, sizeof(T)));
  }
  /// Removes and returns the back element; `std::nullopt` when empty.
  std::optional<T> pop_back(const DerefScope& s) {
    T v;
    int popped = 0;
    check(fm_list_pop_back(l_.get(), s.get(), &v, sizeof(T), &popped));
    return popped ? std::optional<T>(v) : std::nullopt;
  }
  /// Removes and returns the front element; `std::nullopt` when empty.
  std::optional<T> pop_front(const DerefScope& s) {
    T v;
    int popped = 0;
    check(fm_list_pop_front(l_.get(), s.get(), &v, sizeof(T), &popped));
    return popped ? std::optional<T>(v) : std::nullopt;
  }
  /// Element `i` from the front (copied out).
  T get(std::size_t i, const DerefScope& s) const {
    T v;
    check(fm_list_get(l_.get(), s.get(), i, &v, sizeof(T)));
    return v;
  }
  /// Inserts `v` so that it becomes element `i` (`i == size()` appends).
  void insert(std::size_t i, const T& v, const DerefScope& s) {
    check(fm_list_insert(l_.get(), s.get(), i, &v, sizeof(T)));
  }
  /// Removes and returns element `i`.
  T remove(std::size_t i, const DerefScope& s) {
    T v;
    check(fm_list_remove(l_.get(), s.get(), i, &v, sizeof(T)));
    return v;
  }
  /// The C handle.
  fm_list_t* handle() const noexcept { return l_.get(); }

 private:
  using H = detail::Handle<fm_list_t, &fm_list_destroy>;
  H l_;
};

/// A LIFO stack of `T` in far memory; each call opens its own scope.
template <typename T>
class Stack {
  static_assert(detail::check_element<T>());

 public:
  /// An empty stack in `rt`'s far memory.
  explicit Stack(const Runtime& rt) {
    fm_stack_t* s = nullptr;
    check(fm_stack_create(rt.get(), sizeof(T), &s));
    s_ = H(s);
  }
  /// Number of elements.
  std::size_t size() const {
    std::size_t n = 0;
    check(fm_stack_len(s_.get(), &n));
    return n;
  }
  /// Pushes `v` on top.
  void push(const T& v) { check(fm_stack_push(s_.get(), &v, sizeof(T))); }
  /// Removes and returns the top; `std::nullopt` when empty.
  std::optional<T> pop() {
    T v;
    int popped = 0;
    check(fm_stack_pop(s_.get(), &v, sizeof(T), &popped));
    return popped ? std::optional<T>(v) : std::nullopt;
  }
  /// The top without removing it; `std::nullopt` when empty.
  std::optional<T> peek() const {
    T v;
    int found = 0;
    check(fm_stack_peek(s_.get(), &v, sizeof(T), &found));
    return found ? std::optional<T>(v) : std::nullopt;
  }
  /// The C handle.
  fm_stack_t* handle() const noexcept { return s_.get(); }

 private:
  using H = detail::Handle<fm_stack_t, &fm_stack_destroy>;
  H s_;
};

/// A FIFO queue of `T` in far memory, safe to share between threads; each call opens its own
/// scope.
template <typename T>
class Queue {
  static_assert(detail::check_element<T>());

 public:
  /// An empty queue in `rt`'s far memory.
  explicit Queue(const Runtime& rt) {
    fm_queue_t* q = nullptr;
    check(fm_queue_create(rt.get(), sizeof(T), &q));
    q_ = H(q);
  }
  /// Number of elements.
  std::size_t size() const {
    std::size_t n = 0;
    check(fm_queue_len(q_.get(), &n));
    return n;
  }
  /// Appends `v` at the tail.
  void push(const T& v) { check(fm_queue_push(q_.get(), &v, sizeof(T))); }
  /// Removes and returns the head; `std::nullopt` when empty.
  std::optional<T> pop() {
    T v;
    int popped = 0;
    check(fm_queue_pop(q_.get(), &v, sizeof(T), &popped));
    return popped ? std::optional<T>(v) : std::nullopt;
  }
  /// The head without removing it; `std::nullopt` when empty.
  std::optional<T> peek() const {
    T v;
    int found = 0;
    check(fm_queue_peek(q_.get(), &v, sizeof(T), &found));
    return found ? std::optional<T>(v) : std::nullopt;
  }
  /// The C handle.
  fm_queue_t* handle() const noexcept { return q_.get(); }

 private:
  using H = detail::Handle<fm_queue_t, &fm_queue_destroy>;
  H q_;
};

/// A hash map from `K` to `V` in far memory (AIFM's RemHashtable), keyed by the bytes of `K`.
/// `K` must have a unique object representation (no padding, no floating point), so equal keys
/// are equal bytes.
template <typename K, typename V>
class HashMap {
  static_assert(detail::check_element<K>());
  static_assert(detail::check_element<V>());
  static_assert(std::has_unique_object_representations_v<K>,
                "HashMap keys are compared as bytes: K must have no padding and no floats");

 public:
  /// An empty map in `rt`'s far memory; `cache_bytes` of local index cache (0 = default).
  explicit HashMap(const Runtime& rt, std::uint64_t cache_bytes = 0) {
    fm_hashmap_t* m = nullptr;
    check(fm_hashmap_create(rt.get(), sizeof(K), sizeof(V), cache_bytes, &m));
    m_ = H(m);
  }
  /// Number of entries.
  std::uint64_t size() const {
    std::uint64_t n = 0;
    check(fm_hashmap_len(m_.get(), &n));
    return n;
  }
  /// Maps `key` to `value`; true when the key was new, false when it replaced a value.
  bool put(const K& key, const V& value) {
    int inserted = 0;
    check(fm_hashmap_put(m_.get(), &key, sizeof(K), &value, sizeof(V), &inserted));
    return inserted != 0;
  }
  /// The value of `key`; `std::nullopt` when absent.
  std::optional<V> find(const K& key) const {
    V v;
    int found = 0;
    check(fm_hashmap_get(m_.get(), &key, sizeof(K), &v, sizeof(V), &found));
    return found ? std::optional<V>(v) : std::nullopt;
  }
  /// Whether `key` is present.
  bool contains(const K& key) const { return find(key).has_value(); }
  /// Removes `key`; true when it was present.
  bool remove(const K& key) {
    int removed = 0;
    check(fm_hashmap_remove(m_.get(), &key, sizeof(K), &removed));
    return removed != 0;
  }
  /// The C handle.
  fm_hashmap_t* handle() const noexcept { return m_.get(); }

 private:
  using H = detail::Handle<fm_hashmap_t, &fm_hashmap_destroy>;
  H m_;
};

}  // namespace farmem

#endif  // FARMEM_OBJECTS_HPP
