/**
 * @file farmem/core.hpp
 * @brief farmem's C++ core over `farmem/core.h`: errors, Config, Runtime, green threads.
 *
 * Part of the header-only C++17 API; `farmem.hpp` includes it with the other subsystems
 * (`farmem/objects.hpp`, `farmem/dataframe.hpp`), each of which includes this one.
 *
 * Design note
 * -----------
 * Everything here is a thin RAII/template layer over the C functions of `farmem/core.h`; no
 * state lives in this header beyond the C handles it owns. The invariants it keeps (and the
 * other subsystem headers build on):
 *
 * - **Errors are exceptions.** Every C call's status goes through farmem::check(), which throws
 *   farmem::Error carrying the ErrorKind and the text of `fm_last_error()` (read right after the
 *   failed call, on the same OS thread, before any other farmem call can overwrite it).
 * - **No exception ever crosses the C ABI.** Lambdas given to Runtime::run() and farmem::spawn()
 *   run behind a `noexcept` trampoline that catches everything into a `std::exception_ptr`;
 *   Runtime::run() and Task::join() rethrow it on the caller's side. (Unwinding into Rust frames
 *   would be undefined behaviour.)
 * - **One owner per handle.** Every wrapper is move-only and destroys its handle once
 *   (detail::Handle); a moved-from wrapper holds `nullptr` (the C layer rejects it with
 *   FM_INVALID_ARGUMENT, so using one throws rather than crashing).
 *
 * Green threads (AIFM §4.2): code run through Runtime::run() or farmem::spawn() is a green
 * thread; a far-memory miss parks only that green thread while its worker runs others.
 *
 * Destructors never throw: a failure while releasing a handle is dropped (use the explicit
 * `close()` of Runtime to see the runtime's shutdown status).
 */
#ifndef FARMEM_CORE_HPP
#define FARMEM_CORE_HPP

#include "core.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

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
  /// How long a write that needs local memory waits for the evacuator before throwing
  /// ErrorKind::OutOfLocalMemory (0 = default 2 s; raise it on a heavily loaded machine).
  Config& alloc_wait(std::chrono::milliseconds v) {
    alloc_wait_ms_ = v.count() < 0 ? 0 : static_cast<std::uint64_t>(v.count());
    return *this;
  }
  /// Threads moving cold objects to far memory, 1..=64 (0 = default 1).
  Config& evacuator_threads(std::uint32_t v) { evacuator_threads_ = v; return *this; }

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
    if (alloc_wait_ms_ != 0) c.alloc_wait_ms = alloc_wait_ms_;
    if (evacuator_threads_ != 0) c.evacuator_threads = evacuator_threads_;
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
  std::uint64_t alloc_wait_ms_ = 0;
  std::uint32_t evacuator_threads_ = 0;
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

}  // namespace farmem

#endif  // FARMEM_CORE_HPP
