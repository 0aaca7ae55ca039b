// The lessons' synthesis recipes, in one place: for a model and a target, which objective to
// climb and with which options. Lesson 9 (class and neuron visualization), lesson 10 (feature
// inversion), `tgc visualize`, `tgc invert` and the explorer page all ask here, so they cannot
// disagree.
//
//   FashionCNN (gray 28x28)   plain ascent on the pixels from the mean image, every step clipped to
//                             valid pixels (lesson 9): a class with jitter and blur, a neuron with a
//                             stronger L2 and no jitter; inversion: descent from noise (lesson 10).
//   A photo model, a class    Olah et al.'s recipe (feature_visualization.h) with lesson 9's
//                             transforms; on a detector the class is asked of ONE detection, the
//                             anchors of one head's centre cell that class_detection() names.
//   A photo model, a neuron   the decorrelated image with 2-pixel shifts, plain ascent on a
//                             normalized gradient (lesson 4).
//   A photo model, inversion  Olah et al.'s recipe with the library's default transforms, each
//                             start its own noise (lesson 10).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/explain/feature_visualization.h"
#include "tinygrad-cpp/models/detection.h"

namespace tg::explain {

// ---- which detection a detector's class climbs ----
// Anchors of the centre cell of one head (its grid as models::detection_heads() names it), by
// their place in the cell (models::ssd_anchors): 0 the square box, 1 the 2:1 wide one, 2 the 1:2
// tall one, 3 and 4 the 3:1 and 1:3 ones, 5 a larger square; several are summed.
struct ClassDetection {
  std::string name;                  // the class's label
  std::string grid = "5x5";          // the head
  std::vector<int64_t> boxes = {0};  // which of the cell's anchors (empty: all of them)
};
// Lesson 9's table: the classes whose picture a person names without its title at 256 steps,
// chosen by looking (the lesson's figure shows them, in this order). Tried and not kept, with
// these transforms (128 or 256 steps): Dog at the 5x5 head's square anchor (a small shaggy
// animal on its back, dog-like but not named without the title), at the 3x3 square anchor
// (brown fur, no shape) and at all six 5x5 anchors summed; Bicycle at the 5x5 wide anchor (one
// wheel and handlebars); Car at the 5x5 wide anchor (a smaller car); and at 64 steps on the 5x5
// square anchor: Desk, Computer mouse, Box, Stationary bicycle, Table, Vehicle, Footwear, Book,
// Person, Laptop (textures and parts; the boot and the camera were whole). With Lucid's
// transforms at 256 steps: Coffee cup and Mug (5x5 and 3x3, square and all anchors), Chair,
// Bottle, High heels, Cattle, Computer monitor did not read; a total-variation term (2e-4
// saturates the image to black and white, 2e-5 softens it without making more classes read); a
// spectrum of 1/f^1.5 (colour blobs).
const std::vector<ClassDetection>& class_detections();
// The table's entry for a label; any other class gets the default: the 5x5 head's square
// anchor (an object about half the frame wide, where most of the table's classes read).
ClassDetection class_detection(const std::string& label);
// The anchors a ClassDetection names: its head's centre cell; errors name the heads there are.
std::vector<int64_t> centre_anchors(const std::vector<models::Head>& heads, const ClassDetection& detection);
// "the 150x150 px square anchor of the 5x5 head's centre cell" (one anchor) or "the 6 anchors
// (summed) of the 5x5 head's centre cell"; width and height in input pixels.
std::string anchor_words(const std::vector<int64_t>& anchors, const std::string& grid, int64_t width, int64_t height);

// ---- the recipes' options ----
// Lesson 9's photo recipe: twice Lucid's usual turns and shifts and three times its zooms (20
// degrees, 30%, 16 pixels). At 128 steps and the same anchors, with the library's defaults the
// car was a blurred car's front and the bicycle one wheel and a handlebar; with 15 degrees, 20%
// and 12 pixels a whole car formed; with these the cat and the dog also became whole animals.
constexpr RandomTransforms kClassTransforms = {.degrees = 20.f, .scale = 0.3f, .shift = 16.f};
FeatureVisualizationOptions photo_class_recipe(int steps);
// Lesson 10's photo inversion: the same image (gain and spectrum) with the default transforms,
// starts of sd 0.05 (each its own noise image); seed 0 gives lesson 10's starts.
FeatureVisualizationOptions photo_inversion_recipe(int steps, uint64_t seed);
// Every ascent step clipped to valid pixels, 0..255 after the model's normalization (gray models).
void clip_to_valid_pixels(AscentOptions& options, const preprocess::InputSpec& spec);
// FashionCNN's ascent toward a class (jitter 2, blur every 10 steps) or a neuron (stronger L2).
AscentOptions gray_class_recipe(const preprocess::InputSpec& spec, int steps, uint64_t seed);
AscentOptions gray_neuron_recipe(const preprocess::InputSpec& spec, int steps);
// Lesson 4's neuron ascent on a photo model: plain ascent on the parameters of the decorrelated
// image with a normalized gradient, the objective seen through 2-pixel shifts (kNeuronShifts).
constexpr RandomTransforms kNeuronShifts = {.degrees = 0.f, .scale = 0.f, .shift = 2.f};
AscentOptions photo_neuron_recipe(int steps);
// An input as it is once saved as 8-bit pixels: what figures show and numbers are measured on.
Tensor as_saved(const Tensor& x, const preprocess::InputSpec& spec);

// ---- a visualization: target in, objective and recipe out ----
struct VisualizationTarget {
  int64_t class_index = -1;      // a class, or
  std::optional<Neuron> neuron;  // a neuron (its y, x default to the centre of its map)
  // A detector's class: the head and anchors to climb instead of class_detection()'s.
  std::optional<ClassDetection> detection;
};
struct Visualization {
  enum class Recipe { PixelAscent, Decorrelated, DecorrelatedAscent };
  Recipe recipe = Recipe::PixelAscent;
  std::string recipe_words;  // "Olah et al.'s recipe"
  std::string what;          // "class Cat (3), one detection: the 150x150 px square anchor of ..."
  int default_steps = 0;
  Objective objective;
  std::optional<Neuron> neuron;  // placed (y, x filled in for a map)
  int64_t class_index = -1;
  DetectionTargets detection;  // a detector's class: image 0's class and anchors (else empty)
  AscentOptions ascent;                   // PixelAscent, DecorrelatedAscent
  FeatureVisualizationOptions features;   // Decorrelated
  uint64_t seed = 0;
  preprocess::InputSpec input;  // the model's
};
// The plan for a target. Start noise and transforms come from `seed`; on the Olah recipe a
// class's start noise is seeded by seed + its index, so seed 0 gives lesson 9's picture.
// Errors name what is wrong (a neuron outside its layer, the background class).
Visualization plan_visualization(nn::Model& model, const VisualizationTarget& target, uint64_t seed);

// What a target reaches on an image (one pass, no recording): p for a class (a detection: the
// best of its anchors, and the box the detector decodes there, as fractions of the input), the
// activation for a neuron.
struct Reading {
  float value = 0.f;    // the logit (a class) or the activation (a neuron)
  double p = -1;        // a class's probability
  int64_t anchor = -1;  // a detection's anchor
  std::optional<models::Box> box;
};
Reading read_target(nn::Model& model, const Visualization& plan, const Tensor& x);
std::string reading_words(const Reading& reading);  // "p = 0.953 (logit 3.01)" or "activation 2.410"

// The climb: `steps` steps of the plan's recipe from its start, [1,C,H,W] in the input's range.
struct Climb {
  int steps = 0;                                          // 0: the plan's default
  std::function<void(int step, float objective)> on_step;  // after each step
  std::function<bool(int step)> wants_image;               // which steps on_image sees (unset: all)
  std::function<void(int step, const Tensor& image)> on_image;
};
Tensor climb(const Visualization& plan, const Climb& climb);

// ---- feature inversion (Mahendran & Vedaldi 2015) ----
// The relative code error ||phi(x) - phi0||^2 / ||phi0||^2 at `layer`, without recording.
double code_error(nn::Model& model, const std::string& layer, const Tensor& code, const Tensor& x);
struct InversionOptions {
  int starts = 5;
  int steps = 0;      // 0: 300 on a gray model, 128 on a photo model
  float tv = 0.f;     // gray models: a total-variation weight
  uint64_t seed = 0;  // 0 repeats lesson 10's starts
  // After each step: which start (from 0; a photo model's starts climb together: -1), the step
  // (from 1), and the code error of that start (a photo model: summed over the starts).
  std::function<void(int start, int step, float error)> on_step;
  std::function<bool(int step)> wants_image;  // which steps on_image sees (unset: all)
  // The images as they now are: [1,C,H,W] of `start` (gray), or [starts,C,H,W] with start -1.
  std::function<void(int start, int step, const Tensor& images)> on_image;
};
int default_inversion_steps(const nn::Model& model);
// Images whose code at `layer` matches `input`'s: one [1,C,H,W] per start.
std::vector<Tensor> invert(nn::Model& model, const std::string& layer, const Tensor& input, const InversionOptions& options);

}  // namespace tg::explain
