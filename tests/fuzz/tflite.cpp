// libFuzzer target: the TFLite importer, and one forward pass of what it built. The import
// charges every layer's output to a small budget, so every model it accepts runs forward.
#include "tests/fuzz/harness.h"
#include "tinygrad-cpp/models/tflite.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz::run([&] {
    const auto model = tg::models::parse_tflite(data, size, "input", {.forward_bytes = int64_t{16} << 20});
    const tg::preprocess::InputSpec& spec = model->info().input;
    tg::NoGrad no_grad;
    model->forward(tg::Tensor::zeros({1, spec.channels, spec.height, spec.width}));
  });
}
