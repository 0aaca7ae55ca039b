#include "tinygrad-cpp/core/rule_registry.h"

#include <fmt/format.h>

#include <mutex>

#include "tinygrad-cpp/core/ops.h"

namespace tg {

namespace {

const std::vector<NamedRule>& built_in_rules() {
  static const std::vector<NamedRule> built_in = {
      {"vanilla", rules::vanilla_relu, rules::vanilla_relu},
      {"deconvnet", rules::deconvnet_relu, rules::deconvnet_relu},
      {"guided", rules::guided_relu, rules::guided_relu},
  };
  return built_in;
}

struct Registry {
  std::mutex mutex;
  std::vector<NamedRule> added;  // in the order registered
};
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_rule(const std::string& name, BackwardRule relu_rule, BackwardRule relu6_rule) {
  bool valid = !name.empty() && name.size() <= 40;
  for (char c : name) valid &= std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  if (!valid) throw Error(fmt::format("register_rule: name '{}' must be 1 to 40 letters, digits, '_' or '-'", printable(name)));
  if (!relu_rule || !relu6_rule) throw Error(fmt::format("register_rule({}): both rules must be given", name));
  for (const NamedRule& r : built_in_rules())
    if (r.name == name) throw Error(fmt::format("register_rule: '{}' is a built-in rule and cannot be replaced", name));
  Registry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mutex);
  for (NamedRule& r : reg.added)
    if (r.name == name) {
      r = {name, std::move(relu_rule), std::move(relu6_rule)};
      return;
    }
  reg.added.push_back({name, std::move(relu_rule), std::move(relu6_rule)});
}

std::vector<NamedRule> registered_rules() {
  std::vector<NamedRule> all = built_in_rules();
  Registry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mutex);
  all.insert(all.end(), reg.added.begin(), reg.added.end());
  return all;
}

NamedRule find_rule(const std::string& name) {
  std::string known;
  for (const NamedRule& r : registered_rules()) {
    if (r.name == name) return r;
    known += (known.empty() ? "" : ", ") + r.name;
  }
  throw Error(fmt::format("unknown rule '{}' (known: {})", printable(name), known));
}

}  // namespace tg
