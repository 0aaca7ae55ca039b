// libFuzzer target: PNG (stb_image) and JPEG (libjpeg-turbo) through load_image, then the
// preprocessing every model applies.
#include "tests/fuzz/harness.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/data/preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::as_file(data, size, ".img");
  return fuzz::run([&] {
    const tg::io::Image image = tg::io::load_image(path);
    tg::preprocess::image_to_input(image, {3, 8, 8, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, false});
  });
}
