// Optimizers: SGD (momentum, weight decay) and Adam, with PyTorch's update rules,
// and a learning-rate schedule hook.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/nn/nn.h"

namespace tg::optim {

// Learning rate as a function of the step number (0 for the first step).
using Schedule = std::function<float(int64_t step)>;
Schedule constant(float lr);
// Cosine decay from base_lr to 0 over total_steps, after a linear warm-up.
Schedule cosine(float base_lr, int64_t total_steps, int64_t warmup_steps = 0);

class Optimizer {
 public:
  Optimizer(nn::NamedParameters params, float lr) : params_(std::move(params)), lr_(lr) {}
  virtual ~Optimizer() = default;
  // One update from the parameters' current .grad (parameters without a grad are skipped).
  void step();
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  // When set, lr = schedule(steps()) before every step.
  void set_schedule(Schedule schedule) { schedule_ = std::move(schedule); }
  int64_t steps() const { return steps_; }

  // Optimizer state (moments, step count) as named tensors, for checkpoints.
  virtual nn::NamedParameters state() const = 0;
  virtual void load_state(const io::NamedTensors& tensors) = 0;

 protected:
  virtual void update(size_t index, Tensor& param, const Tensor& grad) = 0;
  void add_step_counts(nn::NamedParameters& out) const;     // for state()
  void load_step_counts(const io::NamedTensors& tensors);  // for load_state()
  nn::NamedParameters params_;
  float lr_;
  int64_t steps_ = 0;
  // How many updates each parameter has had: a parameter whose first gradient comes late
  // starts its momentum and Adam's bias correction from its own first step, as PyTorch does.
  std::vector<int64_t> param_steps_;
  Schedule schedule_;
};

// buf = momentum * buf + (g + wd * p)   (buf = g + wd * p on the first step)
// p  -= lr * buf
class SGD : public Optimizer {
 public:
  SGD(nn::NamedParameters params, float lr, float momentum = 0.f, float weight_decay = 0.f);
  nn::NamedParameters state() const override;
  void load_state(const io::NamedTensors& tensors) override;

 private:
  void update(size_t index, Tensor& param, const Tensor& grad) override;
  float momentum_, weight_decay_;
  std::vector<Tensor> velocity_;
};

// m = b1 m + (1-b1) g ; v = b2 v + (1-b2) g^2 ; p -= lr * m^ / (sqrt(v^) + eps)
// with m^ = m / (1 - b1^t), v^ = v / (1 - b2^t); weight decay adds wd * p to g.
class Adam : public Optimizer {
 public:
  Adam(nn::NamedParameters params, float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f,
       float weight_decay = 0.f);
  nn::NamedParameters state() const override;
  void load_state(const io::NamedTensors& tensors) override;

 private:
  void update(size_t index, Tensor& param, const Tensor& grad) override;
  float beta1_, beta2_, eps_, weight_decay_;
  std::vector<Tensor> m_, v_;
};

}  // namespace tg::optim
