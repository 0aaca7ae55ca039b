#include "tinygrad-cpp/models/graph.h"

#include <fmt/format.h>

#include <algorithm>

namespace tg::models {

int Graph::add(const std::string& name, const std::string& kind, std::vector<int> inputs, Function function) {
  for (int v : inputs)
    if (v < 0 || v > static_cast<int>(nodes_.size()))
      throw Error(fmt::format("graph: node '{}' reads value {}, which no earlier node makes", name, v));
  if (!index_.emplace(name, nodes_.size()).second) throw Error("graph: a layer named '" + name + "' already exists");
  nodes_.push_back({name, kind, std::move(inputs), std::move(function)});
  values_.resize(nodes_.size() + 1);
  return static_cast<int>(nodes_.size());
}

void Graph::set_output(int value, Head head) {
  if (value < 1 || value > static_cast<int>(nodes_.size())) throw Error("graph: the output must be a node's value");
  output_ = value;
  head_ = head;
}

void Graph::set_box_output(int value) {
  if (value < 1 || value > static_cast<int>(nodes_.size())) throw Error("graph: the box output must be a node's value");
  box_output_ = value;
}

Tensor Graph::box_encodings() const {
  if (box_output_ < 1 || values_.size() <= static_cast<size_t>(box_output_)) return Tensor();
  return values_[box_output_];
}

std::vector<int64_t> Graph::inputs_of(size_t i) const {
  std::vector<int64_t> nodes;
  for (int v : nodes_.at(i).inputs) nodes.push_back(static_cast<int64_t>(v) - 1);
  return nodes;
}

size_t Graph::last_node() const {
  if (output_ < 1) throw Error("graph: no output set");
  return static_cast<size_t>(std::max(output_, box_output_) - 1);
}

size_t Graph::node_index(const std::string& name) const {
  if (auto exact = index_.find(name); exact != index_.end()) return exact->second;
  size_t found = nodes_.size(), matches = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const std::string& n = nodes_[i].name;
    if (n.size() > name.size() && n.compare(n.size() - name.size(), name.size(), name) == 0 &&
        n[n.size() - name.size() - 1] == '/') {
      found = i;
      ++matches;
    }
  }
  if (matches == 1) return found;
  throw Error(fmt::format("no layer named '{}'{} (`tgc info --model FILE` lists the {} layers)", name,
                          matches > 1 ? fmt::format(": {} layers end with it", matches) : "", nodes_.size()));
}

Tensor Graph::run(size_t first, size_t last) {
  std::vector<Tensor> inputs;
  for (size_t i = first; i <= last; ++i) {
    const Node& node = nodes_[i];
    inputs.clear();
    for (int v : node.inputs) {
      if (!values_[v].defined())
        throw Error(fmt::format("layer '{}' needs a value the last forward pass did not compute", node.name));
      inputs.push_back(values_[v]);
    }
    try {
      values_[i + 1] = node.function(inputs);
    } catch (const Error& e) {
      throw Error(fmt::format("layer '{}' ({}): {}", node.name, node.kind, e.what()));
    }
  }
  return values_[last + 1];
}

Tensor Graph::scores_from(const Tensor& output) const {
  if (head_ == Head::MaxOverAnchors) return max(output, {1});
  return output;
}

Tensor Graph::anchor_logits() const {
  if (head_ != Head::MaxOverAnchors || output_ < 1 || values_.size() <= static_cast<size_t>(output_)) return Tensor();
  return values_[output_];
}

Tensor Graph::forward(const Tensor& x) {
  const size_t last = last_node();
  values_.assign(nodes_.size() + 1, Tensor());
  values_[0] = x;
  run(0, last);
  return scores_from(values_[output_]);
}

Tensor Graph::forward_until(const Tensor& x, const std::string& last_layer) {
  const size_t last = node_index(last_layer);
  values_.assign(nodes_.size() + 1, Tensor());
  values_[0] = x;
  return run(0, last);
}

Tensor Graph::forward_after(const Tensor& h, const std::string& layer) {
  const size_t at = node_index(layer);
  const size_t last = last_node();
  if (!values_[at + 1].defined() || values_[at + 1].shape() != h.shape())
    throw Error(fmt::format("forward_after '{}': run forward_until that layer first, and pass a tensor of its shape",
                            nodes_[at].name));
  values_[at + 1] = h;
  // Nodes after `layer` recompute; the earlier ones keep their values from the last pass (a
  // node after `layer` may read one of them: a residual branch).
  for (size_t i = at + 1; i <= last; ++i) values_[i + 1] = Tensor();
  run(at + 1, last);
  return scores_from(values_[output_]);
}

Tensor Graph::activation(const std::string& name) const {
  const Tensor& t = values_.at(node_index(name) + 1);
  if (!t.defined()) throw Error("layer '" + name + "' has no output yet: run the model forward first");
  return t;
}

std::vector<std::string> Graph::layer_names() const {
  std::vector<std::string> names;
  for (const Node& n : nodes_) names.push_back(n.name);
  return names;
}

std::vector<std::string> Graph::layers_of_kind(const std::string& kind) const {
  std::vector<std::string> names;
  for (const Node& n : nodes_)
    if (n.kind == kind) names.push_back(n.name);
  return names;
}

std::string Graph::describe() const {
  std::string s;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Tensor& v = values_.size() > i + 1 ? values_[i + 1] : Tensor();
    s += fmt::format("  {:<10} {}{}\n", nodes_[i].kind, nodes_[i].name, v.defined() ? "  " + shape_str(v.shape()) : "");
  }
  return s;
}

}  // namespace tg::models
