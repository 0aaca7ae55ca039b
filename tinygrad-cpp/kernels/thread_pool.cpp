// A small fixed thread pool behind parallel_for.
//
// The pool has num_threads()-1 workers; the calling thread works too. One parallel_for
// runs at a time: a call made while the pool is busy (from another thread, or nested
// inside a chunk) simply runs serially, which keeps the pool free of deadlocks. Serially
// means in the same chunks, one after another: how a call splits its range depends only on
// the range, the grain and num_threads(), never on timing, so results do not either.
//
// It must never be slower than one thread, also on a busy laptop where the scheduler
// may stop any worker for milliseconds. So no chunk belongs to a thread: the caller and
// the workers claim chunks from one counter until none is left, and the caller waits only
// for chunks that were claimed and are running. A worker the scheduler preempted simply
// finds nothing left when it wakes. Workers spin for some tens of microseconds (a training
// step makes hundreds of short calls; waking a sleeping thread costs a futex round trip: on
// the 2-core EPYC a woken worker claimed its chunk 36 us after the call began, a spinning one
// 0.3-0.5 us), then sleep on a condition variable.
//
// A worker the scheduler stops in the middle of a chunk it claimed still holds the caller
// until it runs again (a time slice, milliseconds). For a small call (a batch-1 FashionCNN
// layer is 5-20 us of work) that one wait costs more than the whole call on one thread, so
// when a caller whose own share was small waited long for the others, the machine is taken
// to be busy and every call runs on the caller alone for the next 5 ms (BusySpells in
// kernels.h). The other sign is the process being preempted (getrusage's involuntary
// context switches, which happen only when more threads want the cores than there are):
// then small calls run on the caller alone while it lasts. On a busy machine a worker
// otherwise wakes late, finds every chunk already run by the caller and spins, a thread
// taking a share of the cores for nothing; large calls still gain from it and keep sharing.
// A caller's share that the process was preempted during says nothing of the call's size (it
// may hold a neighbour's time slice), so it is not taken for a large one; under load such
// stretched small calls had kept up to 6 % of a batch-1 ascent's calls sharing.
// Idle, a claimed chunk runs at once and takes about as long as the caller's own, and
// nothing preempts the process, so no spell starts; busy, small calls stay near one
// thread's speed and large ones go back to two threads when the spell ends.
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"

namespace tg::kernels {
namespace {

// The cores this process may run on (its affinity mask, as taskset or a container sets it).
int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

// TG_NUM_THREADS if it is a whole number from 1 up, capped at the usable cores; otherwise
// the usable cores, with a one-line warning for a value that is not a number.
int threads_from_environment() {
  const int cores = usable_cores();
  const char* env = std::getenv("TG_NUM_THREADS");
  if (!env || !*env) return cores;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  if (end == env || *end != '\0' || n < 1) {
    std::fprintf(stderr, "warning: TG_NUM_THREADS='%.40s' is not a whole number >= 1; using %d threads\n", env, cores);
    return cores;
  }
  return static_cast<int>(std::min<long>(n, cores));
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

constexpr int kWorkerSpins = 2000;   // pauses, then sleep: 38 us on the 2-core EPYC (19 ns a pause)
constexpr int kCallerSpins = 1 << 12;
using Clock = BusySpells::Clock;

thread_local bool inside_parallel_region = false;
thread_local int caller_only_depth = 0;  // CallerOnly guards alive on this thread

// The claim counter: which run (generation, high 32 bits) and how many of its chunks were
// claimed (next 16) out of how many (low 16). One atomic word, so a worker still holding
// an old generation can never claim a chunk of a newer run.
constexpr uint64_t pack(uint64_t generation, uint64_t claimed, uint64_t total) {
  return (generation << 32) | (claimed << 16) | total;
}

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stop_workers(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    stop_workers();
    stopping_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  // Runs task(chunk) for chunk in [0, chunks), chunks < 65536, on whoever claims each.
  void run(int chunks, const std::function<void(int)>& task) {
    task_ = &task;
    error_ = nullptr;
    completed_.store(0, std::memory_order_relaxed);
    generation_ = (generation_ + 1) & 0xffffffffu;
    claims_.store(pack(generation_, 0, static_cast<uint64_t>(chunks)), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (sleepers_ > 0) wake_.notify_all();
    }
    // The caller works too, and takes whatever the workers have not claimed yet.
    const Clock::time_point start = Clock::now();
    while (claim_and_run(generation_)) {
    }
    const Clock::time_point own_done = Clock::now();
    for (int spins = 0; completed_.load(std::memory_order_acquire) != chunks; ++spins) {
      if (spins < kCallerSpins) cpu_relax();
      else std::this_thread::yield();
    }
    const Clock::time_point all_done = Clock::now();
    const Clock::duration own = own_done - start;
    spells_.after_call({.own = own, .wait = all_done - own_done, .end = all_done, .preempted = preempted_in(own, all_done)});
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  std::mutex busy;  // held by the thread currently using the pool
  // Whether this call runs on the caller alone (see the top of this file); reads the
  // process's preemptions at most once a millisecond (a system call). Called, like
  // after_serial_call, only by the thread holding `busy`.
  bool serial_for_now() {
    const Clock::time_point now = Clock::now();
    if (now - last_count_ >= std::chrono::milliseconds(1)) count_preemptions(now);
    return spells_.serial(now);
  }
  // A call that ran on the caller alone, in `chunks` chunks, from `start` to `end`.
  void after_serial_call(Clock::time_point start, Clock::time_point end, int chunks) {
    const Clock::duration own = (end - start) / std::max(chunks, 1);
    spells_.after_call({.own = own, .end = end, .preempted = preempted_in(own, end)});
  }

 private:
  // Feeds the process's preemptions so far to the spells; returns how many are new.
  int64_t count_preemptions(Clock::time_point now) {
    last_count_ = now;
    rusage usage{};
    return getrusage(RUSAGE_SELF, &usage) == 0 ? spells_.preemptions(usage.ru_nivcsw, now) : 0;
  }
  // Whether a caller's share of `own` that ended at `end` may hold a time slice lost to a
  // neighbour. Only a share that would count as large is checked: the count is a system call
  // (about a microsecond here), which a small call should not pay.
  bool preempted_in(Clock::duration own, Clock::time_point end) {
    return own >= BusySpells::kSmallShare && count_preemptions(end) > 0;
  }

  // Claims one chunk of run `generation` and runs it; false when none is left.
  bool claim_and_run(uint64_t generation) {
    uint64_t c = claims_.load(std::memory_order_acquire);
    for (;;) {
      const uint64_t claimed = (c >> 16) & 0xffff, total = c & 0xffff;
      if ((c >> 32) != generation || claimed >= total) return false;
      if (claims_.compare_exchange_weak(c, c + (uint64_t{1} << 16), std::memory_order_acq_rel)) {
        // The run cannot end before this chunk completes, so task_ is still this run's.
        inside_parallel_region = true;
        try {
          (*task_)(static_cast<int>(claimed));
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex_);
          if (!error_) error_ = std::current_exception();
        }
        inside_parallel_region = false;
        completed_.fetch_add(1, std::memory_order_acq_rel);
        return true;
      }
    }
  }

  // True when the claim word shows a run with chunks left to claim.
  static bool has_work(uint64_t c) { return ((c >> 16) & 0xffff) < (c & 0xffff); }

  void worker_loop() {
    for (;;) {
      uint64_t c = claims_.load(std::memory_order_acquire);
      for (int spins = 0; !has_work(c) && spins < kWorkerSpins && !stopping_.load(std::memory_order_relaxed); ++spins) {
        cpu_relax();
        c = claims_.load(std::memory_order_acquire);
      }
      if (!has_work(c)) {
        std::unique_lock<std::mutex> lock(mutex_);
        ++sleepers_;
        wake_.wait(lock, [&] { return has_work(claims_.load(std::memory_order_acquire)) || stopping_.load(); });
        --sleepers_;
        c = claims_.load(std::memory_order_acquire);
      }
      if (stopping_.load(std::memory_order_acquire)) return;
      while (claim_and_run(c >> 32)) {
      }
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
  uint64_t generation_ = 0;  // written by the caller only
  std::atomic<uint64_t> claims_{0};
  std::atomic<int> completed_{0};
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;
  BusySpells spells_;  // written by the caller only
  Clock::time_point last_count_{};
};

ThreadPool& pool() {
  static ThreadPool instance(threads_from_environment());
  return instance;
}

}  // namespace

int num_threads() { return pool().size(); }

bool in_parallel_region() { return inside_parallel_region; }

void set_num_threads(int n) {
  n = std::clamp(n, 1, usable_cores());
  std::lock_guard<std::mutex> lock(pool().busy);
  pool().resize(n);
}

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn, Split split) {
  int64_t count = end - begin;
  if (count <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t max_chunks = std::min<int64_t>(num_threads(), (count + grain - 1) / grain);
  if (max_chunks <= 1 || inside_parallel_region) {
    fn(begin, end);
    return;
  }
  const int chunks = static_cast<int>(std::min<int64_t>(max_chunks, 0xffff));
  auto run_chunk = [&](int chunk) {
    int64_t lo = begin + count * chunk / chunks;
    int64_t hi = begin + count * (chunk + 1) / chunks;
    if (lo < hi) fn(lo, hi);
  };
  std::unique_lock<std::mutex> busy(pool().busy, std::try_to_lock);
  const bool spell = busy.owns_lock() && pool().serial_for_now();
  if (!busy.owns_lock() || spell || caller_only_depth > 0) {
    // On the caller alone, but in the chunks the pool would have used (a Split::Free body in
    // one piece), inside a parallel region as they would have run: a kernel that sums one
    // partial result per chunk gives the same bits whether or not the machine was busy.
    struct Region {
      Region() { inside_parallel_region = true; }
      ~Region() { inside_parallel_region = false; }
    } region;
    const Clock::time_point start = Clock::now();
    if (split == Split::Free) fn(begin, end);
    else for (int chunk = 0; chunk < chunks; ++chunk) run_chunk(chunk);
    if (spell) pool().after_serial_call(start, Clock::now(), chunks);  // the sizes it judges by
    return;
  }
  pool().run(chunks, run_chunk);
}

CallerOnly::CallerOnly() { ++caller_only_depth; }
CallerOnly::~CallerOnly() { --caller_only_depth; }

}  // namespace tg::kernels
