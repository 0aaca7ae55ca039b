#include "tinygrad-cpp/course/photo_detection.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "tinygrad-cpp/models/graph.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::lesson {

explain::Target PhotoDetection::target() const {
  return explain::Target::of_detections({detection.class_index}, {detection.anchor});
}

Box PhotoDetection::input_box(const nn::Model& model) const {
  const auto& spec = model.info().input;
  const auto pixel = [](float fraction, int64_t side) { return static_cast<int64_t>(std::lround(fraction * static_cast<float>(side))); };
  return {pixel(detection.box.x0, spec.width), pixel(detection.box.y0, spec.height), pixel(detection.box.x1, spec.width),
          pixel(detection.box.y1, spec.height)};
}

std::string PhotoDetection::describe() const {
  const models::Detection& d = detection;
  return fmt::format("{} p {:.2f}{}, box {},{},{},{} (image pixels), anchor {} of the {} head", d.label, d.score,
                     detected ? "" : " (below the 0.5 threshold: its best anchor)", std::lround(d.pixels.x0),
                     std::lround(d.pixels.y0), std::lround(d.pixels.x1), std::lround(d.pixels.y1), d.anchor, d.grid);
}

PhotoDetection photo_detection(nn::Model& model, const Photo& photo) {
  auto* graph = dynamic_cast<models::Graph*>(&model);
  if (!graph || !models::is_detector(model)) throw Error("photo_detection: the photo model is not a detector");
  {
    NoGrad no_grad;
    graph->forward(photo.input);
  }
  const models::Detection d = models::best_detection(*graph, photo.target, photo.original.width, photo.original.height);
  return {.detection = d, .detected = d.score >= models::DetectOptions{}.min_score};
}

Photo shrunk_on_gray(nn::Model& model, const Photo& photo, float scale) {
  if (!(scale > 0.f && scale <= 1.f)) throw Error(fmt::format("shrunk_on_gray: scale {}, expected in (0, 1]", scale));
  const io::Image& in = photo.original;
  const int w = std::max(1, static_cast<int>(std::lround(static_cast<float>(in.width) * scale)));
  const int h = std::max(1, static_cast<int>(std::lround(static_cast<float>(in.height) * scale)));
  const io::Image small = viz::to_image(upsample(viz::from_image(in), h, w, Interpolation::Bilinear));
  Photo out = photo;
  out.name = fmt::format("{} at {:.0f}% on gray", photo.name, 100 * scale);
  out.original.pixels.assign(out.original.pixels.size(), 128);
  const int left = (in.width - w) / 2, top = (in.height - h) / 2;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < in.channels; ++c) out.original.at(top + y, left + x, c) = small.at(y, x, std::min(c, small.channels - 1));
  out.input = preprocess::image_to_input(out.original, model.info().input);
  out.detection = photo_detection(model, out).detection;
  return out;
}

std::string FramedDetection::why() const {
  if (scale == 1.f) return fmt::format("the {} box covers {:.0f}% of {}: explained as it is", found.detection.label,
                                       100 * box_share_before, photo.name);
  return fmt::format("the {} box covers {:.0f}% of the photo (a frame-filling object: a coarse head's box over everything); "
                     "shrunk to {:.0f}% on gray, it is {} and its box covers {:.0f}%",
                     found.detection.label, 100 * box_share_before, 100 * scale, found.describe(), 100 * found.detection.box.area());
}

Box FramedDetection::framed(const Box& b, const nn::Model& model) const {
  const auto& spec = model.info().input;
  const auto move = [&](int64_t v, int64_t side) {
    const float centre = static_cast<float>(side) / 2;
    return static_cast<int64_t>(std::lround(centre + (static_cast<float>(v) - centre) * scale));
  };
  return {move(b.x0, spec.width), move(b.y0, spec.height), move(b.x1, spec.width), move(b.y1, spec.height)};
}

FramedDetection detection_inside_frame(nn::Model& model, const Photo& photo, double max_box_share) {
  FramedDetection framed{.photo = photo, .found = photo_detection(model, photo)};
  framed.box_share_before = framed.found.detection.box.area();
  if (framed.box_share_before <= max_box_share) return framed;
  framed.photo = shrunk_on_gray(model, photo, kShrink);
  framed.found = photo_detection(model, framed.photo);
  framed.scale = kShrink;
  return framed;
}

io::Image heat_over(const io::Image& picture, const Tensor& unit, viz::Colormap colormap, float neutral) {
  const Tensor map = reshape(unit, {1, unit.dim(unit.ndim() - 2), unit.dim(unit.ndim() - 1)});
  if (map.dim(1) != picture.height || map.dim(2) != picture.width)
    throw Error(fmt::format("heat_over: the map is {}x{} but the picture {}x{}", map.dim(2), map.dim(1), picture.width,
                            picture.height));
  const io::Image heat = viz::colorize(map, colormap);
  const float reach = std::max(neutral, 1.f - neutral);
  io::Image out = heat;
  for (int64_t i = 0; i < map.numel(); ++i) {
    const float alpha = 0.85f * std::sqrt(std::min(1.f, std::fabs(map.data()[i] - neutral) / reach));
    const uint8_t* px = &picture.pixels[static_cast<size_t>(i) * picture.channels];
    const float base = picture.channels >= 3 ? 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2] : px[0];
    for (int c = 0; c < 3; ++c) {
      const float tint = heat.pixels[static_cast<size_t>(i) * 3 + c];
      out.pixels[static_cast<size_t>(i) * 3 + c] = static_cast<uint8_t>(std::lround(base + alpha * (tint - base)));
    }
  }
  return out;
}

io::Image with_box(const io::Image& picture, const PhotoDetection& found) {
  io::Image out = picture;
  const models::Box& b = found.detection.box;
  const float w = static_cast<float>(picture.width), h = static_cast<float>(picture.height);
  const int side = std::min(picture.width, picture.height);
  viz::draw_box(out, b.x0 * w, b.y0 * h, b.x1 * w, b.y1 * h, viz::class_color(found.detection.class_index),
                fmt::format("{} {:.2f}", found.detection.label, found.detection.score), std::max(2, side / 150),
                std::max(12, side / 22));
  return out;
}

}  // namespace tg::lesson
