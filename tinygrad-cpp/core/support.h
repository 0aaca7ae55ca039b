// What tensor.h offers besides the tensor, kept out of the way of a first reading: the
// seedable random generator, text made safe for a terminal, and the memory counters.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace tg {

// A seedable random generator. mt19937_64 is standardized, and the normal
// distribution is our own Box-Muller, so a seed gives the same numbers everywhere.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed) {}
  float uniform(float lo = 0.f, float hi = 1.f);  // in [lo, hi)
  float normal(float mean = 0.f, float stddev = 1.f);
  uint64_t next_u64() { return engine_(); }
  void seed(uint64_t s) { engine_.seed(s); has_spare_ = false; }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// Text from a file or the command line made safe for a terminal: control characters and
// bytes that are not valid UTF-8 become \xNN. A name with a newline cannot split a one-line
// error, and an escape sequence in a file cannot reach the terminal.
std::string printable(const std::string& text);

// Counters for tests and lessons that check memory does not grow.
namespace debug {
int64_t live_tensors();
int64_t live_storage_bytes();
}  // namespace debug

// Releases the cached free blocks (the memory of tensors that were freed).
void release_cached_storage();

}  // namespace tg
