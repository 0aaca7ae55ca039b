// TensorFlow Lite import: a float CNN in a .tflite file becomes an models::Graph.
//
// The file is a FlatBuffer; flatc's Verifier (over tflite.fbs, our subset of the
// format) checks every offset and length in it before any field is read. Each operator has
// a handler (tflite.cpp's table, keyed by the format's BuiltinOperator codes) that checks its
// inputs, computes its output's shape (compared with the declared one: a mismatch names the
// tensor) and charges it to the forward pass's memory budget (ImportLimits). Weights must be
// finite; tensors sharing a buffer share its decoded values. Supported
// operators: CONV_2D, DEPTHWISE_CONV_2D, ADD, RESHAPE, CONCATENATION, DEQUANTIZE (fp16
// weights to fp32), LOGISTIC, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, FULLY_CONNECTED,
// SOFTMAX, PAD, RELU, RELU6; any other is a one-line error naming it.
//
// What changes on the way in:
//   - NHWC activations become NCHW, OHWI (conv) and 1HWC (depthwise) weights OIHW;
//   - a fused activation becomes its own ReLU/ReLU6 layer ("<layer>/relu6"), so a rule
//     guard reaches it like any other rectifier;
//   - TensorFlow's SAME padding puts the odd extra row and column at the bottom and right:
//     where it is asymmetric (stride 2) an explicit pad layer comes first.
// Layers are named after the file's tensor names (the part before ';'), so they are
// stable; a name may be given by its last parts ("expanded_conv_16/project").
//
// Scores: an output [N, anchors, classes] (an SSD detector's class logits) scores a class
// by its best anchor, and its probability is the sigmoid of that ("is there a cat
// anywhere": the best box's logit); an output [N, classes] is a classifier's (a final
// SOFTMAX is left off so the scores are logits). Class names come from a labels file
// beside the model: `<stem>_labels.txt`, the stem with its last `_part` replaced by
// `_labels.txt`, or `labels.txt`; one label a line.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "tinygrad-cpp/models/graph.h"

namespace tg::models {

// What an imported model may cost (TFLite and torchvision files alike), checked at import from
// the shapes its layers compute, before anything runs: one forward pass at batch 1 holds every
// layer's output.
struct ImportLimits {
  int64_t forward_bytes = int64_t{1} << 30;  // the photo model needs 96 MB
};

std::shared_ptr<models::Graph> load_tflite(const std::string& path);
// The same from bytes in memory; `label` names them in errors (the fuzzer uses this).
std::shared_ptr<models::Graph> parse_tflite(const uint8_t* data, size_t size, const std::string& label,
                                            const ImportLimits& limits = {});

// TensorFlow's SAME padding along one axis: output ceil(in / stride), and the padding
// {before, after} that gives it, the odd one going after.
std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride, int64_t dilation);

}  // namespace tg::models
