// A model that is a graph, not a chain: residual adds and several heads (an imported
// TFLite file). Nodes run in the order they were added (a topological order); each reads
// earlier values and makes one, and each is a named layer whose output can be read and
// restarted from, like a Sequential's.
#pragma once

#include <functional>
#include <map>
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
  };
  Tensor run(size_t first, size_t last);  // runs nodes [first, last], reading values_
  size_t last_node() const;               // the last node a forward pass runs: the later output's
  Tensor scores_from(const Tensor& output) const;
  std::vector<Node> nodes_;
  std::map<std::string, size_t> index_;  // node by name: adding and finding stay O(log n)
  std::vector<Tensor> values_;  // value 0: the input; value i+1: node i's output (last forward)
  int output_ = -1;
  int box_output_ = -1;  // the box encodings' value, or -1
  Head head_ = Head::Identity;
};

}  // namespace tg::models
