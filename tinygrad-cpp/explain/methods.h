// THE METHOD TABLE: every attribution method, registered once, with what `tgc explain`, the
// lessons' helpers and the explorer page need to offer it: its name, a one-line description,
// the targets it can explain, its parameters (default, range, help), how its map is shown,
// and the function that computes it.
//
// Each family file defines its own entries (gradients.cpp: gradient_methods(), ...), and
// methods.cpp lists the families in order: adding a method to a family touches only that
// family's file (and its test); a new family adds one line to the list. A plain function
// returning a vector, not self-registering statics (a static library drops those).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tinygrad-cpp/explain/target.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::explain {

// The kinds of target a method accepts.
struct TargetKinds {
  bool classes = false, neurons = false, detections = false;
  bool accepts(Target::Kind kind) const;
  std::string str() const;  // "class, neuron, detection"
};

// One numeric parameter: its flag name, default and range (both ends allowed).
struct Parameter {
  std::string name;
  double default_value = 0, min = 0, max = 0;
  std::string help;
  enum class Kind { Whole, Real } kind = Kind::Real;
};

// Parameter values by name (a method reads the ones it declared).
using Settings = std::map<std::string, double>;

// Where a method reads its feature map: nowhere, or a 4-D layer (Grad-CAM's), which defaults
// to the model's info().cam_layer.
enum class UsesLayer { No, FeatureMap };

// Which backward rule a method's gradients take through ReLU and ReLU6.
enum class RectifierRule {
  AsGiven,     // the one the rectifiers carry: vanilla, or one a caller puts on them (the page's rule menu)
  Own,         // its own, set by the method and defining it (guided backprop, deconvnet, guided Grad-CAM):
               // a rule chosen by a caller is not applied
  NoGradient,  // none: the method takes no gradient (occlusion)
};
const char* rule_words(RectifierRule rule);  // "as given", "its own", "no gradient"


// What a method's function receives.
struct Call {
  nn::Model& model;
  const Tensor& input;      // a batch [N,C,H,W] of the model's input
  const Target& target;     // of a kind the method accepts
  const std::string& layer; // for UsesLayer::FeatureMap
  const Settings& settings; // every declared parameter, checked against its range
  int64_t whole(const std::string& name) const;
  float real(const std::string& name) const;
};

struct Method {
  std::string name, description;
  TargetKinds targets;
  std::vector<Parameter> parameters;
  UsesLayer layer = UsesLayer::No;
  RectifierRule rule = RectifierRule::AsGiven;
  // How a map is shown: the normalization policy and colormap (MaxAbs maps also take the
  // max |value| over color channels; the others their sum).
  viz::Normalize policy = viz::Normalize::Signed;
  viz::Colormap colormap = viz::Colormap::Diverging;
  // [N,C,H,W] of the input (pixel methods), or [N,h,w] at the layer (a map at a layer).
  std::function<Tensor(const Call&)> run;
};

// Every method, in the table's order.
const std::vector<Method>& methods();
// The method named `name`; an error naming the known ones otherwise.
const Method& find_method(const std::string& name);
// Every parameter of the table once, in order of first appearance (a name means the same
// parameter, with the same default and range, wherever it appears).
std::vector<Parameter> all_parameters();
// Each of the method's parameters at its default.
Settings defaults(const Method& method);

// Runs a method: checks that it accepts the target's kind, fills parameters not given with
// their defaults, checks each against its range (an error names method, parameter, got and
// range), and names the layer (the model's cam_layer where `layer` is empty).
Tensor run(const Method& method, nn::Model& model, const Tensor& input, const Target& target, const Settings& given = {},
           const std::string& layer = "");

// The families' entries (each defined in its family's file).
std::vector<Method> gradient_methods();    // gradients.cpp
std::vector<Method> rule_based_methods();  // rule_based.cpp
std::vector<Method> perturbation_methods();  // occlusion.cpp
std::vector<Method> cam_methods();         // cam.cpp

}  // namespace tg::explain
