#include "tinygrad-cpp/explain/segment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "tinygrad-cpp/core/tensor.h"

namespace tg::segment {

static_assert(int{kBackground} == int{cv::GC_BGD} && int{kForeground} == int{cv::GC_FGD} &&
              int{kProbablyBackground} == int{cv::GC_PR_BGD} && int{kProbablyForeground} == int{cv::GC_PR_FGD});

std::vector<uint8_t> seeds_from_saliency(const Tensor& saliency, double foreground_quantile, double background_quantile) {
  if (!(saliency.ndim() == 2 || (saliency.ndim() == 3 && saliency.dim(0) == 1)))
    throw Error(fmt::format("seeds_from_saliency: the map must be [H,W] or [1,H,W], got {}", shape_str(saliency.shape())));
  if (!(background_quantile >= 0 && background_quantile < foreground_quantile && foreground_quantile <= 1))
    throw Error(fmt::format("seeds_from_saliency: quantiles must satisfy 0 <= background ({}) < foreground ({}) <= 1",
                            background_quantile, foreground_quantile));
  const size_t n = static_cast<size_t>(saliency.numel());
  if (n == 0) throw Error("seeds_from_saliency: the map is empty");
  for (int64_t i = 0; i < saliency.numel(); ++i)
    if (!std::isfinite(saliency.data()[i])) throw Error("seeds_from_saliency: the map has a value that is not finite");
  std::vector<uint8_t> seeds(n);
  // BEGIN SOLUTION(grabcut-seeds)
  // HINT: the value at quantile q of the map is the one at place round(q * (n - 1)) when its n values are
  // HINT: sorted; a pixel at or above the foreground quantile's value is surely object (kForeground), at or
  // HINT: below the background quantile's value surely background (kBackground), anything between is
  // HINT: kProbablyForeground (GrabCut decides it).
  std::vector<float> sorted(saliency.data(), saliency.data() + n);
  std::sort(sorted.begin(), sorted.end());
  auto quantile = [&](double q) { return sorted[static_cast<size_t>(std::lround(q * static_cast<double>(n - 1)))]; };
  const float high = quantile(foreground_quantile), low = quantile(background_quantile);
  for (size_t i = 0; i < n; ++i) {
    const float v = saliency.data()[i];
    seeds[i] = v >= high ? kForeground : v <= low ? kBackground : kProbablyForeground;
  }
  // END SOLUTION
  return seeds;
}

std::vector<uint8_t> grabcut(const io::Image& image, const std::vector<uint8_t>& seeds, int iterations) {
  const size_t pixels = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  if (image.width <= 0 || image.height <= 0 || (image.channels != 1 && image.channels != 3) ||
      image.pixels.size() != pixels * static_cast<size_t>(image.channels))
    throw Error(fmt::format("grabcut: the image must be gray or RGB with its pixels, got {}x{}x{} with {} bytes", image.width,
                            image.height, image.channels, image.pixels.size()));
  if (seeds.size() != pixels)
    throw Error(fmt::format("grabcut: {} seeds for a {}x{} image (expected {})", seeds.size(), image.width, image.height, pixels));
  if (iterations < 1 || iterations > 100) throw Error(fmt::format("grabcut: iterations must be 1..100, got {}", iterations));
  bool has_object = false, has_background = false;
  for (uint8_t s : seeds) {
    if (s > kProbablyForeground) throw Error(fmt::format("grabcut: seed value {} is not one of 0..3", s));
    has_object |= s == kForeground || s == kProbablyForeground;
    has_background |= s == kBackground || s == kProbablyBackground;
  }
  // Each color model needs pixels to fit.
  if (!has_object || !has_background) throw Error("grabcut: the seeds need both object and background pixels");

  cv::Mat rgb(image.height, image.width, CV_8UC3);  // cv::grabCut wants 3 channels
  for (size_t i = 0; i < pixels; ++i)
    for (int c = 0; c < 3; ++c)
      rgb.data[i * 3 + c] = image.pixels[i * image.channels + (image.channels == 3 ? c : 0)];
  cv::Mat mask(image.height, image.width, CV_8UC1);
  std::copy(seeds.begin(), seeds.end(), mask.data);
  cv::Mat background_model, object_model;
  try {
    cv::grabCut(rgb, mask, cv::Rect(), background_model, object_model, iterations, cv::GC_INIT_WITH_MASK);
  } catch (const cv::Exception& e) {
    throw Error(fmt::format("grabcut: OpenCV refused the input: {}", e.err));
  }
  std::vector<uint8_t> result(pixels);
  for (size_t i = 0; i < pixels; ++i) result[i] = mask.data[i] == cv::GC_FGD || mask.data[i] == cv::GC_PR_FGD;
  return result;
}

double intersection_over_union(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size())
    throw Error(fmt::format("intersection_over_union: masks of {} and {} pixels", a.size(), b.size()));
  size_t both = 0, either = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    both += a[i] && b[i];
    either += a[i] || b[i];
  }
  return either ? static_cast<double>(both) / static_cast<double>(either) : 1.0;
}

// The box clipped to the image, and a check that width x height matches the pixels given.
static Rect clipped(const char* op, size_t pixels, int width, int height, const Rect& box) {
  if (width <= 0 || height <= 0 || pixels != static_cast<size_t>(width) * static_cast<size_t>(height))
    throw Error(fmt::format("{}: {} pixels for a {}x{} image (expected {})", op, pixels, width, height,
                            static_cast<int64_t>(width) * height));
  return {std::clamp(box.x0, 0, width), std::clamp(box.y0, 0, height), std::clamp(box.x1, 0, width), std::clamp(box.y1, 0, height)};
}

void background_outside(std::vector<uint8_t>& seeds, int width, int height, const Rect& box) {
  const Rect b = clipped("background_outside", seeds.size(), width, height, box);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      if (!(x >= b.x0 && x < b.x1 && y >= b.y0 && y < b.y1)) seeds[static_cast<size_t>(y) * width + x] = kBackground;
}

BoxCoverage box_coverage(const std::vector<uint8_t>& mask, int width, int height, const Rect& box) {
  const Rect b = clipped("box_coverage", mask.size(), width, height, box);
  size_t in_box = 0, in_mask = 0, both = 0;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const bool inside = x >= b.x0 && x < b.x1 && y >= b.y0 && y < b.y1, object = mask[static_cast<size_t>(y) * width + x] != 0;
      in_box += inside;
      in_mask += object;
      both += inside && object;
    }
  return {.box_covered = in_box ? static_cast<double>(both) / static_cast<double>(in_box) : 0.0,
          .mask_inside = in_mask ? static_cast<double>(both) / static_cast<double>(in_mask) : 0.0};
}

}  // namespace tg::segment
