// libFuzzer target: the .npy reader.
#include "tests/fuzz/harness.h"
#include "tinygrad-cpp/data/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::as_file(data, size, ".npy");
  return fuzz::run([&] { tg::io::load_npy(path); });
}
