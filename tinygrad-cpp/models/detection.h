// Detections from an SSD detector (the photo model): its anchors, its box coder, sigmoid
// scores, per-class non-maximum suppression, and for each detection the head (feature map)
// its anchor belongs to and the layer that head reads.
//
// An SSD predicts, for every anchor (a fixed box on a grid), the class logits and an
// encoding of how to move and stretch the anchor onto the object. Decoding, as TensorFlow's
// faster_rcnn_box_coder and MediaPipe's TensorsToDetectionsCalculator do, with the anchor's
// centre (ya, xa) and size (ha, wa), all as fractions of the model's input:
//     y = ty / 10 * ha + ya      h = exp(th / 5) * ha
//     x = tx / 10 * wa + xa      w = exp(tw / 5) * wa
// The numbers are the photo model's own: the npm package's wasm carries its detector
// subgraph (ObjectDetectionOidV4Subgraph) with the calculators' options serialized, read
// byte by byte:
//   SsdAnchorsCalculator: input 300x300, 6 layers, min_scale 0.2, max_scale 0.95, anchor
//     offset 0.5, strides 16 32 64 128 256 512 (grids 19 10 5 3 2 1), aspect ratios
//     1 2 0.5 3 0.3333, reduce_boxes_in_lowest_layer, interpolated scale aspect 1 (default)
//   TensorsToDetectionsCalculator: 24 classes, 1917 boxes, y/x scale 10, h/w scale 5,
//     exponential box size, sigmoid scores, class 0 ignored, min score 0.5
//   NonMaxSuppressionCalculator: IoU overlap, suppression threshold 0.5, at most 100
// These are also the TF Object Detection API's ssd_mobilenet_v2 defaults
// (multiple_grid_anchor_generator), so 1,917 = 19x19x3 + 6 x (10x10 + 5x5 + 3x3 + 2x2 + 1x1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tinygrad-cpp/models/graph.h"

namespace tg::models {

// A box by its corners; as fractions of the model's input, or in pixels.
struct Box {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  float area() const;
};
float iou(const Box& a, const Box& b);  // intersection over union; 0 when either is empty

// An anchor by its centre and size, as fractions of the model's input.
struct Anchor {
  float y = 0, x = 0, h = 0, w = 0;
};

struct SsdAnchorOptions {
  int64_t input_height = 300, input_width = 300;
  float min_scale = 0.2f, max_scale = 0.95f;
  float offset = 0.5f;  // an anchor's centre within its cell
  std::vector<int64_t> strides = {16, 32, 64, 128, 256, 512};
  std::vector<float> aspect_ratios = {1.f, 2.f, 0.5f, 3.f, 0.3333f};
  bool reduce_boxes_in_lowest_layer = true;  // the first layer: scale 0.1 at ratio 1, min_scale at 2 and 0.5
  float interpolated_scale_aspect_ratio = 1.f;  // one more box a cell: sqrt(scale * next scale); 0: none
};
// One layer of anchors: a grid of height x width cells with per_cell anchors each,
// ordered by row, column, anchor (the heads' NHWC order).
struct AnchorGrid {
  int64_t height = 0, width = 0, per_cell = 0;
};
std::vector<AnchorGrid> anchor_grids(const SsdAnchorOptions& options = {});
// Every anchor, layer after layer (MediaPipe's SsdAnchorsCalculator).
std::vector<Anchor> ssd_anchors(const SsdAnchorOptions& options = {});

struct BoxCoder {
  float y_scale = 10.f, x_scale = 10.f, h_scale = 5.f, w_scale = 5.f;
};
// An encoding (ty, tx, th, tw) applied to its anchor: the box as fractions of the input (unclipped).
Box decode_box(const float* encoding, const Anchor& anchor, const BoxCoder& coder = {});

// Greedy non-maximum suppression: the indices kept, best score first (ties: lower index);
// a box is dropped when its IoU with a kept one is above iou_threshold.
std::vector<size_t> non_max_suppression(const std::vector<Box>& boxes, const std::vector<float>& scores,
                                        float iou_threshold, size_t max_kept);

// One head of the detector: the box predictor reading one feature map.
struct Head {
  std::string grid;            // "19x19", ...
  int64_t height = 0, width = 0, per_cell = 0;
  int64_t first_anchor = 0, anchors = 0;
  std::string predictor;       // its box-encoding convolution ("BoxPredictor_1/BoxEncodingPredictor")
  std::string layer;           // the layer it reads ("FeatureExtractor/MobilenetV2/Conv_1/relu6")
};
// The heads in anchor order, read from the graph: back from the box output through its
// reshapes and concatenations to the convolutions that make it. Needs a forward pass (the
// shapes). Throws when the graph has no box output.
std::vector<Head> detection_heads(const Graph& graph);

struct Detection {
  int64_t class_index = 0;
  std::string label;
  int64_t anchor = 0;     // 0 .. 1916: the index into anchor_logits() and box_encodings()
  float score = 0;        // sigmoid(logit)
  float logit = 0;
  Box box;                // as fractions of the model's input, clipped to [0, 1]
  Box pixels;             // in the original image (the SSD sees it stretched to 300x300)
  size_t head = 0;        // index into detection_heads()
  std::string grid;       // that head's feature map, "10x10"
  std::string layer;      // the layer that head reads
};

struct DetectOptions {
  // MediaPipe's values for this model. A score of 0.5 is where the sigmoid says "more likely
  // there than not"; IoU above 0.5 means the two boxes share most of their area.
  float min_score = 0.5f;
  float iou_threshold = 0.5f;
  size_t max_detections = 100;
  int64_t image = 0;  // which image of the batch
};

// The graph is a detector: it has a box output and per-anchor class logits.
bool is_detector(const nn::Model& model);
// The detections of the last forward pass, best first; non-maximum suppression is per class
// (a box may be both "Mug" and "Coffee cup"), class 0 (background) left out.
std::vector<Detection> detections(const Graph& graph, int64_t image_width, int64_t image_height,
                                  const DetectOptions& options = {});
// A forward pass without gradients, then detections().
std::vector<Detection> detect(Graph& graph, const Tensor& input, int64_t image_width, int64_t image_height,
                              const DetectOptions& options = {});

// The best detection of one class in the last forward pass: that class's best anchor (which
// non-maximum suppression always keeps) as a Detection, whatever its score (it may be below
// the 0.5 threshold). Cheap: it suppresses only the boxes that score at least as high.
Detection best_detection(const Graph& graph, int64_t class_index, int64_t image_width, int64_t image_height,
                         int64_t image = 0);

}  // namespace tg::models
