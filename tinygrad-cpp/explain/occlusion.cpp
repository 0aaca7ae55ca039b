#include "tinygrad-cpp/explain/occlusion.h"

#include "tinygrad-cpp/explain/progress.h"

#include <fmt/format.h>

#include <algorithm>

namespace tg::explain {

OcclusionWindow occlusion_window(int64_t height, int64_t width) {
  const int64_t side = std::max(height, width);
  const int64_t window = std::max<int64_t>(4, (side * 32 + 150) / 300);
  return {.window = window, .stride = window / 2};
}

Tensor occlusion(nn::Model& model, const Tensor& input, const Target& target, int64_t window, int64_t stride, float fill,
                 Measure measure) {
  check_input(input, target, "occlusion");
  if (window < 1 || stride < 1) throw Error(fmt::format("occlusion: window {} and stride {} must be >= 1", window, stride));
  const int64_t N = input.dim(0), C = input.dim(1), H = input.dim(2), W = input.dim(3), image = C * H * W;
  NoGrad no_grad;
  const Tensor clean = scores(model, input);
  const Target resolved = seed_scores(model, clean, target, "occlusion").resolved;
  const std::vector<float> base = target_values(model, clean, resolved, measure);
  int64_t windows_done = 0;
  const int64_t windows_total = ((H + stride - 1) / stride) * ((W + stride - 1) / stride);
  // The target's value in each image of a batch of occluded copies, `copies` per image
  // (row n * copies + b is image n's copy b).
  auto measured = [&](const Tensor& batch, int64_t copies) {
    Target repeated = resolved;
    for (auto* v : {&repeated.classes, &repeated.anchors}) {
      if (v->empty()) continue;
      Targets each;
      for (const int64_t t : *v) each.insert(each.end(), static_cast<size_t>(copies), t);
      *v = each;
    }
    std::vector<float> values = target_values(model, scores(model, batch), repeated, measure);
    windows_done += copies;
    progress("windows", windows_done, windows_total);
    return values;
  };
  Tensor total = Tensor::zeros({N, 1, H, W});
  // BEGIN SOLUTION(occlusion)
  // HINT: put a window x window square of `fill` (over every channel, clipped at the edges) at every corner
  // HINT: (y0, x0) on the stride grid from (0, 0); measure each occluded image and add the drop of its target,
  // HINT: base - occluded, to every pixel the square covered; each pixel's answer is the mean over the squares
  // HINT: that covered it. measured(batch, B) takes B occluded copies of every image at once: much faster.
  std::vector<std::pair<int64_t, int64_t>> corners;  // every window position
  for (int64_t y0 = 0; y0 < H; y0 += stride)
    for (int64_t x0 = 0; x0 < W; x0 += stride) corners.emplace_back(y0, x0);
  // The windows go through the model in batches of about 8 occluded images (a batched
  // forward pass uses the threads and the gemm far better than one image at a time).
  const int64_t per_pass = std::max<int64_t>(1, 8 / N);
  Tensor count = Tensor::zeros({N, 1, H, W});
  for (size_t first = 0; first < corners.size(); first += static_cast<size_t>(per_pass)) {
    const int64_t B = std::min<int64_t>(per_pass, static_cast<int64_t>(corners.size() - first));
    Tensor occluded = Tensor::empty({N * B, C, H, W});  // image n with window b is row n*B + b
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < B; ++b) {
        float* dst = occluded.data() + (n * B + b) * image;
        std::copy(input.data() + n * image, input.data() + (n + 1) * image, dst);
        const auto [y0, x0] = corners[first + static_cast<size_t>(b)];
        for (int64_t c = 0; c < C; ++c)
          for (int64_t y = y0; y < std::min(H, y0 + window); ++y)
            std::fill(dst + (c * H + y) * W + x0, dst + (c * H + y) * W + std::min(W, x0 + window), fill);
      }
    const std::vector<float> p = measured(occluded, B);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < B; ++b) {
        const float drop = base[static_cast<size_t>(n)] - p[static_cast<size_t>(n * B + b)];
        const auto [y0, x0] = corners[first + static_cast<size_t>(b)];
        for (int64_t y = y0; y < std::min(H, y0 + window); ++y)
          for (int64_t x = x0; x < std::min(W, x0 + window); ++x) {
            total.at({n, 0, y, x}) += drop;
            count.at({n, 0, y, x}) += 1.f;
          }
      }
  }
  for (int64_t i = 0; i < total.numel(); ++i)
    if (count.data()[i] > 0) total.data()[i] /= count.data()[i];
  // END SOLUTION
  return total;
}

}  // namespace tg::explain

// ---- this family's entries in the method table ----
namespace tg::explain {

std::vector<Method> perturbation_methods() {
  return {
      {.name = "occlusion",
       .description = "the drop in the target's probability when a patch hides each pixel (Zeiler & Fergus 2014)",
       .targets = {.classes = true, .detections = true},
       .parameters = {{.name = "window", .default_value = 0, .min = 0, .max = 4096,
                       .help = "occlusion window in pixels of the model's input (0: scaled to the input, 32 on 300x300, "
                               "4 on 28x28)",
                       .kind = Parameter::Kind::Whole},
                      {.name = "stride", .default_value = 0, .min = 0, .max = 4096,
                       .help = "occlusion stride (0: half the window)", .kind = Parameter::Kind::Whole}},
       .rule = RectifierRule::NoGradient,
       .run = [](const Call& c) {
         // The patch: black on a gray model (FashionCNN's background), mid-gray on photos.
         const float pixel = c.model.info().input.channels == 1 ? 0.f : 0.5f;
         const float fill = constant_input(c.model, c.input.shape(), pixel).data()[0];
         const OcclusionWindow scaled = occlusion_window(c.input.dim(2), c.input.dim(3));
         const int64_t window = c.whole("window") ? c.whole("window") : scaled.window;
         const int64_t stride = c.whole("stride") ? c.whole("stride") : std::max<int64_t>(1, window / 2);
         return occlusion(c.model, c.input, c.target, window, stride, fill);
       }},
  };
}

}  // namespace tg::explain
