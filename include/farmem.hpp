/**
 * @file farmem.hpp
 * @brief Header-only C++17 interface to farmem over the C ABI of `farmem.h`.
 *
 * Design note
 * -----------
 * Everything here is a thin RAII/template layer over the C functions of `farmem.h`; no state
 * lives in this header beyond the C handles it owns. The invariants it keeps:
 *
 * - **Errors are exceptions.** Every C call's status goes through farmem::check(), which throws
 *   farmem::Error carrying the ErrorKind and the text of `fm_last_error()` (read right after the
 *   failed call, on the same OS thread, before any other farmem call can overwrite it).
 * - **No exception ever crosses the C ABI.** Lambdas given to Runtime::run() and farmem::spawn()
 *   run behind a `noexcept` trampoline that catches everything into a `std::exception_ptr`;
 *   Runtime::run() and Task::join() rethrow it on the caller's side. (Unwinding into Rust frames
 *   would be undefined behaviour.)
 * - **One owner per handle.** Every wrapper is move-only and destroys its handle once; a
 *   moved-from wrapper holds `nullptr` (the C layer rejects it with FM_INVALID_ARGUMENT, so using
 *   one throws rather than crashing).
 * - **Elements are plain bytes.** Containers copy elements in and out by value, so `T` must be
 *   trivially copyable with alignment at most 8 and size 1..=4096 (checked at compile time); the
 *   element size is passed on every call and the C layer rejects a mismatch.
 * - **Scopes are explicit.** As in AIFM, far-memory data is only dereferenced inside a
 *   DerefScope; every method whose C call takes a scope takes a `const DerefScope&`. Renew long
 *   scans (DerefScope::renew()) so the evacuator can reclaim what the scope pins.
 *
 * Green threads (AIFM §4.2): code run through Runtime::run() or farmem::spawn() is a green
 * thread; a far-memory miss parks only that green thread while its worker runs others.
 *
 * Destructors never throw: a failure while releasing a handle is dropped (use the explicit
 * `close()` of Runtime to see the runtime's shutdown status).
 */
#ifndef FARMEM_HPP
#define FARMEM_HPP

#include "farmem.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

/// farmem's C++ interface: RAII wrappers and templates over the C ABI of `farmem.h`.
namespace farmem {

/// The kind of a failure; values equal the C status codes (`FM_*`) and the Rust `ErrorKind`.
enum class ErrorKind : std::uint32_t {
  InvalidArgument = FM_INVALID_ARGUMENT,    ///< An argument was out of range or malformed.
  OutOfLocalMemory = FM_OUT_OF_LOCAL_MEMORY,  ///< The local-memory budget is exhausted.
  OutOfFarMemory = FM_OUT_OF_FAR_MEMORY,    ///< The memory servers have no room left.
  OutOfDeviceMemory = FM_OUT_OF_DEVICE_MEMORY,  ///< The GPU has no room left.
  Unsupported = FM_UNSUPPORTED,             ///< A feature or hardware this build lacks.
  Io = FM_IO,                               ///< An operating-system call failed.
  Protocol = FM_PROTOCOL,                   ///< A peer broke the wire protocol.
  Auth = FM_AUTH,                           ///< The cluster token was wrong or missing.
  ServerError = FM_SERVER_ERROR,            ///< The memory server reported a failure.
  Disconnected = FM_DISCONNECTED,           ///< A connection was lost.
  Timeout = FM_TIMEOUT,                     ///< A deadline passed.
  NotFound = FM_NOT_FOUND,                  ///< A named thing does not exist.
  Closed = FM_CLOSED,                       ///< The runtime or handle was already closed.
  Panicked = FM_PANICKED,                   ///< A green thread or callback panicked.
  Parse = FM_PARSE,                         ///< Malformed data in a file.
  Internal = FM_INTERNAL,                   ///< A bug inside farmem, reported as an error.
};

/// A failed farmem call: its kind and the library's message (`fm_last_error()`).
class Error : public std::exception {
 public:
  /// An error of `kind` with `message`.
  Error(ErrorKind kind, std::string message) : kind_(kind), message_(std::move(message)) {}

  /// The error for a failed `status`, with the message of the last failed call on this thread
  /// (or the status name when the library left none).
  static Error from_status(fm_status_t status) {
    const char* last = fm_last_error();
    std::string message = (last != nullptr && *last != '\0') ? std::string(last)
                                                             : std::string(fm_status_str(status));
    return Error(static_cast<ErrorKind>(status), std::move(message));
  }

  /// The kind of failure.
  ErrorKind kind() const noexcept { return kind_; }

  /// The C status code of the failure.
  fm_status_t status() const noexcept { return static_cast<fm_status_t>(kind_); }

  /// The status name, e.g. `"FM_NOT_FOUND"`.
  const char* kind_name() const noexcept { return fm_status_str(status()); }

  /// The library's message: what failed, with the value, and what to do.
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  ErrorKind kind_;
  std::string message_;
};

/// Throws farmem::Error for any status other than `FM_OK`.
inline void check(fm_status_t status) {
  if (status != FM_OK) {
    throw Error::from_status(status);
  }
}

/// Local and far memory counters of a runtime (see Runtime::metrics()).
struct Metrics {
  std::uint64_t local_bytes_used = 0;    ///< Local bytes holding far-memory objects now.
  std::uint64_t local_bytes_budget = 0;  ///< The local-memory budget.
  std::uint64_t bytes_fetched = 0;       ///< Bytes fetched from memory servers so far.
  std::uint64_t bytes_written_back = 0;  ///< Bytes written back to memory servers so far.
  std::uint64_t misses = 0;              ///< Dereferences that had to fetch.
  std::uint64_t hits = 0;                ///< Dereferences served locally.
  std::uint64_t prefetches_issued = 0;   ///< Prefetches started.
  std::uint64_t evacuations = 0;         ///< Evacuator passes.
};

/// How to start a Runtime. Zero fields take the library's defaults; setters chain:
/// `Config().local_bytes(4 << 20).workers(2)`.
class Config {
 public:
  /// Local memory budget in bytes (0 = default 256 MiB).
  Config& local_bytes(std::uint64_t v) { local_bytes_ = v; return *this; }
  /// Capacity of the embedded memory server in bytes (0 = default 4 GiB).
  Config& far_bytes(std::uint64_t v) { far_bytes_ = v; return *this; }
  /// Use the memory server at `host:port` instead of an embedded one (needs token()).
  Config& server(std::string v) { server_ = std::move(v); return *this; }
  /// The cluster token of server().
  Config& token(std::string v) { token_ = std::move(v); return *this; }
  /// TCP connections to the memory server (0 = default 2).
  Config& connections(std::uint32_t v) { connections_ = v; return *this; }
  /// Green-thread worker threads (0 = one per core).
  Config& workers(std::uint32_t v) { workers_ = v; return *this; }
  /// Far-memory chunk size in bytes, a power of two (0 = picked from the budget).
  Config& chunk_bytes(std::uint64_t v) { chunk_bytes_ = v; return *this; }

  /// The C struct these settings describe; valid while this Config lives (strings are borrowed).
  fm_config_t to_c() const {
    fm_config_t c;
    fm_config_init(&c);
    if (local_bytes_ != 0) c.local_bytes = local_bytes_;
    if (far_bytes_ != 0) c.far_bytes = far_bytes_;
    if (server_) c.server = server_->c_str();
    if (token_) c.token = token_->c_str();
    if (connections_ != 0) c.connections = connections_;
    if (workers_ != 0) c.workers = workers_;
    if (chunk_bytes_ != 0) c.chunk_bytes = chunk_bytes_;
    return c;
  }

 private:
  std::uint64_t local_bytes_ = 0;
  std::uint64_t far_bytes_ = 0;
  std::optional<std::string> server_;
  std::optional<std::string> token_;
  std::uint32_t connections_ = 0;
  std::uint32_t workers_ = 0;
  std::uint64_t chunk_bytes_ = 0;
};

/// Implementation details; not part of the API.
namespace detail {

/// What a boxed lambda leaves behind: its value or its exception.
template <typename R>
struct Outcome {
  std::optional<R> value;     ///< The lambda's result, once it returned.
  std::exception_ptr error;   ///< The exception it threw, if any.
  /// The value, or rethrows the exception.
  R take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

/// Outcome of a lambda returning `void`.
template <>
struct Outcome<void> {
  bool done = false;          ///< Whether the lambda returned.
  std::exception_ptr error;   ///< The exception it threw, if any.
  /// Rethrows the exception, if any.
  void take() {
    if (error) std::rethrow_exception(error);
  }
};

/// A type-erased green-thread body: the lambda plus where its outcome goes.
template <typename R>
struct TaskBox {
  /// Destroys the boxed lambda.
  virtual ~TaskBox() = default;
  /// Runs the lambda, recording its value or exception.
  virtual void invoke() noexcept = 0;
  Outcome<R> outcome;  ///< Filled by invoke().
};

/// The TaskBox holding a lambda of type `F`.
template <typename R, typename F>
struct TaskBoxOf final : TaskBox<R> {
  /// Boxes `f` by move.
  explicit TaskBoxOf(F&& f) : fn(std::move(f)) {}
  /// Boxes a copy of `f`.
  explicit TaskBoxOf(const F& f) : fn(f) {}
  /// Runs `fn`, catching everything it throws.
  void invoke() noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        this->outcome.done = true;
      } else {
        this->outcome.value.emplace(fn());
      }
    } catch (...) {
      this->outcome.error = std::current_exception();
    }
  }
  F fn;  ///< The lambda.
};

/// The C entry point of every green thread: `arg` is a `TaskBox<R>*`. Never throws.
template <typename R>
int trampoline(void* arg) noexcept {
  auto* box = static_cast<TaskBox<R>*>(arg);
  box->invoke();
  return box->outcome.error ? 1 : 0;
}

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

/// Owns one C handle and destroys it with `Destroy` once; move-only.
template <typename H, fm_status_t (*Destroy)(H*)>
class Handle {
 public:
  /// No handle.
  Handle() = default;
  /// Takes ownership of `h`.
  explicit Handle(H* h) : h_(h) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  /// Takes `o`'s handle, leaving it empty.
  Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  /// Destroys the current handle and takes `o`'s.
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  /// Destroys the handle (errors dropped).
  ~Handle() { reset(); }
  /// The raw handle (nullptr after a move or close).
  H* get() const noexcept { return h_; }
  /// Destroys the handle now, throwing farmem::Error on failure. FM_INVALID_ARGUMENT means the
  /// library kept the object (e.g. a runtime still in use), so the handle is kept for a retry;
  /// after any other status the object is gone.
  void close() {
    if (h_ == nullptr) return;
    const fm_status_t status = Destroy(h_);
    if (status != FM_INVALID_ARGUMENT) h_ = nullptr;
    check(status);
  }
  /// Destroys the handle, dropping any error.
  void reset() noexcept {
    H* h = std::exchange(h_, nullptr);
    if (h != nullptr) (void)Destroy(h);
  }

 private:
  H* h_ = nullptr;
};

}  // namespace detail

/// A running farmem instance: green-thread workers, far memory with its local budget and (by
/// default) an embedded memory server. Move-only; destroying it stops everything.
///
/// Destroy every container, scope, DataFrame and Task of a runtime before the runtime (declare
/// the Runtime first): the library refuses to stop a runtime that handles still use. close()
/// reports that as ErrorKind::InvalidArgument and keeps the runtime usable; the destructor
/// cannot report it and leaves the runtime running until the process exits.
class Runtime {
 public:
  /// Starts a runtime with `config` (defaults: 256 MiB local, embedded 4 GiB server).
  explicit Runtime(const Config& config = Config()) {
    fm_config_t c = config.to_c();
    fm_runtime_t* rt = nullptr;
    check(fm_runtime_create(&c, &rt));
    rt_ = Handle(rt);
  }

  /// The C handle, for mixing in C calls.
  fm_runtime_t* get() const noexcept { return rt_.get(); }

  /// Stops the runtime now. Throws farmem::Error if handles still use it (InvalidArgument; the
  /// runtime stays usable) or if far memory reported a background error (the runtime is stopped
  /// either way). The destructor does the same silently. Not from a green thread.
  void close() { rt_.close(); }

  /// Runs `f()` as a green thread, blocking this OS thread until it returns; returns its value
  /// or rethrows its exception. Far-memory misses inside `f` park only that green thread.
  template <typename F>
  auto run(F&& f) -> std::invoke_result_t<std::decay_t<F>&> {
    using R = std::invoke_result_t<std::decay_t<F>&>;
    detail::TaskBoxOf<R, std::decay_t<F>> box(std::forward<F>(f));
    int code = 0;
    check(fm_runtime_run(rt_.get(), &detail::trampoline<R>, &box, &code));
    return box.outcome.take();
  }

  /// Local and far memory counters now.
  Metrics metrics() const {
    fm_metrics_t m{};
    m.struct_size = sizeof(m);
    check(fm_runtime_metrics(rt_.get(), &m));
    Metrics out;
    out.local_bytes_used = m.local_bytes_used;
    out.local_bytes_budget = m.local_bytes_budget;
    out.bytes_fetched = m.bytes_fetched;
    out.bytes_written_back = m.bytes_written_back;
    out.misses = m.misses;
    out.hits = m.hits;
    out.prefetches_issued = m.prefetches_issued;
    out.evacuations = m.evacuations;
    return out;
  }

 private:
  using Handle = detail::Handle<fm_runtime_t, &fm_runtime_destroy>;
  Handle rt_;
};

/// A green thread started by farmem::spawn(); join() returns its value. Move-only. Destroying
/// an unjoined Task joins it (dropping its outcome), since the green thread uses memory the
/// Task owns.
template <typename R>
class Task {
 public:
  /// Starts `box` as a green thread of `rt` (farmem::spawn() makes the box).
  Task(Runtime& rt, std::unique_ptr<detail::TaskBox<R>> box) : box_(std::move(box)) {
    check(fm_spawn(rt.get(), &detail::trampoline<R>, box_.get(), &task_));
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  /// Moves the green thread's ownership.
  Task(Task&& o) noexcept : box_(std::move(o.box_)), task_(std::exchange(o.task_, nullptr)) {}
  /// Joins this task (if any) and takes over `o`'s.
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      join_quietly();
      box_ = std::move(o.box_);
      task_ = std::exchange(o.task_, nullptr);
    }
    return *this;
  }
  /// Joins the green thread if join() was not called (its outcome is dropped).
  ~Task() { join_quietly(); }

  /// Whether join() may still be called.
  bool joinable() const noexcept { return task_ != nullptr; }

  /// Waits for the green thread (parking only the calling green thread when called from one);
  /// returns its value or rethrows its exception. Throws farmem::Error (FM_PANICKED) if it
  /// panicked inside farmem, FM_INVALID_ARGUMENT if already joined.
  R join() {
    if (task_ == nullptr) {
      throw Error(ErrorKind::InvalidArgument, "Task::join: this task was already joined");
    }
    int code = 0;
    fm_task_t* t = std::exchange(task_, nullptr);
    check(fm_task_join(t, &code));
    return box_->outcome.take();
  }

 private:
  void join_quietly() noexcept {
    if (task_ != nullptr) {
      int code = 0;
      (void)fm_task_join(std::exchange(task_, nullptr), &code);
    }
  }
  std::unique_ptr<detail::TaskBox<R>> box_;
  fm_task_t* task_ = nullptr;
};

/// Starts `f()` as a new green thread of `rt` and returns its Task. Exceptions thrown by `f`
/// are rethrown by Task::join().
template <typename F>
auto spawn(Runtime& rt, F&& f) -> Task<std::invoke_result_t<std::decay_t<F>&>> {
  using R = std::invoke_result_t<std::decay_t<F>&>;
  std::unique_ptr<detail::TaskBox<R>> box =
      std::make_unique<detail::TaskBoxOf<R, std::decay_t<F>>>(std::forward<F>(f));
  return Task<R>(rt, std::move(box));
}

/// Lets other green threads of this worker run (call from a green thread).
inline void yield() { fm_yield(); }

/// Parks the calling green thread for `d` (its worker keeps running others).
inline void sleep_for(std::chrono::microseconds d) {
  check(fm_sleep_us(static_cast<std::uint64_t>(d.count() < 0 ? 0 : d.count())));
}

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

#endif  // FARMEM_HPP
