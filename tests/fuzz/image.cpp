// libFuzzer target: PNG (stb_image) and JPEG (libjpeg-turbo, and its EXIF orientation read by
// io::jpeg_orientation) through the photo intake every model's input comes from: load_photo
// (orientation, alpha on white), then take_photo with each fit.
#include <utility>

#include "tests/fuzz/harness.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/data/preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The orientation parser on the exact bytes (no slack after them, so a read past the end is caught).
  const int orientation = tg::io::jpeg_orientation(data, size);
  if (orientation < 1 || orientation > 8) __builtin_trap();
  const std::string path = fuzz::as_file(data, size, ".img");
  return fuzz::run([&] {
    using tg::preprocess::Fit;
    const tg::preprocess::InputSpec spec{3, 8, 8, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, false};
    tg::preprocess::Photo photo = tg::preprocess::load_photo(path);
    // Crop and pad copy the photo: on photos up to a megapixel only, so a 40-megapixel input
    // stays one resize of the photo itself (under libFuzzer's 10 s), as before.
    if (int64_t{photo.image.width} * photo.image.height <= 1'000'000)
      for (Fit fit : {Fit::Crop, Fit::Pad}) tg::preprocess::take_photo(photo, spec, fit);
    tg::preprocess::take_photo(std::move(photo), spec, Fit::Stretch);
  });
}
