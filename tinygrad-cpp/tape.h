// The tape (a Wengert list): every differentiable op that runs while recording
// appends one Entry. The tape's order is already a topological order, so backward
// is a plain reverse loop over it: no recursion, no graph search.
//
// Backward rules are looked up when backward runs, in this order:
//   1. an override set on that one entry            (Tape::set_rule(output, rule))
//   2. the innermost active OverrideBackward guard  (RAII, nests, restored on exceptions)
//   3. the op kind's default rule
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "tinygrad-cpp/tensor.h"

namespace tg {

enum class Op {
  Add, Sub, Mul, Div, Neg, Exp, Log, Pow, Sqrt, Abs, Clamp,
  Sum, Mean, Max,
  Matmul,
  Reshape, Permute, Slice, Cat, Pad,
  ReLU, Sigmoid, Tanh, Dropout,
  Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
  LogSoftmax, Softmax, CrossEntropy, Nll, Mse,
  Count  // number of op kinds, not an op
};
const char* op_name(Op op);  // "conv2d", "max_pool2d", ...

// The parameters an op records next to its tensors. Each op uses the fields it needs.
struct OpParams {
  std::array<int64_t, 2> kernel{0, 0}, stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
  std::vector<int64_t> axes;     // sum/mean/max: reduced axes; permute: the order; cat/slice: {axis}
  bool keepdim = false;
  std::vector<int64_t> ints;     // slice: {start, stop}; pad: {before, after} per axis; labels
  float scalar = 0.f, low = 0.f, high = 0.f;  // pow exponent; clamp bounds; dropout p
  std::string describe(Op op) const;  // "stride=[2,2] padding=[1,1]" for tape.print()
};

struct Entry;
// Every backward rule has this one signature: given the entry and the gradient of its
// output, return one gradient per input (an undefined Tensor where none is needed).
using BackwardRule = std::function<std::vector<Tensor>(const Entry& entry, const Tensor& grad_output)>;

struct Entry {
  uint64_t seq = 0;               // position in the thread's history, increasing
  Op op = Op::Count;
  std::vector<Tensor> inputs;
  Tensor output;
  std::vector<Tensor> saved;      // extra tensors the backward rule needs (e.g. a mask)
  OpParams params;
  BackwardRule override_rule;     // set by Tape::set_rule; empty when not overridden

  const Tensor& input(size_t i) const { return inputs.at(i); }
};

class Tape {
 public:
  // The calling thread's tape.
  static Tape& current();

  bool recording() const { return no_grad_depth_ == 0; }
  // Ops call this: records the entry when recording and some input requires grad,
  // and marks the output as requiring grad. Returns the output.
  Tensor record(Op op, std::vector<Tensor> inputs, Tensor output, OpParams params = {},
                std::vector<Tensor> saved = {});

  // Reverse walk from `root` seeded with `seed` (root's shape). Frees the walked
  // entries afterwards unless retain_graph.
  void backward(const Tensor& root, const Tensor& seed, bool retain_graph);

  // Override the backward rule of the entry that produced `output` (finest grain).
  void set_rule(const Tensor& output, BackwardRule rule);
  const Entry* producer(const Tensor& t) const;  // null when t is not on the tape

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  void clear() { entries_.clear(); }
  // Removes the newest entry; its output stays a plain tensor with no producer. The
  // gradient checker uses it after calling one entry's rule directly, without a walk.
  void discard_last();
  const Entry* newest() const { return entries_.empty() ? nullptr : &entries_.back(); }
  std::string str() const;   // one line per entry: op, input shapes -> output shape, params
  void print() const;        // str() to stdout

  // Used by the guards below.
  void push_no_grad() { ++no_grad_depth_; }
  void pop_no_grad() { --no_grad_depth_; }

 private:
  Entry* find(uint64_t seq);
  std::deque<Entry> entries_;  // contiguous run of sequence numbers, oldest first
  uint64_t next_seq_ = 1;
  int no_grad_depth_ = 0;
};

inline Tape& tape() { return Tape::current(); }

// RAII: no op records while a NoGrad is alive on this thread.
class NoGrad {
 public:
  NoGrad() { Tape::current().push_no_grad(); }
  ~NoGrad() { Tape::current().pop_no_grad(); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;
};

// RAII: while alive, entries of kind `op` use `rule` in backward (unless they carry a
// per-entry override). Guards nest; the innermost one wins; scope exit restores.
class OverrideBackward {
 public:
  OverrideBackward(Op op, BackwardRule rule);
  ~OverrideBackward();
  OverrideBackward(const OverrideBackward&) = delete;
  OverrideBackward& operator=(const OverrideBackward&) = delete;

 private:
  size_t depth_;  // position of this guard on the thread's override stack
};

// The rule backward would use for `entry` right now.
const BackwardRule& resolve_rule(const Entry& entry);
// The default rule of each op kind; each is defined next to its op's forward in ops/*.cpp.
const BackwardRule& default_rule(Op op);

}  // namespace tg
