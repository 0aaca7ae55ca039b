// What every fuzz target shares: run one reader on the input, accept a model or a tg::Error,
// and let anything else (a crash, a sanitizer report, another exception) end the run.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "tinygrad-cpp/core/tensor.h"

namespace fuzz {

// Readers that take a path get the input as a file in memory-backed /dev/shm.
inline std::string as_file(const uint8_t* data, size_t size, const char* extension) {
  const std::string path = "/dev/shm/tg-fuzz-" + std::to_string(::getpid()) + extension;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

template <class F>
int run(F reader) {
  try {
    reader();
  } catch (const tg::Error&) {  // a refusal is the right answer to a bad file
  }
  return 0;
}

}  // namespace fuzz
