#include "tinygrad-cpp/models/detection.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tg::models {

float Box::area() const { return std::max(0.f, x1 - x0) * std::max(0.f, y1 - y0); }

float iou(const Box& a, const Box& b) {
  const Box overlap{std::max(a.x0, b.x0), std::max(a.y0, b.y0), std::min(a.x1, b.x1), std::min(a.y1, b.y1)};
  const float both = overlap.area(), either = a.area() + b.area() - both;
  return either > 0 ? both / either : 0.f;
}

namespace {
// The scale of layer `index` of `count`, spaced evenly from min_scale to max_scale.
float layer_scale(const SsdAnchorOptions& o, size_t index, size_t count) {
  if (count == 1) return (o.min_scale + o.max_scale) * 0.5f;
  return o.min_scale + (o.max_scale - o.min_scale) * static_cast<float>(index) / static_cast<float>(count - 1);
}

// A layer's boxes a cell, as (scale, aspect ratio) pairs; layers of equal stride share one grid.
struct Layer {
  AnchorGrid grid;
  std::vector<float> scales, ratios;
};

std::vector<Layer> anchor_layers(const SsdAnchorOptions& o) {
  if (o.strides.empty() || o.input_height < 1 || o.input_width < 1)
    throw Error(fmt::format("ssd anchors: need strides and an input size (got {} strides, input {}x{})", o.strides.size(),
                            o.input_height, o.input_width));
  std::vector<Layer> layers;
  const size_t n = o.strides.size();
  for (size_t first = 0; first < n;) {
    Layer layer;
    size_t last = first;
    for (; last < n && o.strides[last] == o.strides[first]; ++last) {
      const float scale = layer_scale(o, last, n);
      if (last == 0 && o.reduce_boxes_in_lowest_layer) {
        layer.scales.insert(layer.scales.end(), {0.1f, scale, scale});
        layer.ratios.insert(layer.ratios.end(), {1.f, 2.f, 0.5f});
        continue;
      }
      for (float ratio : o.aspect_ratios) {
        layer.scales.push_back(scale);
        layer.ratios.push_back(ratio);
      }
      if (o.interpolated_scale_aspect_ratio > 0) {
        const float next = last + 1 == n ? 1.f : layer_scale(o, last + 1, n);
        layer.scales.push_back(std::sqrt(scale * next));
        layer.ratios.push_back(o.interpolated_scale_aspect_ratio);
      }
    }
    const int64_t stride = o.strides[first];
    if (stride < 1) throw Error(fmt::format("ssd anchors: stride {} is {}, expected >= 1", first, stride));
    layer.grid = {(o.input_height + stride - 1) / stride, (o.input_width + stride - 1) / stride,
                  static_cast<int64_t>(layer.scales.size())};
    layers.push_back(std::move(layer));
    first = last;
  }
  return layers;
}
}  // namespace

std::vector<AnchorGrid> anchor_grids(const SsdAnchorOptions& options) {
  std::vector<AnchorGrid> grids;
  for (const Layer& layer : anchor_layers(options)) grids.push_back(layer.grid);
  return grids;
}

std::vector<Anchor> ssd_anchors(const SsdAnchorOptions& options) {
  std::vector<Anchor> anchors;
  for (const Layer& layer : anchor_layers(options)) {
    const AnchorGrid& g = layer.grid;
    for (int64_t y = 0; y < g.height; ++y)
      for (int64_t x = 0; x < g.width; ++x)
        for (size_t k = 0; k < layer.scales.size(); ++k) {
          const float root = std::sqrt(layer.ratios[k]);
          anchors.push_back({(static_cast<float>(y) + options.offset) / static_cast<float>(g.height),
                             (static_cast<float>(x) + options.offset) / static_cast<float>(g.width),
                             layer.scales[k] / root, layer.scales[k] * root});
        }
  }
  return anchors;
}

Box decode_box(const float* t, const Anchor& a, const BoxCoder& c) {
  const float y = t[0] / c.y_scale * a.h + a.y, x = t[1] / c.x_scale * a.w + a.x;
  const float h = std::exp(t[2] / c.h_scale) * a.h, w = std::exp(t[3] / c.w_scale) * a.w;
  return {x - w / 2, y - h / 2, x + w / 2, y + h / 2};
}

std::vector<size_t> non_max_suppression(const std::vector<Box>& boxes, const std::vector<float>& scores,
                                        float iou_threshold, size_t max_kept) {
  if (boxes.size() != scores.size())
    throw Error(fmt::format("non_max_suppression: {} boxes but {} scores", boxes.size(), scores.size()));
  std::vector<size_t> order(boxes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<size_t> kept;
  for (size_t i : order) {
    if (kept.size() >= max_kept) break;
    bool overlaps = false;
    for (size_t k : kept) overlaps = overlaps || iou(boxes[i], boxes[k]) > iou_threshold;
    if (!overlaps) kept.push_back(i);
  }
  return kept;
}

std::vector<Head> detection_heads(const Graph& graph) {
  if (graph.box_node() < 0) throw Error("detection: the model has no box output (it is not an SSD detector)");
  // Back from the box output: a reshape, a layout change or a concatenation passes its
  // inputs on, in order, until only the predictors' convolutions are left.
  std::vector<int64_t> nodes = {graph.box_node()};
  for (bool expanded = true; expanded;) {
    expanded = false;
    std::vector<int64_t> next;
    for (int64_t n : nodes) {
      const std::string& kind = n >= 0 ? graph.kind_of(static_cast<size_t>(n)) : std::string("input");
      if (kind == "reshape" || kind == "to_nhwc" || kind == "concat") {
        const std::vector<int64_t> inputs = graph.inputs_of(static_cast<size_t>(n));
        next.insert(next.end(), inputs.begin(), inputs.end());
        expanded = true;
      } else if (kind == "conv2d") {
        next.push_back(n);
      } else {
        throw Error(fmt::format("detection: the box output is made by a {} layer{}; expected box predictors "
                                "(conv2d) joined by reshape and concat",
                                kind, n >= 0 ? " '" + graph.name_of(static_cast<size_t>(n)) + "'" : ""));
      }
    }
    nodes = std::move(next);
  }
  std::vector<Head> heads;
  int64_t first = 0;
  for (int64_t n : nodes) {
    Head h;
    h.predictor = graph.name_of(static_cast<size_t>(n));
    const Tensor out = graph.activation(h.predictor);
    if (out.ndim() != 4 || out.dim(1) % 4 != 0)
      throw Error(fmt::format("detection: box predictor '{}' makes {}, expected [N, 4 x boxes a cell, H, W]", h.predictor,
                              shape_str(out.shape())));
    const int64_t reads = graph.inputs_of(static_cast<size_t>(n)).at(0);
    h.layer = reads >= 0 ? graph.name_of(static_cast<size_t>(reads)) : "input";
    h.height = out.dim(2);
    h.width = out.dim(3);
    h.per_cell = out.dim(1) / 4;
    h.grid = fmt::format("{}x{}", h.height, h.width);
    h.first_anchor = first;
    h.anchors = h.height * h.width * h.per_cell;
    first += h.anchors;
    heads.push_back(h);
  }
  return heads;
}

bool is_detector(const nn::Model& model) {
  const auto* graph = dynamic_cast<const Graph*>(&model);
  return graph && graph->box_node() >= 0;
}

std::vector<Detection> detections(const Graph& graph, int64_t image_width, int64_t image_height,
                                  const DetectOptions& options) {
  const Tensor logits = graph.anchor_logits(), encodings = graph.box_encodings();
  if (!logits.defined() || !encodings.defined())
    throw Error("detection: run the detector forward first (no class logits or box encodings yet)");
  const int64_t anchors = logits.ndim() == 3 ? logits.dim(1) : 0, classes = logits.ndim() == 3 ? logits.dim(2) : 0;
  if (logits.ndim() != 3 || encodings.shape() != Shape{logits.dim(0), anchors, 4})
    throw Error(fmt::format("detection: class logits {} and box encodings {} do not match ([N, anchors, classes] and "
                            "[N, anchors, 4])",
                            shape_str(logits.shape()), shape_str(encodings.shape())));
  if (options.image < 0 || options.image >= logits.dim(0))
    throw Error(fmt::format("detection: image {} of a batch of {}", options.image, logits.dim(0)));
  if (image_width < 1 || image_height < 1)
    throw Error(fmt::format("detection: image size {}x{}, expected positive", image_width, image_height));

  // The anchors must be the ones the heads were trained with: the same grids, in order.
  const std::vector<Head> heads = detection_heads(graph);
  const std::vector<AnchorGrid> grids = anchor_grids();
  bool same = heads.size() == grids.size();
  for (size_t i = 0; same && i < heads.size(); ++i)
    same = heads[i].height == grids[i].height && heads[i].width == grids[i].width && heads[i].per_cell == grids[i].per_cell;
  std::string found;
  for (const Head& h : heads) found += fmt::format("{}{}x{}", found.empty() ? "" : ", ", h.grid, h.per_cell);
  if (!same || heads.back().first_anchor + heads.back().anchors != anchors)
    throw Error(fmt::format("detection: the model's heads ({} boxes a cell; {} anchors) are not SSD-MobileNetV2-300's "
                            "anchor grids (19x19x3, then 10x10, 5x5, 3x3, 2x2, 1x1 with 6)",
                            found, anchors));
  const std::vector<Anchor> grid = ssd_anchors();

  const float* t = encodings.data() + options.image * anchors * 4;
  const float* l = logits.data() + options.image * anchors * classes;
  std::vector<Box> boxes(static_cast<size_t>(anchors));
  for (int64_t a = 0; a < anchors; ++a) {
    const Box b = decode_box(t + a * 4, grid[static_cast<size_t>(a)]);
    boxes[static_cast<size_t>(a)] = {std::clamp(b.x0, 0.f, 1.f), std::clamp(b.y0, 0.f, 1.f), std::clamp(b.x1, 0.f, 1.f),
                                     std::clamp(b.y1, 0.f, 1.f)};
  }
  const std::vector<std::string>& labels = graph.info().classes;
  std::vector<Detection> found_all;
  for (int64_t c = 0; c < classes; ++c) {
    if (c == graph.info().background) continue;
    std::vector<Box> candidates;
    std::vector<float> scores;
    std::vector<int64_t> which;
    for (int64_t a = 0; a < anchors; ++a) {
      const float score = 1.f / (1.f + std::exp(-l[a * classes + c]));
      if (score < options.min_score) continue;
      candidates.push_back(boxes[static_cast<size_t>(a)]);
      scores.push_back(score);
      which.push_back(a);
    }
    for (size_t k : non_max_suppression(candidates, scores, options.iou_threshold, options.max_detections)) {
      Detection d;
      d.class_index = c;
      d.label = static_cast<size_t>(c) < labels.size() ? labels[static_cast<size_t>(c)] : fmt::format("class {}", c);
      d.anchor = which[k];
      d.score = scores[k];
      d.logit = l[d.anchor * classes + c];
      d.box = candidates[k];
      const float w = static_cast<float>(image_width), h = static_cast<float>(image_height);
      d.pixels = {d.box.x0 * w, d.box.y0 * h, d.box.x1 * w, d.box.y1 * h};
      while (d.head + 1 < heads.size() && heads[d.head + 1].first_anchor <= d.anchor) ++d.head;
      d.grid = heads[d.head].grid;
      d.layer = heads[d.head].layer;
      found_all.push_back(std::move(d));
    }
  }
  std::stable_sort(found_all.begin(), found_all.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
  if (found_all.size() > options.max_detections) found_all.resize(options.max_detections);
  return found_all;
}

std::vector<Detection> detect(Graph& graph, const Tensor& input, int64_t image_width, int64_t image_height,
                              const DetectOptions& options) {
  NoGrad no_grad;
  graph.forward(input);
  return detections(graph, image_width, image_height, options);
}

Detection best_detection(const Graph& graph, int64_t class_index, int64_t image_width, int64_t image_height,
                         int64_t image) {
  const Tensor logits = graph.anchor_logits();
  if (!logits.defined() || logits.ndim() != 3) throw Error("detection: run the detector forward first (no class logits yet)");
  const int64_t anchors = logits.dim(1), classes = logits.dim(2);
  if (class_index < 0 || class_index >= classes || image < 0 || image >= logits.dim(0))
    throw Error(fmt::format("detection: class {} of image {}, the model has {} classes and the batch {} images", class_index,
                            image, classes, logits.dim(0)));
  const float* l = logits.data() + image * anchors * classes;
  int64_t best = 0;
  for (int64_t a = 1; a < anchors; ++a)
    if (l[a * classes + class_index] > l[best * classes + class_index]) best = a;
  const float score = 1.f / (1.f + std::exp(-l[best * classes + class_index]));
  const std::vector<Detection> found = detections(
      graph, image_width, image_height, {.min_score = std::nextafter(score, 0.f), .max_detections = 1u << 20, .image = image});
  for (const Detection& d : found)
    if (d.class_index == class_index && d.anchor == best) return d;
  throw Error(fmt::format("detection: class {}'s best anchor {} is not among the detections", class_index, best));
}

}  // namespace tg::models
