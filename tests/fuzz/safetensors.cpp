// libFuzzer target: the safetensors reader.
#include "tests/fuzz/harness.h"
#include "tinygrad-cpp/data/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] { tg::io::parse_safetensors(data, size, "input"); });
}
