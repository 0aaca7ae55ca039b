// Backward rules by name: the menu `tgc serve` offers for the rectifiers (ReLU and ReLU6).
//
// Three are built in (core/ops.h, namespace rules): vanilla (the true gradient), deconvnet and
// guided. A student's own rule joins them with one call, and then appears in the page's rule
// menu next to them:
//     tg::register_rule("my_rule", my_relu_rule, my_relu6_rule);
// A rule for ReLU6 sees clamp(x, 0, 6)'s entry; the built-in ones serve both kinds.
#pragma once

#include <string>
#include <vector>

#include "tinygrad-cpp/core/tape.h"

namespace tg {

struct NamedRule {
  std::string name;
  BackwardRule relu, relu6;  // the rule for ReLU entries, and for ReLU6 entries
};

// Adds a rule under `name` (letters, digits, '_' and '-', at most 40); replaces one of the same
// name that was registered before, but never a built-in one. Thread-safe.
void register_rule(const std::string& name, BackwardRule relu_rule, BackwardRule relu6_rule);
// Every rule, the built-in ones first, then in the order registered.
std::vector<NamedRule> registered_rules();
// The rule named `name`; an error naming the known ones otherwise.
NamedRule find_rule(const std::string& name);

}  // namespace tg
