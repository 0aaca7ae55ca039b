// A small fixed thread pool behind parallel_for.
//
// The pool has num_threads()-1 workers; the calling thread runs the first chunk
// itself. One parallel_for runs at a time: a call made while the pool is busy (from
// another thread, or nested inside a chunk) simply runs serially, which keeps the
// pool free of deadlocks and of work stealing.
#include <algorithm>
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

thread_local bool inside_parallel_region = false;

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stop_workers(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    stop_workers();
    stopping_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }

  // Runs task(chunk) for chunk in [0, chunks); chunk 0 on the caller.
  void run(int chunks, const std::function<void(int)>& task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      chunks_ = chunks;
      pending_ = chunks - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_chunk(task, 0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
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

  void worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* task = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (index >= chunks_) continue;
        task = task_;
      }
      run_chunk(*task, index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int chunks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

ThreadPool& pool() {
  static ThreadPool instance(threads_from_environment());
  return instance;
}

}  // namespace

int num_threads() { return pool().size(); }

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
