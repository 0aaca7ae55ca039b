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
