// Lesson 7: saliency maps (Simonyan, Vedaldi & Zisserman 2013).
//
// The gradient of a class score with respect to the pixels, taken in magnitude (the
// largest |gradient| over the channels), says which pixels the score is most
// sensitive to. SmoothGrad averages it over noisy copies to quiet the noise. Simonyan
// et al. used it for weakly supervised segmentation: seeds from the most and least
// salient pixels, grown into a foreground mask -- here by region growing.
#include <deque>

#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"07_saliency", "Saliency maps, SmoothGrad, and a mask grown from them",
                                     "For several test images: the image, |d score / d pixel| (Simonyan), SmoothGrad "
                                     "(50 noisy copies), and a foreground mask grown from the most salient pixels."});
  return lesson.run([&] {
    lesson.step("Load the model and one test image of each of several classes");
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const std::vector<int64_t> picks = lesson.smoke() ? std::vector<int64_t>{0, 1} : std::vector<int64_t>{0, 1, 2, 4, 9, 18};
    const int samples = lesson.smoke() ? 5 : 50;

    const int scale = 6;
    std::vector<io::Image> tiles;
    double mean_overlap = 0;
    for (int64_t index : picks) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const int64_t label = sample.labels[index];

      lesson.step(fmt::format("Test image {}: a {}", index, data::kFashionClasses[label]));
      const Tensor p = softmax(explain::scores(model, image), 1);
      lesson.say("p({}) = {:.4f}", data::kFashionClasses[label], p.at({0, label}));
      const Tensor gradient = explain::saliency(model, image, {label});
      const Tensor smooth = explain::smoothgrad(model, image, {label}, samples, 0.15f, 7);
      const Tensor saliency = viz::normalize(reshape(gradient, {1, 28, 28}), viz::Normalize::MaxAbs);
      const Tensor smooth_map = viz::normalize(reshape(smooth, {1, 28, 28}), viz::Normalize::MaxAbs);

      // Saliency is speckled at this size, so blur it first; then seeds: the top 10% of the
      // blurred map is foreground, everything below its 60th percentile background.
      const Tensor blurred = explain::gaussian_blur(smooth_map, 1.f);
      std::vector<float> sorted(blurred.data(), blurred.data() + 784);
      std::sort(sorted.begin(), sorted.end());
      const float high = sorted[static_cast<size_t>(0.90 * 783)], low = sorted[static_cast<size_t>(0.60 * 783)];
      // Region growing: from the foreground seeds, add 4-neighbours above the background level.
      std::vector<uint8_t> mask(784, 0);
      std::deque<int> frontier;
      for (int i = 0; i < 784; ++i)
        if (blurred.data()[i] >= high) mask[i] = 1, frontier.push_back(i);
      while (!frontier.empty()) {
        const int i = frontier.front();
        frontier.pop_front();
        const int y = i / 28, x = i % 28;
        for (const auto& [dy, dx] : {std::pair{1, 0}, {-1, 0}, {0, 1}, {0, -1}}) {
          const int ny = y + dy, nx = x + dx;
          if (ny < 0 || ny >= 28 || nx < 0 || nx >= 28) continue;
          const int j = ny * 28 + nx;
          if (!mask[j] && blurred.data()[j] > low) mask[j] = 1, frontier.push_back(j);
        }
      }
      // How well does the mask cover the object (pixels brighter than 10%)?
      int both = 0, either = 0, masked = 0;
      for (int i = 0; i < 784; ++i) {
        const bool object = sample.pixels[index * 784 + i] > 25;
        both += mask[i] && object;
        either += mask[i] || object;
        masked += mask[i];
      }
      const double overlap = either ? static_cast<double>(both) / either : 0.0;
      lesson.say("mask: {} of 784 pixels; intersection over union with the object's pixels: {:.2f}", masked, overlap);
      mean_overlap += overlap / static_cast<double>(picks.size());

      const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
      // The mask shown as the image where it is on, dark blue where it is off.
      io::Image masked_view{28, 28, 3, std::vector<uint8_t>(784 * 3)};
      for (int i = 0; i < 784; ++i) {
        const uint8_t v = sample.pixels[index * 784 + i];
        masked_view.pixels[i * 3 + 0] = mask[i] ? v : 10;
        masked_view.pixels[i * 3 + 1] = mask[i] ? v : 20;
        masked_view.pixels[i * 3 + 2] = mask[i] ? std::max<uint8_t>(v, 60) : 70;
      }
      tiles.push_back(input);
      tiles.push_back(viz::scale_nearest(viz::colorize(saliency, viz::Colormap::Viridis), scale));
      tiles.push_back(viz::scale_nearest(viz::colorize(smooth_map, viz::Colormap::Viridis), scale));
      tiles.push_back(viz::scale_nearest(masked_view, scale));
    }

    lesson.step("All images: input | saliency | SmoothGrad | grown mask over the input");
    lesson.number("mean IoU of the grown mask with the object", mean_overlap, "{:.3f}");
    lesson.figure("saliency.png", viz::grid(tiles, 4, 4),
                  "Rows: test images. Columns: input, saliency max|d score/d pixel|, SmoothGrad (mean over noisy "
                  "copies, sigma = 15% of the range), and the foreground mask grown from the top 10% of blurred SmoothGrad "
                  "(outside the mask: dark blue).");
    lesson.say("saliency is speckled: neighbouring pixels' gradients differ a lot. SmoothGrad's average over");
    lesson.say("noisy copies keeps what is consistent -- edges and the object's distinctive parts.");
  });
}
