#include "tinygrad-cpp/nn/nn.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>


namespace tg::nn {

// ---- Module ----
void Module::collect_parameters(const std::string& prefix, NamedParameters& out) const {
  for (const auto& [name, t] : own_parameters_) out.emplace_back(prefix + name, t);
}

NamedParameters Module::named_parameters() const {
  NamedParameters out;
  collect_parameters("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

void Module::zero_grad() {
  for (Tensor t : parameters()) t.zero_grad();
}

namespace {
std::string pair_str(Pair2 p) { return p.h == p.w ? std::to_string(p.h) : fmt::format("({}, {})", p.h, p.w); }

// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's kaiming_uniform_(a=sqrt(5)) and bias default.
Tensor init_uniform(const Shape& shape, int64_t fan_in, Generator& gen) {
  const float bound = 1.f / std::sqrt(static_cast<float>(std::max<int64_t>(fan_in, 1)));
  Tensor t = Tensor::uniform(shape, gen, -bound, bound);
  t.requires_grad_();
  return t;
}
}  // namespace

// ---- layers ----
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Pair2 kernel, Generator& gen, Pair2 stride_, Pair2 padding_,
               Pair2 dilation_, int64_t groups_, bool with_bias)
    : stride(stride_), padding(padding_), dilation(dilation_), groups(groups_) {
  if (groups < 1 || in_channels % groups != 0 || out_channels % groups != 0)
    throw Error(fmt::format("Conv2d: channels {} -> {} do not divide by groups {}", in_channels, out_channels, groups));
  const int64_t fan_in = in_channels / groups * kernel.h * kernel.w;
  weight = init_uniform({out_channels, in_channels / groups, kernel.h, kernel.w}, fan_in, gen);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = init_uniform({out_channels}, fan_in, gen);
    register_parameter("bias", bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, stride, padding, dilation, groups); }

std::string Conv2d::describe() const {
  std::string s = fmt::format("Conv2d({}, {}, kernel={}", weight.dim(1) * groups, weight.dim(0),
                              pair_str({weight.dim(2), weight.dim(3)}));
  if (stride.h != 1 || stride.w != 1) s += ", stride=" + pair_str(stride);
  if (padding.h != 0 || padding.w != 0) s += ", padding=" + pair_str(padding);
  if (dilation.h != 1 || dilation.w != 1) s += ", dilation=" + pair_str(dilation);
  if (groups != 1) s += fmt::format(", groups={}", groups);
  return s + ")";
}

Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool with_bias) {
  weight = init_uniform({out_features, in_features}, in_features, gen);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = init_uniform({out_features}, in_features, gen);
    register_parameter("bias", bias);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }
std::string Linear::describe() const { return fmt::format("Linear({}, {})", weight.dim(1), weight.dim(0)); }

std::string MaxPool2d::describe() const {
  return fmt::format("MaxPool2d(kernel={}, stride={}, padding={})", pair_str(kernel_),
                     pair_str(stride_.h == 0 ? kernel_ : stride_), pair_str(padding_));
}
std::string AvgPool2d::describe() const {
  return fmt::format("AvgPool2d(kernel={}, stride={}, padding={})", pair_str(kernel_),
                     pair_str(stride_.h == 0 ? kernel_ : stride_), pair_str(padding_));
}
std::string AdaptiveAvgPool2d::describe() const { return "AdaptiveAvgPool2d(" + pair_str(size_) + ")"; }
std::string Dropout::describe() const { return fmt::format("Dropout(p={})", p_); }

// ---- Sequential ----
Tensor Model::probabilities(const Tensor& scores) const {
  NoGrad no_grad;
  return info_.probability == ModelInfo::Probability::Sigmoid ? sigmoid(scores) : softmax(scores, 1);
}

std::vector<int64_t> Model::predict(const Tensor& scores) const {
  if (info_.background < 0 || scores.ndim() != 2 || scores.dim(1) < 2) return argmax(scores);
  Tensor without = scores.clone();
  for (int64_t n = 0; n < scores.dim(0); ++n) without.data()[n * scores.dim(1) + info_.background] = -INFINITY;
  return argmax(without);
}

int64_t Model::class_index(const std::string& name) const {
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  for (size_t i = 0; i < info_.classes.size(); ++i)
    if (!name.empty() && lower(info_.classes[i]) == lower(name)) return static_cast<int64_t>(i);
  const bool digits = !name.empty() && name.size() < 10 && std::all_of(name.begin(), name.end(), ::isdigit);
  if (digits && std::stoll(name) < static_cast<int64_t>(info_.classes.size())) return std::stoll(name);
  std::string known;
  for (size_t i = 0; i < info_.classes.size() && i < 30; ++i)
    if (!info_.classes[i].empty()) known += (known.empty() ? "" : ", ") + info_.classes[i];
  if (info_.classes.size() > 30) known += ", ...";
  throw Error(fmt::format("no class '{}': give a number below {} or a label ({})", name, info_.classes.size(), known));
}

Tensor Model::parameter(const std::string& name) const {
  for (const auto& [n, t] : named_parameters())
    if (n == name) return t;
  throw Error("the model has no parameter named '" + name + "'");
}

Sequential& Sequential::add(const std::string& name, std::shared_ptr<Module> layer) {
  for (const auto& [existing, m] : layers_)
    if (existing == name) throw Error("Sequential: a layer named '" + name + "' already exists");
  layer->train(training_);
  layers_.emplace_back(name, std::move(layer));
  outputs_.emplace_back();
  return *this;
}

size_t Sequential::index_of(const std::string& name) const {
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i].first == name) return i;
  std::string names;
  for (const auto& [n, m] : layers_) {
    if (!names.empty()) names += ", ";
    names += n;
  }
  throw Error("no layer named '" + name + "' (layers: " + names + ")");
}

Tensor Sequential::forward(const Tensor& x) { return forward_until(x, layers_.empty() ? "" : layers_.back().first); }

Tensor Sequential::forward_until(const Tensor& x, const std::string& last_layer) {
  if (layers_.empty()) return x;
  const size_t last = index_of(last_layer);
  Tensor h = x;
  for (size_t i = 0; i <= last; ++i) {
    h = layers_[i].second->forward(h);
    outputs_[i] = h;
  }
  for (size_t i = last + 1; i < layers_.size(); ++i) outputs_[i] = Tensor();
  return h;
}

Tensor Sequential::forward_after(const Tensor& h, const std::string& layer) {
  Tensor out = h;
  for (size_t i = index_of(layer) + 1; i < layers_.size(); ++i) {
    out = layers_[i].second->forward(out);
    outputs_[i] = out;
  }
  return out;
}

Tensor Sequential::activation(const std::string& name) const {
  const Tensor& t = outputs_[index_of(name)];
  if (!t.defined()) throw Error("layer '" + name + "' has no output yet: run the model forward first");
  return t;
}

std::vector<std::string> Sequential::layer_names() const {
  std::vector<std::string> names;
  for (const auto& [n, m] : layers_) names.push_back(n);
  return names;
}

Module& Sequential::layer(const std::string& name) const { return *layers_[index_of(name)].second; }

std::string Sequential::describe() const {
  std::string s;
  for (const auto& [n, m] : layers_) s += fmt::format("  {:<8} {}\n", n, m->describe());
  return s;
}

void Sequential::train(bool on) {
  training_ = on;
  for (auto& [n, m] : layers_) m->train(on);
}

void Sequential::collect_parameters(const std::string& prefix, NamedParameters& out) const {
  Module::collect_parameters(prefix, out);
  for (const auto& [n, m] : layers_) m->collect_parameters(prefix + n + ".", out);
}

// ---- state dicts ----
void load_state_dict(Module& module, const io::NamedTensors& tensors, bool strict) {
  const NamedParameters params = module.named_parameters();
  for (const auto& [name, param] : params) {
    const Tensor* source = tensors.find(name);
    if (!source) throw Error("missing tensor '" + name + "'");
    if (source->shape() != param.shape())
      throw Error(fmt::format("tensor '{}' has shape {}, the model expects {}", name, shape_str(source->shape()),
                              shape_str(param.shape())));
  }
  if (strict)
    for (const auto& [name, t] : tensors.tensors) {
      bool known = false;
      for (const auto& [pname, p] : params) known |= pname == name;
      if (!known) throw Error("unexpected tensor '" + name + "' (the model has no such parameter)");
    }
  for (const auto& [name, param] : params) {
    const Tensor& src = tensors.at(name);
    for (int64_t i = 0; i < src.numel(); ++i)
      if (!std::isfinite(src.data()[i]))
        throw Error(fmt::format("tensor '{}' holds {} at element {}; weights must be finite numbers", name,
                                src.data()[i], i));
  }
  for (const auto& [name, param] : params) {
    Tensor dst = param;
    const Tensor& src = tensors.at(name);
    std::copy(src.data(), src.data() + src.numel(), dst.data());
  }
}

void save_module(const std::string& path, const Module& module, const std::map<std::string, std::string>& metadata) {
  io::save_safetensors(path, module.named_parameters(), metadata);
}

}  // namespace tg::nn
