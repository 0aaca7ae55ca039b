// A small fixed thread pool behind parallel_for.
//
// The pool has num_threads()-1 workers; the calling thread runs the first chunk
// itself. One parallel_for runs at a time: a call made while the pool is busy (from
// another thread, or nested inside a chunk) simply runs serially, which keeps the
// pool free of deadlocks and of work stealing.
//
// A training step makes hundreds of parallel_for calls of well under a millisecond
// each, so waking a sleeping thread (a futex round trip through the kernel) would cost
// more than the work. Workers therefore spin for a short while on an atomic counter
// before going to sleep on a condition variable, and the caller spins while it waits.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"

namespace tg::kernels {
namespace {

int threads_from_environment() {
  if (const char* env = std::getenv("TG_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1 && n <= 256) return n;
  }
  unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

constexpr int kSpinIterations = 1 << 14;  // roughly 50-100 microseconds of spinning

thread_local bool inside_parallel_region = false;

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stop_workers(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    stop_workers();
    stopping_ = false;
    // Workers start from the current generation: work published after this point is theirs.
    const uint64_t start = generation_.load();
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, start] { worker_loop(i, start); });
  }

  // Runs task(chunk) for chunk in [0, chunks); chunk 0 on the caller.
  void run(int chunks, const std::function<void(int)>& task) {
    task_ = &task;
    chunks_ = chunks;
    error_ = nullptr;
    // Every worker acknowledges every generation, even one with no chunk for it, so no
    // worker can still be reading task_ or chunks_ when the next run writes them.
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (sleepers_ > 0) wake_.notify_all();
    }
    run_chunk(task, 0);
    for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins < kSpinIterations) cpu_relax();
      else std::this_thread::yield();
    }
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  std::mutex busy;  // held by the thread currently using the pool

 private:
  void run_chunk(const std::function<void(int)>& task, int chunk) {
    inside_parallel_region = true;
    try {
      task(chunk);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    inside_parallel_region = false;
  }

  // Waits until the generation moves past `seen` (or the pool stops); returns the new one.
  uint64_t wait_for_work(uint64_t seen) {
    for (int spins = 0; spins < kSpinIterations; ++spins) {
      const uint64_t g = generation_.load(std::memory_order_acquire);
      if (g != seen || stopping_.load(std::memory_order_acquire)) return g;
      cpu_relax();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    ++sleepers_;
    wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen || stopping_.load(); });
    --sleepers_;
    return generation_.load(std::memory_order_acquire);
  }

  void worker_loop(int index, uint64_t seen) {
    for (;;) {
      seen = wait_for_work(seen);
      if (stopping_.load(std::memory_order_acquire)) return;
      if (index < chunks_) run_chunk(*task_, index);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      wake_.notify_all();
    }
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  int sleepers_ = 0;
  const std::function<void(int)>* task_ = nullptr;
  int chunks_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;
};

ThreadPool& pool() {
  static ThreadPool instance(threads_from_environment());
  return instance;
}

}  // namespace

int num_threads() { return pool().size(); }

bool in_parallel_region() { return inside_parallel_region; }

void set_num_threads(int n) {
  n = std::clamp(n, 1, 256);
  std::lock_guard<std::mutex> lock(pool().busy);
  pool().resize(n);
}

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  int64_t count = end - begin;
  if (count <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t max_chunks = std::min<int64_t>(num_threads(), (count + grain - 1) / grain);
  if (max_chunks <= 1 || inside_parallel_region) {
    fn(begin, end);
    return;
  }
  std::unique_lock<std::mutex> busy(pool().busy, std::try_to_lock);
  if (!busy.owns_lock()) {
    fn(begin, end);
    return;
  }
  int chunks = static_cast<int>(max_chunks);
  pool().run(chunks, [&](int chunk) {
    int64_t lo = begin + count * chunk / chunks;
    int64_t hi = begin + count * (chunk + 1) / chunks;
    if (lo < hi) fn(lo, hi);
  });
}

}  // namespace tg::kernels
