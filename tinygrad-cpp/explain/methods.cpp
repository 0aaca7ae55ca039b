#include "tinygrad-cpp/explain/methods.h"

#include <fmt/format.h>

#include <cmath>

namespace tg::explain {

bool TargetKinds::accepts(Target::Kind kind) const {
  switch (kind) {
    case Target::Kind::Class: return classes;
    case Target::Kind::Neuron: return neurons;
    case Target::Kind::Detection: return detections;
  }
  return false;
}

std::string TargetKinds::str() const {
  std::string s;
  for (const Target::Kind kind : {Target::Kind::Class, Target::Kind::Neuron, Target::Kind::Detection})
    if (accepts(kind)) s += (s.empty() ? "" : ", ") + std::string(kind_name(kind));
  return s;
}

const char* rule_words(RectifierRule rule) {
  switch (rule) {
    case RectifierRule::AsGiven: return "as given";
    case RectifierRule::Own: return "its own";
    case RectifierRule::NoGradient: return "no gradient";
  }
  return "";
}

int64_t Call::whole(const std::string& name) const { return static_cast<int64_t>(settings.at(name)); }
float Call::real(const std::string& name) const { return static_cast<float>(settings.at(name)); }

const std::vector<Method>& methods() {
  static const std::vector<Method> table = [] {
    std::vector<Method> all;
    // The families, in the order tgc --help lists them.
    for (auto family : {gradient_methods, rule_based_methods, perturbation_methods, cam_methods})
      for (Method& m : family()) all.push_back(std::move(m));
    return all;
  }();
  return table;
}

const Method& find_method(const std::string& name) {
  std::string known;
  for (const Method& m : methods()) {
    if (m.name == name) return m;
    known += (known.empty() ? "" : ", ") + m.name;
  }
  throw Error(fmt::format("unknown method '{}' (known: {})", name, known));
}

std::vector<Parameter> all_parameters() {
  std::vector<Parameter> all;
  for (const Method& m : methods())
    for (const Parameter& p : m.parameters) {
      bool seen = false;
      for (const Parameter& q : all) seen |= q.name == p.name;
      if (!seen) all.push_back(p);
    }
  return all;
}

Settings defaults(const Method& method) {
  Settings s;
  for (const Parameter& p : method.parameters) s[p.name] = p.default_value;
  return s;
}

Tensor run(const Method& method, nn::Model& model, const Tensor& input, const Target& target, const Settings& given,
           const std::string& layer) {
  if (!method.targets.accepts(target.kind))
    throw Error(fmt::format("{}: explains targets of kind {}, not a {}", method.name, method.targets.str(), kind_name(target.kind)));
  Settings settings = defaults(method);
  for (const auto& [name, value] : given) {
    const Parameter* spec = nullptr;
    for (const Parameter& p : method.parameters)
      if (p.name == name) spec = &p;
    if (!spec) continue;  // another method's parameter (tgc passes them all)
    const bool whole = spec->kind == Parameter::Kind::Whole;
    if (!(value >= spec->min && value <= spec->max) || (whole && value != std::floor(value)))
      throw Error(fmt::format("{}: parameter {} = {} must be {} in [{}, {}]", method.name, name, value,
                              whole ? "a whole number" : "a number", spec->min, spec->max));
    settings[name] = value;
  }
  const std::string feature_map = layer.empty() ? model.info().cam_layer : layer;
  if (method.layer == UsesLayer::FeatureMap && feature_map.empty())
    throw Error(fmt::format("{}: the model names no default layer; name one", method.name));
  return method.run(Call{.model = model, .input = input, .target = target, .layer = feature_map, .settings = settings});
}

}  // namespace tg::explain
