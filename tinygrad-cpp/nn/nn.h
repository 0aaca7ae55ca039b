// Modules: layers that own their parameters, named as PyTorch's state_dict() names
// them, so weights move between the two without renaming or transposing.
//
// A Sequential remembers each layer's output from its last forward pass, so a lesson
// can ask for model.activation("conv2") after running the model.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/core/ops.h"
#include "tinygrad-cpp/data/preprocess.h"

namespace tg::nn {

using NamedParameters = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  virtual std::string describe() const = 0;  // e.g. "Conv2d(1, 16, kernel=5, padding=2)"

  // Parameters with their state_dict names ("conv1.weight"), in registration order.
  NamedParameters named_parameters() const;
  std::vector<Tensor> parameters() const;
  void zero_grad();

  virtual void train(bool on = true) { training_ = on; }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Appends this module's parameters under `prefix` (used by containers).
  virtual void collect_parameters(const std::string& prefix, NamedParameters& out) const;

 protected:
  void register_parameter(const std::string& name, Tensor t) { own_parameters_.emplace_back(name, std::move(t)); }
  NamedParameters own_parameters_;
  bool training_ = true;
};

// PyTorch's default initialization for conv and linear layers:
// weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Pair2 kernel, Generator& gen, Pair2 stride = 1, Pair2 padding = 0,
         Pair2 dilation = 1, int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Tensor weight, bias;
  Pair2 stride, padding, dilation;
  int64_t groups;
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Tensor weight, bias;
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string describe() const override { return "ReLU()"; }
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Pair2 kernel, Pair2 stride = 0, Pair2 padding = 0) : kernel_(kernel), stride_(stride), padding_(padding) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_, stride_, padding_); }
  std::string describe() const override;

 private:
  Pair2 kernel_, stride_, padding_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Pair2 kernel, Pair2 stride = 0, Pair2 padding = 0) : kernel_(kernel), stride_(stride), padding_(padding) {}
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, kernel_, stride_, padding_); }
  std::string describe() const override;

 private:
  Pair2 kernel_, stride_, padding_;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(Pair2 output_size) : size_(output_size) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, size_); }
  std::string describe() const override;

 private:
  Pair2 size_;
};

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return flatten(x, 1); }
  std::string describe() const override { return "Flatten()"; }
};

// Active only in training mode; its mask generator is seeded so runs repeat.
class Dropout : public Module {
 public:
  explicit Dropout(float p, uint64_t seed = 0) : p_(p), gen_(seed) {}
  Tensor forward(const Tensor& x) override { return dropout(x, p_, training_, gen_); }
  std::string describe() const override;

 private:
  float p_;
  Generator gen_;
};

// What a model says about itself: what input it takes, what its outputs mean.
struct ModelInfo {
  std::string arch = "sequential";    // "fashion_cnn", "tflite", "alexnet", "vgg16"
  preprocess::InputSpec input;         // channels, size, normalization
  std::vector<std::string> classes;    // one name per score ("" where unnamed)
  // How a score becomes a probability: softmax over the classes (a classifier), or the
  // sigmoid of each score on its own (a detector: each class is "is there one anywhere").
  enum class Probability { Softmax, Sigmoid } probability = Probability::Softmax;
  // A detector's "nothing here" class (label 0 of the SSD): never the prediction. -1: none.
  int64_t background = -1;
  // The layer Grad-CAM uses when none is named: a late feature map with some resolution left.
  std::string cam_layer;
};

// Every model -- FashionCNN, an imported TFLite graph, torchvision AlexNet or VGG16 --
// offers this one interface; the explain methods, the ascent engine, tgc and the lessons
// use nothing else. forward() gives class scores [N, classes] (logits, before any softmax
// or sigmoid); named layers can be read (activation, forward_until) and restarted from
// (forward_after), so any of them can be seeded.
class Model : public Module {
 public:
  // Runs the model up to and including layer `last_layer`, and returns its output.
  virtual Tensor forward_until(const Tensor& x, const std::string& last_layer) = 0;
  // Runs the rest of the model after `layer` on h (which stands for that layer's output in
  // the last forward pass), and returns the scores.
  virtual Tensor forward_after(const Tensor& h, const std::string& layer) = 0;
  // The output of layer `name` in the last forward pass.
  virtual Tensor activation(const std::string& name) const = 0;
  virtual std::vector<std::string> layer_names() const = 0;
  // A detector's per-anchor class logits [N, anchors, classes] from the last forward pass
  // (recorded, so a seed on one [n, anchor, class] explains one detection, where forward()'s
  // scores are only the best anchor of each class). Undefined for a classifier.
  virtual Tensor anchor_logits() const { return Tensor(); }

  const ModelInfo& info() const { return info_; }
  void set_info(ModelInfo info) { info_ = std::move(info); }
  // Scores [N, classes] -> probabilities, by the model's rule (softmax or sigmoid).
  Tensor probabilities(const Tensor& scores) const;
  // The predicted class of each row of scores [N, classes]: the highest score, skipping
  // the background class.
  std::vector<int64_t> predict(const Tensor& scores) const;
  // The class named `name` (any case), or a number in range; a readable error otherwise.
  int64_t class_index(const std::string& name) const;
  // The parameter with this state_dict name ("fc2.weight"); throws naming what there is.
  Tensor parameter(const std::string& name) const;

 protected:
  ModelInfo info_;
};

class Sequential : public Model {
 public:
  Sequential& add(const std::string& name, std::shared_ptr<Module> layer);
  Tensor forward(const Tensor& x) override;
  Tensor forward_until(const Tensor& x, const std::string& last_layer) override;
  Tensor forward_after(const Tensor& h, const std::string& layer) override;
  std::string describe() const override;  // one line per layer

  Tensor activation(const std::string& name) const override;
  std::vector<std::string> layer_names() const override;
  Module& layer(const std::string& name) const;
  size_t size() const { return layers_.size(); }

  void train(bool on = true) override;
  void collect_parameters(const std::string& prefix, NamedParameters& out) const override;

 private:
  size_t index_of(const std::string& name) const;  // throws naming the layers there are
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> layers_;
  std::vector<Tensor> outputs_;  // per layer, from the last forward
};

// ---- state dicts ----
// Copies tensors into the module's parameters by name. Every parameter must be
// present with the same shape, and (strict) no other tensors may be in `tensors`.
void load_state_dict(Module& module, const io::NamedTensors& tensors, bool strict = true);
void save_module(const std::string& path, const Module& module, const std::map<std::string, std::string>& metadata = {});

}  // namespace tg::nn
