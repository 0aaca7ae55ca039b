#include "tinygrad-cpp/core/tape.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

namespace tg {

// ---------------------------------------------------------------------------------
// Rule resolution: per-entry override, then the innermost scoped guard, then default.
namespace {
thread_local std::vector<std::pair<const OpKind*, BackwardRule>> override_stack;
thread_local ProfileOps* profile = nullptr;  // the thread's ProfileOps guard, if any
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
// The rule itself, or (while a profile runs) the rule timed and charged to its op.
BackwardRule timed(BackwardRule rule) {
  if (!profile) return rule;
  return [rule = std::move(rule)](const Entry& entry, const Tensor& grad_output) {
    const int64_t start = now_ns();
    std::vector<Tensor> grads = rule(entry, grad_output);
    if (profile) profile->rule(entry, now_ns() - start);
    return grads;
  };
}
}  // namespace

OverrideBackward::OverrideBackward(const OpKind& op, BackwardRule rule) : depth_(override_stack.size()) {
  if (!rule) throw Error(std::string("OverrideBackward: empty rule for ") + op.name);
  override_stack.emplace_back(&op, std::move(rule));
}

OverrideBackward::~OverrideBackward() { override_stack.resize(depth_); }

BackwardRule resolve_rule(const Entry& entry) {
  if (entry.override_rule) return timed(entry.override_rule);
  for (auto it = override_stack.rbegin(); it != override_stack.rend(); ++it)
    if (it->first == entry.op) return timed(it->second);
  return timed(entry.op->default_rule);
}

// ---------------------------------------------------------------------------------
// Profiling.
ProfileOps::ProfileOps(Key key) : key_(key) {
  if (profile) throw Error("ProfileOps: a profile is already running on this thread");
  profile = this;
  mark_ns_ = now_ns();
}

ProfileOps::~ProfileOps() { profile = nullptr; }

// `entry` is null for the walk's own time. The item is looked up by a key string; what
// Key::Layer keeps of the entry is copied only when its item is first seen.
void ProfileOps::charge(const Entry* entry, const char* phase, int64_t ns) {
  const bool by_layer = key_ == Key::Layer && entry;
  std::string key = std::string(entry ? entry->name() : "walk") + ' ' + phase;
  if (by_layer) {
    for (const Tensor& t : entry->inputs)
      key += (t.defined() && t.requires_grad() ? " *" : " ") + (t.defined() ? shape_str(t.shape()) : "[]");
    key += " -> " + shape_str(entry->output.shape()) + ' ' + (entry->state ? entry->state->describe() : "");
  }
  auto [it, added] = index_.emplace(std::move(key), items_.size());
  if (added) {
    Item item{.op = entry ? entry->name() : "walk", .phase = phase};
    if (by_layer) {
      for (const Tensor& t : entry->inputs) {
        item.inputs.push_back(t.defined() ? t.shape() : Shape{});
        item.wanted_grad.push_back(t.defined() && t.requires_grad());
      }
      item.output = entry->output.shape();
      if (entry->state) item.settings = entry->state->describe();
    }
    items_.push_back(std::move(item));
  }
  Item& mine = items_[it->second];
  mine.seconds += static_cast<double>(ns) * 1e-9;
  ++mine.calls;
}

void ProfileOps::forward_op(const Entry& entry) {
  const int64_t now = now_ns();
  charge(&entry, "forward", now - mark_ns_);
  mark_ns_ = now;
}

void ProfileOps::begin_walk() {
  mark_ns_ = now_ns();
  walk_rules_ns_ = 0;
}

void ProfileOps::rule(const Entry& entry, int64_t ns) {
  charge(&entry, "backward", ns);
  walk_rules_ns_ += ns;
}

void ProfileOps::end_walk() {
  const int64_t now = now_ns();
  charge(nullptr, "backward", now - mark_ns_ - walk_rules_ns_);
  mark_ns_ = now;
}

// ---------------------------------------------------------------------------------
// Recording.
Tape& tape() {
  static thread_local Tape the_tape;
  return the_tape;
}

Tensor Tape::record(const OpKind& op, std::vector<Tensor> inputs, Tensor output,
                    std::shared_ptr<const SavedState> state) {
  if (!recording()) return output;
  bool any_input_requires_grad = false;
  for (const Tensor& t : inputs) any_input_requires_grad |= t.defined() && t.requires_grad();
  if (!any_input_requires_grad) return output;
  Entry entry;
  entry.seq = next_seq_++;
  entry.op = &op;
  entry.inputs = std::move(inputs);
  entry.state = std::move(state);
  output.impl()->requires_grad = true;
  output.impl()->producer_seq = entry.seq;
  entry.output = output;
  entries_.push_back(std::move(entry));
  if (profile) profile->forward_op(entries_.back());
  if (entries_.size() >= next_sweep_) {
    drop_unreachable();
    next_sweep_ = std::max<size_t>(1024, 2 * entries_.size());
  }
  return output;
}

Entry* Tape::find(uint64_t seq) {
  if (seq == 0) return nullptr;
  auto it = std::lower_bound(entries_.begin(), entries_.end(), seq,
                             [](const Entry& e, uint64_t s) { return e.seq < s; });
  return it != entries_.end() && it->seq == seq ? &*it : nullptr;
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

static std::string freed_graph_message(const std::string& what) {
  return fmt::format("backward: {} was made by ops whose graph an earlier backward already walked and freed; "
                     "pass retain_graph = true to that backward to walk the graph again", what);
}

void Tape::backward(const Tensor& root, const Tensor& seed, bool retain_graph) {
  if (!seed.defined() || seed.shape() != root.shape())
    throw Error("backward: seed of shape " + (seed.defined() ? shape_str(seed.shape()) : "undefined") +
                " for a tensor of shape " + shape_str(root.shape()));
  if (!root.requires_grad())
    throw Error("backward: the tensor does not require grad (no input of the ops that made it did)");
  // Branches of an earlier pass that did not lead to its root (a detector's box heads) are
  // still on the tape, holding their inputs: drop the ones nothing else holds any more, so
  // their memory is reused now instead of at the next sweep (a fresh block costs a page
  // fault per 4 KB).
  drop_unreachable();
  const uint64_t root_seq = root.impl()->producer_seq;
  Entry* root_entry = find(root_seq);
  if (root_seq != 0 && !root_entry) throw Error(freed_graph_message("the tensor"));

  if (profile) profile->begin_walk();
  NoGrad no_record;  // backward rules use ops; none of that is recorded
  const int64_t last = root_entry ? root_entry - entries_.data() : -1;  // the walk starts here

  // A gradient goes to a tensor made by an entry of the tape (summed in pass_grad until
  // the walk reaches that entry) or to a leaf (an input or parameter, summed at the end).
  std::vector<std::shared_ptr<TensorImpl>> touched_leaves;  // in first-touch order
  auto send = [&](const Entry& consumer, const Tensor& input, const Tensor& grad) {
    const std::shared_ptr<TensorImpl>& target = input.impl_ptr();
    if (target->producer_seq != 0 && !find(target->producer_seq))
      throw Error(freed_graph_message(fmt::format("an input of {} (entry #{})", consumer.name(), consumer.seq)));
    if (target->producer_seq == 0 && !target->pass_grad) touched_leaves.push_back(target);
    accumulate_into(target->pass_grad, grad);
  };
  std::vector<uint64_t> walked;  // sequence numbers of the entries whose rule ran, newest first
  auto clean_up = [&] {
    for (int64_t i = 0; i <= last; ++i) entries_[i].output.impl()->pass_grad.reset();
    for (auto& leaf : touched_leaves) leaf->pass_grad.reset();
  };

  try {
    if (root_seq == 0) touched_leaves.push_back(root.impl_ptr());
    root.impl()->pass_grad = seed.clone().impl_ptr();

    // BEGIN SOLUTION(tape-reverse-walk)
    // HINT: newest entry first, from `last`; skip an entry no gradient reached. Its output's summed gradient,
    // HINT: after the output's hooks, is the output's grad; the rule in force turns it into one gradient per
    // HINT: input (refuse a wrong count or shape, naming the op); pass each on; record that the entry was walked.
    for (int64_t i = last; i >= 0; --i) {
      Entry& entry = entries_[i];
      const std::shared_ptr<TensorImpl>& out = entry.output.impl_ptr();
      if (!out->pass_grad) continue;  // no path from this entry to the root
      Tensor grad_output = run_hooks(out, Tensor(std::move(out->pass_grad)));
      out->pass_grad.reset();
      out->grad = grad_output.impl_ptr();

      std::vector<Tensor> grads = resolve_rule(entry)(entry, grad_output);
      if (grads.size() != entry.inputs.size())
        throw Error(fmt::format("backward of {}: rule returned {} gradients for {} inputs", entry.name(),
                                grads.size(), entry.inputs.size()));
      for (size_t j = 0; j < grads.size(); ++j) {
        const Tensor& input = entry.inputs[j];
        if (!input.defined() || !input.requires_grad() || !grads[j].defined()) continue;
        if (grads[j].shape() != input.shape())
          throw Error(fmt::format("backward of {}: gradient for input {} has shape {} but the input has shape {}",
                                  entry.name(), j, shape_str(grads[j].shape()), shape_str(input.shape())));
        send(entry, input, grads[j]);
      }
      walked.push_back(entry.seq);
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

  // Free exactly the walked entries; every other graph on the tape stays as it was.
  if (!retain_graph) erase(std::move(walked));
  if (profile) profile->end_walk();
}

// Tensor::backward lives here, beside the walk it starts: the tensor knows nothing of the tape.
void Tensor::backward(bool retain_graph) const {
  if (numel() != 1)
    throw Error("backward: called without a seed on a tensor of shape " + shape_str(shape()) +
                "; pass a seed of that shape, or reduce to one element first");
  backward(Tensor::ones(shape()), retain_graph);
}

void Tensor::backward(const Tensor& seed, bool retain_graph) const {
  tape().backward(*this, seed, retain_graph);
}

}  // namespace tg
