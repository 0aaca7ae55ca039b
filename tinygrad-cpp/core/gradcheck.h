// Gradient checking: compare an op's backward rule with central differences.
//
// For a function f of some tensors, pick a fixed random R of f's output shape and
// look at the scalar L = sum(f(x) * R). Backward seeded with R gives dL/dx from the
// rules; (L(x + eps e_i) - L(x - eps e_i)) / 2eps estimates the same number from
// forward passes alone. A rule is accepted when every element agrees within
// atol + rtol * |estimate|.
//
// When f is one op applied to the inputs (one new tape entry, every checked input among
// its inputs), the checker calls that entry's backward rule directly: the op is checked
// on its own, without the tape's reverse walk. When f is a composition of ops, it runs
// backward(R) through the whole tape.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tinygrad-cpp/core/ops.h"

namespace tg {

struct GradCheckOptions {
  float eps = 1e-2f;   // step of the central difference
  float atol = 2e-3f;  // absolute tolerance
  float rtol = 2e-2f;  // relative tolerance
  uint64_t seed = 1234;
};

struct GradCheckResult {
  bool ok = true;
  std::string message;     // for a failure: op, input, index, received and expected
  double max_error = 0.0;  // largest |backward - central difference| seen
  int64_t checked = 0;     // number of elements compared
  bool through_tape = false;  // true: backward() walked the tape; false: one rule was called directly
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// Checks the gradient of every input that requires grad. `name` labels the messages.
GradCheckResult check_gradients(const std::string& name, const TensorFunction& f, const std::vector<Tensor>& inputs,
                                const GradCheckOptions& options = {});

}  // namespace tg
