#include "tinygrad-cpp/tape.h"

#include <fmt/format.h>

#include <cstdio>
#include <utility>

#include "tinygrad-cpp/ops/backward_rules.h"

namespace tg {

const char* op_name(Op op) {
  switch (op) {
    case Op::Add: return "add";
    case Op::Sub: return "sub";
    case Op::Mul: return "mul";
    case Op::Div: return "div";
    case Op::Neg: return "neg";
    case Op::Exp: return "exp";
    case Op::Log: return "log";
    case Op::Pow: return "pow";
    case Op::Sqrt: return "sqrt";
    case Op::Abs: return "abs";
    case Op::Clamp: return "clamp";
    case Op::Sum: return "sum";
    case Op::Mean: return "mean";
    case Op::Max: return "max";
    case Op::Matmul: return "matmul";
    case Op::Reshape: return "reshape";
    case Op::Permute: return "permute";
    case Op::Slice: return "slice";
    case Op::Cat: return "cat";
    case Op::Pad: return "pad";
    case Op::ReLU: return "relu";
    case Op::Sigmoid: return "sigmoid";
    case Op::Tanh: return "tanh";
    case Op::Dropout: return "dropout";
    case Op::Linear: return "linear";
    case Op::Conv2d: return "conv2d";
    case Op::MaxPool2d: return "max_pool2d";
    case Op::AvgPool2d: return "avg_pool2d";
    case Op::AdaptiveAvgPool2d: return "adaptive_avg_pool2d";
    case Op::LogSoftmax: return "log_softmax";
    case Op::Softmax: return "softmax";
    case Op::CrossEntropy: return "cross_entropy";
    case Op::Nll: return "nll";
    case Op::Mse: return "mse";
    case Op::Count: break;
  }
  return "?";
}

std::string OpParams::describe(Op op) const {
  auto pair = [](const std::array<int64_t, 2>& p) { return fmt::format("[{},{}]", p[0], p[1]); };
  switch (op) {
    case Op::Conv2d:
      return fmt::format("stride={} padding={} dilation={} groups={}", pair(stride), pair(padding),
                         pair(dilation), groups);
    case Op::MaxPool2d:
    case Op::AvgPool2d:
      return fmt::format("kernel={} stride={} padding={}", pair(kernel), pair(stride), pair(padding));
    case Op::Sum:
    case Op::Mean:
    case Op::Max:
      return fmt::format("axes={}{}", shape_str(axes), keepdim ? " keepdim" : "");
    case Op::Permute: return fmt::format("order={}", shape_str(axes));
    case Op::Pow: return fmt::format("exponent={}", scalar);
    case Op::Clamp: return fmt::format("low={} high={}", low, high);
    case Op::Dropout: return fmt::format("p={}", scalar);
    case Op::LogSoftmax:
    case Op::Softmax:
    case Op::Cat: return fmt::format("axis={}", axes.empty() ? 0 : axes[0]);
    case Op::Slice:
      return fmt::format("axis={} range=[{},{})", axes.at(0), ints.at(0), ints.at(1));
    default: return "";
  }
}

// ---------------------------------------------------------------------------------
// Rule resolution: per-entry override, then the innermost scoped guard, then default.
namespace {
thread_local std::vector<std::pair<Op, BackwardRule>> override_stack;
}

OverrideBackward::OverrideBackward(Op op, BackwardRule rule) : depth_(override_stack.size()) {
  if (!rule) throw Error(std::string("OverrideBackward: empty rule for ") + op_name(op));
  override_stack.emplace_back(op, std::move(rule));
}

OverrideBackward::~OverrideBackward() { override_stack.resize(depth_); }

const BackwardRule& default_rule(Op op) {
  static const std::vector<BackwardRule> table = [] {
    std::vector<BackwardRule> t(static_cast<size_t>(Op::Count));
    t[size_t(Op::Add)] = add_backward;
    t[size_t(Op::Sub)] = sub_backward;
    t[size_t(Op::Mul)] = mul_backward;
    t[size_t(Op::Div)] = div_backward;
    t[size_t(Op::Neg)] = neg_backward;
    t[size_t(Op::Exp)] = exp_backward;
    t[size_t(Op::Log)] = log_backward;
    t[size_t(Op::Pow)] = pow_backward;
    t[size_t(Op::Sqrt)] = sqrt_backward;
    t[size_t(Op::Abs)] = abs_backward;
    t[size_t(Op::Clamp)] = clamp_backward;
    t[size_t(Op::Sum)] = sum_backward;
    t[size_t(Op::Mean)] = mean_backward;
    t[size_t(Op::Max)] = max_backward;
    t[size_t(Op::Matmul)] = matmul_backward;
    t[size_t(Op::Reshape)] = reshape_backward;
    t[size_t(Op::Permute)] = permute_backward;
    t[size_t(Op::Slice)] = slice_backward;
    t[size_t(Op::Cat)] = cat_backward;
    t[size_t(Op::Pad)] = pad_backward;
    t[size_t(Op::ReLU)] = rules::vanilla_relu;
    t[size_t(Op::Sigmoid)] = sigmoid_backward;
    t[size_t(Op::Tanh)] = tanh_backward;
    t[size_t(Op::Dropout)] = dropout_backward;
    t[size_t(Op::Linear)] = linear_backward;
    t[size_t(Op::Conv2d)] = conv2d_backward;
    t[size_t(Op::MaxPool2d)] = max_pool2d_backward;
    t[size_t(Op::AvgPool2d)] = avg_pool2d_backward;
    t[size_t(Op::AdaptiveAvgPool2d)] = adaptive_avg_pool2d_backward;
    t[size_t(Op::LogSoftmax)] = log_softmax_backward;
    t[size_t(Op::Softmax)] = softmax_backward;
    t[size_t(Op::CrossEntropy)] = cross_entropy_backward;
    t[size_t(Op::Nll)] = nll_backward;
    t[size_t(Op::Mse)] = mse_backward;
    return t;
  }();
  return table.at(static_cast<size_t>(op));
}

const BackwardRule& resolve_rule(const Entry& entry) {
  if (entry.override_rule) return entry.override_rule;
  for (auto it = override_stack.rbegin(); it != override_stack.rend(); ++it)
    if (it->first == entry.op) return it->second;
  return default_rule(entry.op);
}

// ---------------------------------------------------------------------------------
// Recording.
Tape& Tape::current() {
  static thread_local Tape tape;
  return tape;
}

Tensor Tape::record(Op op, std::vector<Tensor> inputs, Tensor output, OpParams params,
                    std::vector<Tensor> saved) {
  if (!recording()) return output;
  bool any_input_requires_grad = false;
  for (const Tensor& t : inputs) any_input_requires_grad |= t.defined() && t.requires_grad();
  if (!any_input_requires_grad) return output;
  Entry entry;
  entry.seq = next_seq_++;
  entry.op = op;
  entry.inputs = std::move(inputs);
  entry.saved = std::move(saved);
  entry.params = std::move(params);
  output.impl()->requires_grad = true;
  output.impl()->producer_seq = entry.seq;
  entry.output = output;
  entries_.push_back(std::move(entry));
  return output;
}

Entry* Tape::find(uint64_t seq) {
  if (entries_.empty() || seq < entries_.front().seq || seq > entries_.back().seq) return nullptr;
  return &entries_[seq - entries_.front().seq];
}

const Entry* Tape::producer(const Tensor& t) const {
  return const_cast<Tape*>(this)->find(t.impl()->producer_seq);
}

void Tape::discard_last() {
  if (entries_.empty()) return;
  entries_.back().output.impl()->producer_seq = 0;
  entries_.pop_back();
  --next_seq_;  // sequence numbers stay a contiguous run
}

void Tape::set_rule(const Tensor& output, BackwardRule rule) {
  Entry* entry = find(output.impl()->producer_seq);
  if (!entry) throw Error("set_rule: the tensor was not produced by an op on this thread's tape");
  entry->override_rule = std::move(rule);
}

// ---------------------------------------------------------------------------------
// The reverse walk.
namespace {

// Can `t` be changed in place without anyone else seeing it?
bool exclusively_owned(const std::shared_ptr<TensorImpl>& t) {
  return t.use_count() == 1 && t->storage.use_count() == 1;
}

// sum += addend, in place when nobody else holds `sum`.
void accumulate_into(std::shared_ptr<TensorImpl>& sum, const Tensor& addend) {
  if (!sum) {
    sum = addend.impl_ptr();
    return;
  }
  if (!exclusively_owned(sum)) sum = Tensor(sum).clone().impl_ptr();
  float* dst = sum->storage->data() + sum->offset;
  const float* src = addend.data();
  const int64_t n = addend.numel();
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

Tensor run_hooks(const std::shared_ptr<TensorImpl>& tensor, Tensor grad) {
  for (const GradHook& hook : tensor->hooks) {
    Tensor replacement = hook(grad);
    if (!replacement.defined()) continue;
    if (replacement.shape() != tensor->shape)
      throw Error("gradient hook: returned shape " + shape_str(replacement.shape()) +
                  " for a tensor of shape " + shape_str(tensor->shape));
    grad = replacement;
  }
  return grad;
}

}  // namespace

void Tape::backward(const Tensor& root, const Tensor& seed, bool retain_graph) {
  if (!seed.defined() || seed.shape() != root.shape())
    throw Error("backward: seed of shape " + (seed.defined() ? shape_str(seed.shape()) : "undefined") +
                " for a tensor of shape " + shape_str(root.shape()));
  if (!root.requires_grad())
    throw Error("backward: the tensor does not require grad (no input of the ops that made it did)");

  NoGrad no_record;  // backward rules use ops; none of that is recorded
  const uint64_t root_seq = root.impl()->producer_seq;
  Entry* root_entry = find(root_seq);
  const int64_t last = root_entry ? static_cast<int64_t>(root_seq - entries_.front().seq) : -1;
  const uint64_t first_seq = entries_.empty() ? 0 : entries_.front().seq;
  auto produced_on_walk = [&](const TensorImpl* t) {
    return last >= 0 && t->producer_seq >= first_seq && t->producer_seq <= root_seq;
  };

  // Gradients of intermediate tensors describe one pass: start them from nothing.
  for (int64_t i = 0; i <= last; ++i) {
    entries_[i].output.impl()->grad.reset();
    entries_[i].output.impl()->pass_grad.reset();
  }

  std::vector<std::shared_ptr<TensorImpl>> touched_leaves;  // in first-touch order
  auto clean_up = [&] {
    for (int64_t i = 0; i <= last; ++i) entries_[i].output.impl()->pass_grad.reset();
    for (auto& leaf : touched_leaves) leaf->pass_grad.reset();
  };

  try {
    if (produced_on_walk(root.impl())) {
      root.impl()->pass_grad = seed.clone().impl_ptr();
    } else {
      touched_leaves.push_back(root.impl_ptr());
      root.impl()->pass_grad = seed.clone().impl_ptr();
    }

    // BEGIN SOLUTION(tape-reverse-walk)
    // HINT: walk the entries from `last` down to 0. For each entry whose output has a pass_grad:
    // HINT: run the output's hooks, store it as output.grad, call resolve_rule(entry), and
    // HINT: accumulate each returned input gradient into that input's pass_grad.
    for (int64_t i = last; i >= 0; --i) {
      Entry& entry = entries_[i];
      const std::shared_ptr<TensorImpl>& out = entry.output.impl_ptr();
      if (!out->pass_grad) continue;  // no path from this entry to the root
      Tensor grad_output = run_hooks(out, Tensor(std::move(out->pass_grad)));
      out->pass_grad.reset();
      out->grad = grad_output.impl_ptr();

      std::vector<Tensor> grads = resolve_rule(entry)(entry, grad_output);
      if (grads.size() != entry.inputs.size())
        throw Error(fmt::format("backward of {}: rule returned {} gradients for {} inputs",
                                op_name(entry.op), grads.size(), entry.inputs.size()));
      for (size_t j = 0; j < grads.size(); ++j) {
        const Tensor& input = entry.inputs[j];
        if (!input.defined() || !input.requires_grad() || !grads[j].defined()) continue;
        if (grads[j].shape() != input.shape())
          throw Error(fmt::format("backward of {}: gradient for input {} has shape {} but the input has shape {}",
                                  op_name(entry.op), j, shape_str(grads[j].shape()), shape_str(input.shape())));
        const std::shared_ptr<TensorImpl>& target = input.impl_ptr();
        if (!produced_on_walk(target.get()) && !target->pass_grad) touched_leaves.push_back(target);
        accumulate_into(target->pass_grad, grads[j]);
      }
    }
    // END SOLUTION

    // Leaves (inputs and parameters) keep accumulating across backward passes, as in PyTorch.
    for (auto& leaf : touched_leaves) {
      Tensor grad = run_hooks(leaf, Tensor(std::move(leaf->pass_grad)));
      leaf->pass_grad.reset();
      if (!leaf->grad) {
        leaf->grad = exclusively_owned(grad.impl_ptr()) ? grad.impl_ptr() : grad.clone().impl_ptr();
      } else {
        accumulate_into(leaf->grad, grad);
      }
    }
  } catch (...) {
    clean_up();
    throw;
  }

  if (!retain_graph && last >= 0) entries_.erase(entries_.begin(), entries_.begin() + last + 1);
}

// ---------------------------------------------------------------------------------
std::string Tape::str() const {
  std::string out;
  for (const Entry& e : entries_) {
    std::string inputs;
    for (const Tensor& t : e.inputs) {
      if (!inputs.empty()) inputs += ' ';
      inputs += t.defined() ? shape_str(t.shape()) : std::string("-");
    }
    std::string line = fmt::format("#{:<4} {:<20} {} -> {}", e.seq, op_name(e.op), inputs, shape_str(e.output.shape()));
    std::string params = e.params.describe(e.op);
    if (!params.empty()) line += "  " + params;
    if (e.override_rule) line += "  (rule overridden)";
    out += line + "\n";
  }
  return out;
}

void Tape::print() const { std::fputs(str().c_str(), stdout); }

}  // namespace tg
