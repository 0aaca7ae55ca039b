#include "tinygrad-cpp/models/graph.h"

#include <fmt/format.h>

#include <algorithm>

#include "tinygrad-cpp/kernels/kernels.h"

namespace tg::models {

namespace {
thread_local int no_fusion_depth = 0;
}  // namespace

NoFusion::NoFusion() { ++no_fusion_depth; }
NoFusion::~NoFusion() { --no_fusion_depth; }

int Graph::add(const std::string& name, const std::string& kind, std::vector<int> inputs, Function function) {
  for (int v : inputs)
    if (v < 0 || v > static_cast<int>(nodes_.size()))
      throw Error(fmt::format("graph: node '{}' reads value {}, which no earlier node makes", name, v));
  if (!index_.emplace(name, nodes_.size()).second) throw Error("graph: a layer named '" + name + "' already exists");
  nodes_.push_back({name, kind, std::move(inputs), std::move(function), std::nullopt});
  values_.resize(nodes_.size() + 1);
  skipped_by_.resize(nodes_.size(), -1);
  planned_ = false;
  return static_cast<int>(nodes_.size());
}

void Graph::set_output(int value, Head head) {
  if (value < 1 || value > static_cast<int>(nodes_.size())) throw Error("graph: the output must be a node's value");
  output_ = value;
  head_ = head;
  planned_ = false;
}

void Graph::set_convolution(int value, Convolution convolution) {
  if (value < 1 || value > static_cast<int>(nodes_.size())) throw Error("graph: set_convolution needs a node's value");
  nodes_[value - 1].convolution = std::move(convolution);
  planned_ = false;
}

void Graph::set_box_output(int value) {
  if (value < 1 || value > static_cast<int>(nodes_.size())) throw Error("graph: the box output must be a node's value");
  box_output_ = value;
  planned_ = false;
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

void Graph::evaluate(size_t i) const {
  const Node& node = nodes_[i];
  std::vector<Tensor> inputs;
  for (int v : node.inputs) {
    if (v > 0) materialize(static_cast<size_t>(v - 1));
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

Tensor Graph::run(size_t first, size_t last) {
  const bool fuse = !tape().recording() && no_fusion_depth == 0;
  if (fuse) plan();
  for (size_t i = first; i <= last; ++i) {
    if (fuse && block_at_[i] >= 0) {
      const Block& b = blocks_[static_cast<size_t>(block_at_[i])];
      if (b.last <= last && run_fused(static_cast<size_t>(block_at_[i]))) {
        i = b.last;
        continue;
      }
    }
    evaluate(i);
  }
  return values_[last + 1];
}

// ---- the fused no-grad forward ----

void Graph::plan() {
  if (planned_) return;
  // How many readers each value has (a model output counts as one).
  std::vector<int> readers(nodes_.size() + 1, 0);
  for (const Node& n : nodes_)
    for (int v : n.inputs) ++readers[static_cast<size_t>(v)];
  for (int v : {output_, box_output_})
    if (v > 0) ++readers[static_cast<size_t>(v)];
  // Node j is `kind`, reads only node j-1's value, and that value has no other reader.
  auto next_in_chain = [&](size_t j, const char* kind) {
    return j < nodes_.size() && nodes_[j].kind == kind && nodes_[j].inputs == std::vector<int>{static_cast<int>(j)} &&
           readers[j] == 1;
  };
  auto described = [&](size_t j) { return nodes_[j].convolution.has_value(); };
  auto one_by_one = [&](size_t j) {
    const Tensor& w = nodes_[j].convolution->weight;
    return w.ndim() == 4 && w.dim(2) == 1 && w.dim(3) == 1;
  };
  blocks_.clear();
  block_at_.assign(nodes_.size(), -1);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Block b;
    size_t d = i;
    if (nodes_[i].kind == "conv2d" && described(i) && one_by_one(i) && next_in_chain(i + 1, "relu6") &&
        next_in_chain(i + 2, "depthwise_conv2d")) {
      b.expand = i;
      d = i + 2;
    } else if (nodes_[i].kind != "depthwise_conv2d") {
      continue;
    }
    if (!described(d) || !next_in_chain(d + 1, "relu6") || !next_in_chain(d + 2, "conv2d") || !described(d + 2) ||
        !one_by_one(d + 2))
      continue;
    b.first = i, b.depthwise = d, b.project = d + 2, b.last = d + 2;
    const int input = nodes_[i].inputs.at(0), projected = static_cast<int>(b.project) + 1;
    if (b.project + 1 < nodes_.size() && readers[b.project + 1] == 1) {
      const Node& add = nodes_[b.project + 1];
      if (add.kind == "add" && (add.inputs == std::vector<int>{projected, input} ||
                                add.inputs == std::vector<int>{input, projected}))
        b.residual = true, b.last = b.project + 1;
    }
    block_at_[i] = static_cast<int64_t>(blocks_.size());
    blocks_.push_back(b);
    i = b.last;
  }
  planned_ = true;
}

bool Graph::run_fused(size_t index) {
  const Block& b = blocks_[index];
  const Tensor& x = values_[static_cast<size_t>(nodes_[b.first].inputs.at(0))];
  if (!x.defined() || x.ndim() != 4) return false;
  const Convolution& dw = *nodes_[b.depthwise].convolution;
  const Convolution& project = *nodes_[b.project].convolution;
  const Convolution* expand = b.expand ? &*nodes_[*b.expand].convolution : nullptr;
  const int64_t batch = x.dim(0), in_channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t hidden = dw.weight.dim(0), out_channels = project.weight.dim(0);
  // A 1x1 convolution [out, in, 1, 1] with no stride, padding, dilation or groups.
  auto pointwise = [](const Convolution& c, int64_t in, int64_t out) {
    return c.weight.shape() == Shape{out, in, 1, 1} && c.stride_h == 1 && c.stride_w == 1 && c.pad_top == 0 &&
           c.pad_left == 0 && c.pad_bottom == 0 && c.pad_right == 0 && c.dilation_h == 1 && c.dilation_w == 1 &&
           c.groups == 1 && (!c.bias.defined() || c.bias.shape() == Shape{out});
  };
  const bool fits =
      (expand ? pointwise(*expand, in_channels, hidden) : hidden == in_channels) && pointwise(project, hidden, out_channels) &&
      dw.weight.ndim() == 4 && dw.weight.dim(1) == 1 && dw.groups == hidden && dw.dilation_h == 1 && dw.dilation_w == 1 &&
      (!dw.bias.defined() || dw.bias.shape() == Shape{hidden});
  if (!fits) return false;
  const int64_t kh = dw.weight.dim(2), kw = dw.weight.dim(3);
  const int64_t out_h = (height + dw.pad_top + dw.pad_bottom - kh) / dw.stride_h + 1;
  const int64_t out_w = (width + dw.pad_left + dw.pad_right - kw) / dw.stride_w + 1;
  auto data = [](const Tensor& t) { return t.defined() ? t.data() : nullptr; };
  const kernels::InvertedResidual block{
      .in_channels = in_channels,
      .expand_weight = expand ? data(expand->weight) : nullptr,
      .expand_bias = expand ? data(expand->bias) : nullptr,
      .depthwise = {hidden, height, width, 1, kh, kw, dw.stride_h, dw.stride_w, dw.pad_top, dw.pad_left, out_h, out_w},
      .depthwise_weight = data(dw.weight),
      .depthwise_bias = data(dw.bias),
      .out_channels = out_channels,
      .project_weight = data(project.weight),
      .project_bias = data(project.bias),
      .residual = b.residual};
  if (out_h < 1 || out_w < 1 || !kernels::inverted_residual_supported(block) ||
      !kernels::inverted_residual_agrees_to_the_bit(block))
    return false;
  Tensor out = Tensor::empty({batch, out_channels, out_h, out_w});
  kernels::inverted_residual(x.data(), batch, block, out.data());
  for (size_t i = b.first; i < b.last; ++i) {
    values_[i + 1] = Tensor();
    skipped_by_[i] = static_cast<int64_t>(index);
  }
  values_[b.last + 1] = out;
  skipped_by_[b.last] = -1;
  ++fused_blocks_;
  return true;
}

void Graph::materialize(size_t node) const {
  if (skipped_by_[node] < 0) return;
  const Block b = blocks_[static_cast<size_t>(skipped_by_[node])];
  NoGrad no_grad;  // the forward that skipped it recorded nothing either
  for (size_t i = b.first; i < b.last; ++i) {
    skipped_by_[i] = -1;
    evaluate(i);
  }
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
  skipped_by_.assign(nodes_.size(), -1);
  fused_blocks_ = 0;
  values_[0] = x;
  run(0, last);
  return scores_from(values_[output_]);
}

Tensor Graph::forward_until(const Tensor& x, const std::string& last_layer) {
  const size_t last = node_index(last_layer);
  values_.assign(nodes_.size() + 1, Tensor());
  skipped_by_.assign(nodes_.size(), -1);
  fused_blocks_ = 0;
  values_[0] = x;
  return run(0, last);
}

Tensor Graph::forward_after(const Tensor& h, const std::string& layer) {
  const size_t at = node_index(layer);
  const size_t last = last_node();
  materialize(at);
  if (!values_[at + 1].defined() || values_[at + 1].shape() != h.shape())
    throw Error(fmt::format("forward_after '{}': run forward_until that layer first, and pass a tensor of its shape",
                            nodes_[at].name));
  values_[at + 1] = h;
  fused_blocks_ = 0;
  // Nodes after `layer` recompute; the earlier ones keep their values from the last pass (a
  // node after `layer` may read one of them: a residual branch).
  for (size_t i = at + 1; i <= last; ++i) values_[i + 1] = Tensor(), skipped_by_[i] = -1;
  run(at + 1, last);
  return scores_from(values_[output_]);
}

Tensor Graph::activation(const std::string& name) const {
  const size_t node = node_index(name);
  materialize(node);
  const Tensor& t = values_.at(node + 1);
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
    materialize(i);
    const Tensor& v = values_.size() > i + 1 ? values_[i + 1] : Tensor();
    s += fmt::format("  {:<10} {}{}\n", nodes_[i].kind, nodes_[i].name, v.defined() ? "  " + shape_str(v.shape()) : "");
  }
  return s;
}

}  // namespace tg::models
