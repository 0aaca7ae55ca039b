// libFuzzer target: the IDX reader, plain and gzipped (the same path reads both).
#include "tests/fuzz/harness.h"
#include "tinygrad-cpp/data/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::as_file(data, size, ".idx");
  return fuzz::run([&] { tg::data::read_idx(path, size > 3 && data[3] == 1 ? 0x00000801 : 0x00000803); });
}
