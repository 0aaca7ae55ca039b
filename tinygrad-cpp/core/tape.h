// The tape (a Wengert list): every differentiable op that runs while recording
// appends one Entry. The tape's order is already a topological order, so backward
// is a plain reverse loop over it: no recursion, no graph search.
//
// The tape knows no op. An op hands it everything op-specific when it records:
//   - its OpKind: a printable name and the default backward rule (ops/*.cpp define one
//     each, next to the op's forward and backward: tg::Op::ReLU, tg::Op::Conv2d, ...);
//   - its saved state: a struct with named fields (stride, axes, a mask) that the rule
//     reads back with entry.saved<...>() and tape.print() shows through describe().
//
// Backward rules are looked up when backward runs, in this order:
//   1. an override set on that one entry            (Tape::set_rule(output, rule))
//   2. the innermost active OverrideBackward guard  (RAII, nests, restored on exceptions)
//   3. the op kind's default rule
//
// Memory: a backward walk frees the entries it walked (unless retain_graph), and no
// other; an entry whose output nobody but the tape holds any more can never be walked,
// so recording drops those too. Walking a graph that was freed is an error.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "tinygrad-cpp/core/tensor.h"

namespace tg {

struct Entry;
// Every backward rule has this one signature: given the entry and the gradient of its
// output, return one gradient per input (an undefined Tensor where none is needed).
using BackwardRule = std::function<std::vector<Tensor>(const Entry& entry, const Tensor& grad_output)>;
using RuleFunction = std::vector<Tensor> (*)(const Entry& entry, const Tensor& grad_output);

// One kind of op: its printable name and its default backward rule. Each op defines
// exactly one, next to its forward (`const OpKind Op::ReLU{"relu", rules::vanilla_relu};`);
// kinds are told apart by address, so a guard names the kind itself.
struct OpKind {
  const char* name;
  RuleFunction default_rule;
};

// What an op saves for its backward beyond its inputs and output. Each op that needs
// something derives its own struct with named fields; describe() is what tape.print()
// shows after the shapes ("stride=[2,2] padding=[1,1]").
struct SavedState {
  virtual ~SavedState() = default;
  virtual std::string describe() const { return {}; }
};

struct Entry {
  uint64_t seq = 0;               // position in the thread's history, increasing
  const OpKind* op = nullptr;
  std::vector<Tensor> inputs;
  Tensor output;
  std::shared_ptr<const SavedState> state;  // null for ops that save nothing
  BackwardRule override_rule;     // set by Tape::set_rule; empty when not overridden

  const Tensor& input(size_t i) const { return inputs.at(i); }
  const char* name() const { return op ? op->name : "?"; }
  // The op's saved state as the struct its rule expects; a readable error otherwise.
  template <class State>
  const State& saved() const {
    if (const auto* s = dynamic_cast<const State*>(state.get())) return *s;
    throw_wrong_state(typeid(State));
  }

 private:
  [[noreturn]] void throw_wrong_state(const std::type_info& expected) const;
};

class Tape {
 public:
  bool recording() const { return no_grad_depth_ == 0; }
  // Ops call this: records the entry when recording and some input requires grad,
  // and marks the output as requiring grad. Returns the output.
  Tensor record(const OpKind& op, std::vector<Tensor> inputs, Tensor output,
                std::shared_ptr<const SavedState> state = nullptr);
  template <class State>
    requires std::is_base_of_v<SavedState, State>
  Tensor record(const OpKind& op, std::vector<Tensor> inputs, Tensor output, State state) {
    if (!recording()) return output;
    return record(op, std::move(inputs), std::move(output), std::make_shared<const State>(std::move(state)));
  }

  // Reverse walk from `root` seeded with `seed` (root's shape). Frees the entries it
  // walked afterwards unless retain_graph.
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
  std::string str() const;   // one line per entry: op, input shapes -> output shape, state
  void print() const;        // str() to stdout

  // Used by the guards below.
  void push_no_grad() { ++no_grad_depth_; }
  void pop_no_grad() { --no_grad_depth_; }

 private:
  Entry* find(uint64_t seq);
  void drop_unreachable();
  void erase(std::vector<uint64_t> seqs);  // removes these entries, keeping the others in order
  std::vector<Entry> entries_;  // oldest first, sequence numbers increasing (with gaps)
  uint64_t next_seq_ = 1;
  size_t next_sweep_ = 1024;    // drop_unreachable() when the tape grows past this
  int no_grad_depth_ = 0;
};

// The calling thread's tape: every op records on it.
Tape& tape();

// RAII: no op records while a NoGrad is alive on this thread.
class NoGrad {
 public:
  NoGrad() { tape().push_no_grad(); }
  ~NoGrad() { tape().pop_no_grad(); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;
};

// RAII: while alive, entries of kind `op` use `rule` in backward (unless they carry a
// per-entry override). Guards nest; the innermost one wins; scope exit restores.
// A guard is scoped, not a setting: when it ends, even by an exception, every later
// backward is the true gradient again, so one explanation cannot leak into the next.
class OverrideBackward {
 public:
  OverrideBackward(const OpKind& op, BackwardRule rule);
  ~OverrideBackward();
  OverrideBackward(const OverrideBackward&) = delete;
  OverrideBackward& operator=(const OverrideBackward&) = delete;

 private:
  size_t depth_;  // position of this guard on the thread's override stack
};

// RAII: while alive, the calling thread's tape adds up time per op kind (`tgc bench
// --profile`). Forward: an op is charged from the previous recorded op (or the guard's
// start, or the last backward's end) to its own recording, so glue code between ops counts
// toward the next op. Backward: each rule's call is charged to its op, and the rest of the
// walk (seeding, summing gradients, hooks, freeing entries) to "walk". One at a time.
// Key::Layer tells items apart also by what the op saw: its inputs' shapes, which of them
// wanted a gradient, its output's shape and its saved settings, so each layer shape of a
// model gets its own item (`tgc bench --profile --layers`).
class ProfileOps {
 public:
  enum class Key { OpKind, Layer };
  struct Item {
    std::string op;     // an op kind's name, or "walk"
    std::string phase;  // "forward" or "backward"
    double seconds = 0;
    int64_t calls = 0;
    // Key::Layer only (empty for "walk"):
    std::vector<Shape> inputs;       // each input's shape ([] for an absent one, e.g. no bias)
    std::vector<bool> wanted_grad;   // whether each input asked for a gradient
    Shape output;
    std::string settings;            // the saved state's describe(): "stride=[2,2] ..."
  };
  explicit ProfileOps(Key key = Key::OpKind);
  ~ProfileOps();
  ProfileOps(const ProfileOps&) = delete;
  ProfileOps& operator=(const ProfileOps&) = delete;
  const std::vector<Item>& items() const { return items_; }  // in first-seen order

  // Called by the tape.
  void forward_op(const Entry& entry);
  void begin_walk();
  void rule(const Entry& entry, int64_t ns);
  void end_walk();

 private:
  void charge(const Entry* entry, const char* phase, int64_t ns);
  Key key_;
  std::vector<Item> items_;
  std::map<std::string, size_t> index_;  // an item's key -> its place in items_
  int64_t mark_ns_ = 0, walk_rules_ns_ = 0;
};

// The rule backward would use for `entry` right now.
BackwardRule resolve_rule(const Entry& entry);

}  // namespace tg
