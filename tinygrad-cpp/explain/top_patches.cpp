#include "tinygrad-cpp/explain/top_patches.h"

#include <fmt/format.h>

#include <algorithm>

#include "tinygrad-cpp/explain/target.h"

namespace tg::explain {

namespace {
// A rectifier's gradient let through everywhere: no path to the neuron is cut.
std::vector<Tensor> pass_through(const Entry&, const Tensor& grad_output) { return {grad_output}; }

// The bounding box of the non-zero entries of image n of a gradient [N, C, H, W].
Window support(const Tensor& gradient, int64_t n) {
  const int64_t C = gradient.dim(1), H = gradient.dim(2), W = gradient.dim(3);
  Window box{H, W, 0, 0};
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        if (gradient.data()[((n * C + c) * H + y) * W + x] != 0.f)
          box = {std::min(box.y0, y), std::min(box.x0, x), std::max(box.y1, y + 1), std::max(box.x1, x + 1)};
  return box;
}
}  // namespace

Window ReceptiveField::window(int64_t y, int64_t x) const {
  const int64_t dy = (y - centre_y) * stride_y, dx = (x - centre_x) * stride_x;
  return {centre.y0 + dy, centre.x0 + dx, centre.y1 + dy, centre.x1 + dx};
}

ReceptiveField receptive_field(nn::Model& model, const std::string& layer) {
  const preprocess::InputSpec& spec = model.info().input;
  FreezeParameters frozen(model);
  OverrideBackward relu(Op::ReLU, pass_through), relu6(Op::ReLU6, pass_through);
  OverrideBackward spread(Op::MaxPool2d, Op::AvgPool2d.default_rule);
  // Two gray images: image 0 asks the centre neuron, image 1 its neighbour down and right.
  Tensor input = Tensor::zeros({2, spec.channels, spec.height, spec.width}).requires_grad_();
  Tensor a = model.forward_until(input, layer);
  if (a.ndim() == 2) a = reshape(a, {2, a.dim(1), 1, 1});
  if (a.ndim() != 4)
    throw Error(fmt::format("receptive_field: layer '{}' gives {}, not a map [N,C,h,w] or a vector [N,C]", layer,
                            shape_str(a.shape())));
  const int64_t h = a.dim(2), w = a.dim(3);
  ReceptiveField field;
  field.centre_y = h / 2, field.centre_x = w / 2;
  field.channels = a.dim(1);
  const int64_t next_y = std::min(field.centre_y + 1, h - 1), next_x = std::min(field.centre_x + 1, w - 1);
  Tensor seed = Tensor::zeros(a.shape());
  seed.data()[(0 * a.dim(1) * h + field.centre_y) * w + field.centre_x] = 1.f;
  seed.data()[((1 * a.dim(1)) * h + next_y) * w + next_x] = 1.f;
  a.backward(seed);
  const Tensor gradient = input.grad();
  field.centre = support(gradient, 0);
  if (field.centre.height() <= 0)
    throw Error(fmt::format("receptive_field: no input pixel reaches layer '{}' (is it computed from the input?)", layer));
  const Window next = support(gradient, 1);
  // The stride along an axis: how far the neighbour's window starts from the centre's. A centre
  // window cut by the border is at least about as large as the input: then every position is
  // said to see the whole axis (stride 0), rather than guess how far past the border it reaches.
  auto axis = [](int64_t& low, int64_t& high, int64_t next_low, int64_t size, bool has_next) -> int64_t {
    if (low == 0 || high == size) {
      low = 0, high = size;
      return 0;
    }
    return has_next ? next_low - low : 0;
  };
  field.stride_y = axis(field.centre.y0, field.centre.y1, next.y0, spec.height, next_y != field.centre_y);
  field.stride_x = axis(field.centre.x0, field.centre.x1, next.x0, spec.width, next_x != field.centre_x);
  return field;
}

std::vector<Patch> strongest_positions(const Tensor& activations, int64_t channel, int64_t first_image) {
  const Tensor& a = activations;
  if ((a.ndim() != 4 && a.ndim() != 2) || channel < 0 || channel >= a.dim(1))
    throw Error(fmt::format("strongest_positions: channel {} of activations {} (expected [N,C,h,w] or [N,C] with C > {})",
                            channel, shape_str(a.shape()), channel));
  const int64_t N = a.dim(0), C = a.dim(1), h = a.ndim() == 4 ? a.dim(2) : 1, w = a.ndim() == 4 ? a.dim(3) : 1;
  std::vector<Patch> best;
  for (int64_t n = 0; n < N; ++n) {
    const float* plane = a.data() + (n * C + channel) * h * w;
    const int64_t at = std::max_element(plane, plane + h * w) - plane;  // the first of equal maxima
    best.push_back({.image = first_image + n, .y = at / w, .x = at % w, .value = plane[at]});
  }
  return best;
}

std::vector<Patch> top_patches(std::vector<Patch> patches, int64_t k) {
  std::stable_sort(patches.begin(), patches.end(), [](const Patch& p, const Patch& q) {
    return p.value > q.value || (p.value == q.value && p.image < q.image);
  });
  if (static_cast<int64_t>(patches.size()) > k) patches.resize(static_cast<size_t>(std::max<int64_t>(k, 0)));
  return patches;
}

io::Image crop(const io::Image& image, const Window& window, uint8_t fill) {
  if (window.height() <= 0 || window.width() <= 0 || window.height() > io::kMaxImageSide || window.width() > io::kMaxImageSide)
    throw Error(fmt::format("crop: window rows {}..{}, columns {}..{} is empty or too large", window.y0, window.y1,
                            window.x0, window.x1));
  io::Image out{static_cast<int>(window.width()), static_cast<int>(window.height()), image.channels,
                std::vector<uint8_t>(static_cast<size_t>(window.width() * window.height() * image.channels), fill)};
  for (int64_t y = std::max<int64_t>(window.y0, 0); y < std::min<int64_t>(window.y1, image.height); ++y)
    for (int64_t x = std::max<int64_t>(window.x0, 0); x < std::min<int64_t>(window.x1, image.width); ++x)
      for (int c = 0; c < image.channels; ++c)
        out.at(static_cast<int>(y - window.y0), static_cast<int>(x - window.x0), c) =
            image.at(static_cast<int>(y), static_cast<int>(x), c);
  return out;
}

}  // namespace tg::explain
