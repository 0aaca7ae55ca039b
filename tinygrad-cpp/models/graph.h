// A model that is a graph, not a chain: residual adds and several heads (an imported
// TFLite file). Nodes run in the order they were added (a topological order); each reads
// earlier values and makes one, and each is a named layer whose output can be read and
// restarted from, like a Sequential's.
//
// A forward that records nothing (under NoGrad) runs each MobileNetV2 inverted-residual block
// it recognizes (1x1 conv2d, relu6, depthwise_conv2d, relu6, 1x1 conv2d, and the add of the
// block's input; the expansion may be absent) as one kernel, kernels::inverted_residual, which
// never writes the wide maps inside the block to memory. The blocks are read from the kinds
// and the convolutions' descriptions (set_convolution); an inner value read by anything but
// the next node of the block keeps the block op by op. The block's inner layers are computed
// when first asked for (activation, forward_after, describe), from the block's input, so every
// layer stays readable. A recording forward, or any forward inside a NoFusion, runs op by op.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tinygrad-cpp/nn/nn.h"

namespace tg::models {

class Graph : public nn::Model {
 public:
  using Function = std::function<Tensor(const std::vector<Tensor>& inputs)>;
  // How the model's scores come from its output value.
  enum class Head {
    Identity,        // the output is [N, classes]
    MaxOverAnchors,  // the output is [N, anchors, classes]: a class's score is its best anchor's
  };

  // Value 0 is the model's input. add() returns the id of the node's output value.
  int add(const std::string& name, const std::string& kind, std::vector<int> inputs, Function function);
  // What a conv2d or depthwise_conv2d node computes, as its function does (the TFLite
  // importer states it), so the no-grad forward can fuse the blocks it is part of.
  struct Convolution {
    Tensor weight, bias;  // weight [O, C/groups, kh, kw]; bias [O] or undefined
    int64_t stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
    int64_t dilation_h = 1, dilation_w = 1, groups = 1;
  };
  void set_convolution(int value, Convolution convolution);
  void set_output(int value, Head head);
  // A detector's second output, its box encodings [N, anchors, 4] (per anchor ty, tx, th, tw:
  // models/detection.h decodes them). Once set, every forward pass computes it beside the
  // class logits, and box_encodings() returns the last pass's (undefined before).
  void set_box_output(int value);
  Tensor box_encodings() const;
  // Parameters the nodes use, under state_dict-like names ("<layer>.weight").
  void add_parameter(const std::string& name, const Tensor& t) { register_parameter(name, t); }

  Tensor forward(const Tensor& x) override;
  Tensor forward_until(const Tensor& x, const std::string& last_layer) override;
  Tensor forward_after(const Tensor& h, const std::string& layer) override;
  Tensor activation(const std::string& name) const override;
  std::vector<std::string> layer_names() const override;
  Tensor anchor_logits() const override;
  std::string describe() const override;  // one line per node: name, kind, output shape
  // Layers by kind ("conv2d", "relu6", ...), for tgc info and the tests.
  std::vector<std::string> layers_of_kind(const std::string& kind) const;
  // The index of the node named `name`, or of the one node whose name ends in "/name".
  size_t node_index(const std::string& name) const;
  size_t size() const { return nodes_.size(); }
  // How many blocks the last forward pass ran as one kernel (0 when it recorded, or under NoFusion).
  size_t fused_blocks() const { return fused_blocks_; }
  // The graph's structure, for code that reads it (the detection heads): node i's name and
  // kind, the nodes it reads (-1: the model's input), and the node making the box encodings
  // (-1: none).
  const std::string& name_of(size_t i) const { return nodes_.at(i).name; }
  const std::string& kind_of(size_t i) const { return nodes_.at(i).kind; }
  std::vector<int64_t> inputs_of(size_t i) const;
  int64_t box_node() const { return box_output_ - 1; }

 private:
  struct Node {
    std::string name, kind;
    std::vector<int> inputs;
    Function function;
    std::optional<Convolution> convolution;
  };
  // An inverted-residual block the no-grad forward runs as one kernel: nodes [first, last].
  struct Block {
    size_t first = 0, last = 0;
    std::optional<size_t> expand;  // the 1x1 expansion's node, if any
    size_t depthwise = 0, project = 0;
    bool residual = false;  // `last` adds the block's input
  };
  Tensor run(size_t first, size_t last);  // runs nodes [first, last], reading values_
  void evaluate(size_t node) const;       // node's value from its inputs' (computed first if a block skipped them)
  void plan();                            // finds blocks_ (again, after the graph changed)
  bool run_fused(size_t block);           // false, doing nothing, where the kernel does not fit the values
  void materialize(size_t node) const;    // computes a value a fused block skipped
  size_t last_node() const;               // the last node a forward pass runs: the later output's
  Tensor scores_from(const Tensor& output) const;
  std::vector<Node> nodes_;
  std::map<std::string, size_t> index_;  // node by name: adding and finding stay O(log n)
  // value 0: the input; value i+1: node i's output (last forward). Mutable: a value a fused
  // block skipped is computed when a const reader first asks for it.
  mutable std::vector<Tensor> values_;
  mutable std::vector<int64_t> skipped_by_;  // per node: the block that skipped its value, or -1
  std::vector<Block> blocks_;
  std::vector<int64_t> block_at_;  // per node: the block starting there, or -1
  bool planned_ = false;
  size_t fused_blocks_ = 0;
  int output_ = -1;
  int box_output_ = -1;  // the box encodings' value, or -1
  Head head_ = Head::Identity;
};

// RAII: while alive, Graph forwards on this thread run op by op even under NoGrad (the tests
// compare the two; a student can time the difference). Guards nest.
class NoFusion {
 public:
  NoFusion();
  ~NoFusion();
  NoFusion(const NoFusion&) = delete;
  NoFusion& operator=(const NoFusion&) = delete;
};

}  // namespace tg::models
