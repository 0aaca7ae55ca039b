// libFuzzer target: the TFLite importer, and one forward pass of what it built.
#include "tests/fuzz/harness.h"
#include "tinygrad-cpp/models/tflite.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    const auto model = tg::models::parse_tflite(data, size, "input");
    const tg::preprocess::InputSpec& spec = model->info().input;
    if (spec.height * spec.width > 256 * 256) return;  // a valid but large model: the import was the test
    tg::NoGrad no_grad;
    model->forward(tg::Tensor::zeros({1, spec.channels, spec.height, spec.width}));
  });
}
