// What is explained: a class score, one neuron, or one detection of a detector -- and the
// one place that runs a model as far as that target and seeds it.
//
// Every gradient method walks backward from the tensor the target is read from, with a
// seed that is 1 on the target and 0 elsewhere: a class's row of the scores, one neuron of
// a layer, or one anchor's class logit of a detector (model.anchor_logits()).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tinygrad-cpp/core/ops.h"
#include "tinygrad-cpp/nn/nn.h"

namespace tg::explain {

// RAII: the model's parameters stop requiring grad (so backward computes only what
// attribution needs, and never touches the parameters' .grad); restored on scope exit.
class FreezeParameters {
 public:
  explicit FreezeParameters(const nn::Module& model);
  ~FreezeParameters();
  FreezeParameters(const FreezeParameters&) = delete;
  FreezeParameters& operator=(const FreezeParameters&) = delete;

 private:
  std::vector<std::pair<Tensor, bool>> saved_;
};

// The class each image is explained for; -1 means "the predicted class".
using Targets = std::vector<int64_t>;

// One neuron: layer `layer`'s output at (channel, y, x) -- or (feature) for a flat layer,
// with y = x = -1.
struct Neuron {
  std::string layer;
  int64_t channel = 0, y = -1, x = -1;
};

// What is explained, in every image of a batch.
struct Target {
  enum class Kind { Class, Neuron, Detection };
  Kind kind = Kind::Class;
  Targets classes;  // Class and Detection: one per image, -1 = the predicted class
  Neuron neuron;    // Neuron: the same neuron in every image
  Targets anchors;  // Detection: one per image, -1 = the anchor where the class scores highest

  static Target of_classes(Targets classes) { return {.kind = Kind::Class, .classes = std::move(classes)}; }
  static Target of_neuron(Neuron neuron) { return {.kind = Kind::Neuron, .neuron = std::move(neuron)}; }
  static Target of_detections(Targets classes, Targets anchors) {
    return {.kind = Kind::Detection, .classes = std::move(classes), .anchors = std::move(anchors)};
  }
};
const char* kind_name(Target::Kind kind);  // "class", "neuron", "detection"

// The class scores (logits) of a batch, without recording.
Tensor scores(nn::Model& model, const Tensor& input);

// The target with every -1 replaced (predicted classes, best anchors), from a forward pass
// of the model on the batch (not recorded). A neuron is returned as it is.
Target resolve(nn::Model& model, const Tensor& input, const Target& target, const char* method);

// The tensor a target is read from in the forward pass just run, and a seed selecting it.
struct Seeded {
  Tensor root, seed;
  Target resolved;
};
// Runs the model on x (usually a leaf that requires grad) as far as the target needs:
// to the scores (a class), to anchor_logits() (a detection) or to the neuron's layer.
Seeded reach_target(nn::Model& model, const Tensor& x, const Target& target, const char* method);
// The same from scores already computed by forward() or forward_after() (not for a neuron).
Seeded seed_scores(const nn::Model& model, const Tensor& logits, const Target& target, const char* method);

// What a target's value is read as: its score (a logit), or its probability by the model's
// own rule (softmax over the classes, or a sigmoid: a detector's classes and anchors).
enum class Measure { Probability, Score };
// Each image's value of a resolved class or detection target, from the scores [N, classes]
// of the forward pass just run (a detection reads that pass's anchor_logits()).
std::vector<float> target_values(const nn::Model& model, const Tensor& logits, const Target& resolved, Measure measure);

// ---- helpers the method files share ----
// backward(seed) from `root` with `rule` on every rectifier (ReLU and ReLU6) of the model.
void backward_with_rule(const Tensor& root, const Tensor& seed, const BackwardRule& rule);
// The input is a batch [N,C,H,W] and the target names one class/anchor per image.
void check_input(const Tensor& input, const Target& target, const char* method);
// A batch of input's shape where every pixel is `pixel` (0..1) in the model's own
// normalization: integrated gradients' black baseline, occlusion's patch.
Tensor constant_input(const nn::Model& model, const Shape& shape, float pixel);

}  // namespace tg::explain
