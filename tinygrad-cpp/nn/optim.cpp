#include "tinygrad-cpp/nn/optim.h"

#include <fmt/format.h>

#include <cmath>

namespace tg::optim {

Schedule constant(float lr) {
  return [lr](int64_t) { return lr; };
}

Schedule cosine(float base_lr, int64_t total_steps, int64_t warmup_steps) {
  return [=](int64_t step) {
    if (step < warmup_steps) return base_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
    const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) /
                                              static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps)));
    return static_cast<float>(0.5 * base_lr * (1.0 + std::cos(M_PI * progress)));
  };
}

void Optimizer::step() {
  if (schedule_) lr_ = schedule_(steps_);
  ++steps_;
  param_steps_.resize(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    ++param_steps_[i];
    update(i, p, g);
  }
}

void Optimizer::add_step_counts(nn::NamedParameters& out) const {
  out.emplace_back("optimizer.steps", Tensor::scalar(static_cast<float>(steps_)));
  for (size_t i = 0; i < params_.size(); ++i)
    out.emplace_back("optimizer.steps." + params_[i].first,
                     Tensor::scalar(static_cast<float>(i < param_steps_.size() ? param_steps_[i] : 0)));
}

void Optimizer::load_step_counts(const io::NamedTensors& tensors) {
  steps_ = static_cast<int64_t>(tensors.at("optimizer.steps").item());
  // Checkpoints from before per-parameter counts: every parameter had every step.
  param_steps_.assign(params_.size(), steps_);
  for (size_t i = 0; i < params_.size(); ++i)
    if (const Tensor* t = tensors.find("optimizer.steps." + params_[i].first)) param_steps_[i] = static_cast<int64_t>(t->item());
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

namespace {
std::vector<Tensor> zeros_like_all(const nn::NamedParameters& params) {
  std::vector<Tensor> out;
  for (const auto& [name, p] : params) out.push_back(Tensor::zeros(p.shape()));
  return out;
}

void load_buffers(const io::NamedTensors& tensors, const std::string& prefix, const nn::NamedParameters& params,
                  std::vector<Tensor>& buffers) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& src = tensors.at(prefix + params[i].first);
    if (src.shape() != buffers[i].shape())
      throw Error(fmt::format("optimizer state '{}{}' has shape {}, expected {}", prefix, params[i].first,
                              shape_str(src.shape()), shape_str(buffers[i].shape())));
    std::copy(src.data(), src.data() + src.numel(), buffers[i].data());
  }
}
}  // namespace

// ---- SGD ----
SGD::SGD(nn::NamedParameters params, float lr, float momentum, float weight_decay)
    : Optimizer(std::move(params), lr), momentum_(momentum), weight_decay_(weight_decay), velocity_(zeros_like_all(params_)) {}

void SGD::update(size_t index, Tensor& param, const Tensor& grad) {
  float* p = param.data();
  const float* g = grad.data();
  float* buf = velocity_[index].data();
  const bool first = param_steps_[index] == 1;
  for (int64_t i = 0; i < param.numel(); ++i) {
    float d = g[i] + weight_decay_ * p[i];
    if (momentum_ != 0.f) {
      buf[i] = first ? d : momentum_ * buf[i] + d;
      d = buf[i];
    }
    p[i] -= lr_ * d;
  }
}

nn::NamedParameters SGD::state() const {
  nn::NamedParameters out;
  for (size_t i = 0; i < params_.size(); ++i) out.emplace_back("optimizer.velocity." + params_[i].first, velocity_[i]);
  add_step_counts(out);
  return out;
}

void SGD::load_state(const io::NamedTensors& tensors) {
  load_buffers(tensors, "optimizer.velocity.", params_, velocity_);
  load_step_counts(tensors);
}

// ---- Adam ----
Adam::Adam(nn::NamedParameters params, float lr, float beta1, float beta2, float eps, float weight_decay)
    : Optimizer(std::move(params), lr), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay),
      m_(zeros_like_all(params_)), v_(zeros_like_all(params_)) {}

void Adam::update(size_t index, Tensor& param, const Tensor& grad) {
  float* p = param.data();
  const float* g = grad.data();
  float* m = m_[index].data();
  float* v = v_[index].data();
  const float t = static_cast<float>(param_steps_[index]);  // this parameter's own step count
  const float correction1 = 1.f - std::pow(beta1_, t);
  const float correction2 = 1.f - std::pow(beta2_, t);
  const float step_size = lr_ / correction1;
  const float root_correction2 = std::sqrt(correction2);
  for (int64_t i = 0; i < param.numel(); ++i) {
    const float gi = g[i] + weight_decay_ * p[i];
    m[i] = beta1_ * m[i] + (1.f - beta1_) * gi;
    v[i] = beta2_ * v[i] + (1.f - beta2_) * gi * gi;
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) / root_correction2 + eps_);
  }
}

nn::NamedParameters Adam::state() const {
  nn::NamedParameters out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("optimizer.m." + params_[i].first, m_[i]);
    out.emplace_back("optimizer.v." + params_[i].first, v_[i]);
  }
  add_step_counts(out);
  return out;
}

void Adam::load_state(const io::NamedTensors& tensors) {
  load_buffers(tensors, "optimizer.m.", params_, m_);
  load_buffers(tensors, "optimizer.v.", params_, v_);
  load_step_counts(tensors);
}

}  // namespace tg::optim
