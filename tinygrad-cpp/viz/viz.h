// Turning tensors into pictures: how an attribution becomes numbers in [0, 1]
// (normalization policies), how those become colors (colormaps), and the pieces
// lessons assemble figures from: upsampling, overlays, image grids, SVG charts.
#pragma once

#include <string>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/core/tensor.h"

namespace tg::viz {

// How an attribution map [C,H,W] (or [H,W], or a batch of one [1,C,H,W]) becomes values in [0, 1].
enum class Normalize {
  MaxAbs,      // max over channels of |a|, divided by its maximum: 1 channel (Simonyan et al.)
  Signed,      // a / max|a| mapped so that 0 -> 0.5: negative below, positive above mid-gray
  MinMax,      // (a - min) / (max - min), per tensor
  Percentile,  // clip to the [100-p, p] percentiles, then min-max: one outlier cannot wash out the rest
  Percentile99,  // as MaxAbs, but divided by the 99th percentile (or normalize's `percentile`) of those values and clipped at 1: the
                 // brightest 1% saturate, so a few pixels cannot darken the rest (the gradient displays' policy)
};
// Returns [C,H,W] with values in [0, 1] ([1,H,W] for MaxAbs). A constant map gives 0.5
// for Signed (all zero) and 0 otherwise.
Tensor normalize(const Tensor& map, Normalize policy, float percentile = 99.f);

// The value Percentile99 maps to 1: the 99th (or given) percentile over pixels of max over channels of |a|.
float clip_level(const Tensor& map, float percentile = 99.f);
// The words a figure with a Percentile99 display states: "|g| clipped at its 99th percentile (3.1e-04)".
std::string clip_note(const Tensor& map, const std::string& symbol = "|g|");

enum class Colormap {
  Gray,       // black -> white
  Diverging,  // blue -> white (0.5) -> red: for signed maps
  Viridis,    // perceptually uniform dark purple -> yellow: for magnitudes
};

// How an attribution map is shown: its magnitude |a| (max over the colour channels) from 0 to a
// clip level, signed (summed over the colour channels) from -level to +level around white, or
// min to max. `tgc explain` and the explorer page draw maps with this one function.
enum class Show { Magnitude, Signed, MinMax };
// The display a method's normalization policy asks for (MaxAbs: magnitude; MinMax; else signed).
Show show_for(Normalize policy);
struct MapDisplay {
  Show show = Show::MinMax;
  Colormap colormap = Colormap::Viridis;
  float low = 0, high = 0;  // what the colour bar's ends stand for (+-the clip level, 0 and the level, or min and max)
  Tensor unit;              // [1,h,w] in [0, 1]
};
// `attribution` is [C,h,w] or [h,w]; gradients are clipped at the `percentile`-th percentile of |a|.
MapDisplay display_map(const Tensor& attribution, Show show, float percentile = 99.f);
// The P-th percentile as words: "99th percentile", "99.5th percentile".
std::string percentile_words(float percentile);

// The whole way from a map to an enlarged picture: a [1,1,H,W], [1,H,W] or [H,W] map is
// normalized with `policy`, colored with `colormap` and each pixel repeated scale x scale.
io::Image picture(const Tensor& map, Normalize policy, Colormap colormap, int scale = 1);
// Colors a [1,H,W] or [H,W] map with values in [0, 1] as RGB.
io::Image colorize(const Tensor& unit_map, Colormap colormap);
// A [C,H,W] tensor in [0, 1] with C = 1 or 3 as an 8-bit image (values clipped).
io::Image to_image(const Tensor& unit);
// An 8-bit image as a [C,H,W] tensor in [0, 1].
Tensor from_image(const io::Image& image);

// Every pixel repeated factor x factor times (for showing a 28x28 input large).
io::Image scale_nearest(const io::Image& image, int factor);
// base * (1 - alpha) + heat * alpha; a gray base is expanded to RGB; sizes must match.
io::Image overlay(const io::Image& base, const io::Image& heat, float alpha);
// Tiles in rows of `columns`, `spacing` pixels apart on a `background` gray; tiles of
// different sizes are placed in cells of the largest size.
io::Image grid(const std::vector<io::Image>& tiles, int columns, int spacing = 2, uint8_t background = 255);

// ---- words in figures: DejaVu Sans (Debian's fonts-dejavu-core) drawn with stb_truetype ----
// `text` as an image: one line, `pixel_height` pixels tall, dark ink on white.
io::Image text(const std::string& text, int pixel_height = 14);
// The tile with its title centered above it (as wide as the wider of the two).
io::Image titled(const io::Image& tile, const std::string& title, int pixel_height = 14);
// A horizontal bar of `colormap` from 0 to 1, `width` wide, with the values its left end,
// middle and right end stand for printed under it ("" leaves one out).
io::Image color_bar(Colormap colormap, int width, const std::string& low, const std::string& middle,
                    const std::string& high);
// An image of a model's input size (the input, a map, an overlay) resampled (bilinear) to the
// aspect ratio of a photo of width x height, which was stretched to make that input: the
// longer side grows, so no pixel of the map is lost. Undoes the stretch for display.
io::Image at_aspect(const io::Image& input_sized, int64_t width, int64_t height);
// Images one above the other, centered, `spacing` pixels apart on white.
io::Image stack(const std::vector<io::Image>& rows, int spacing = 4);

// ---- SVG charts (axes, ticks, labels; no dependencies) ----
struct Series {
  std::string label;
  std::vector<double> x, y;
};
// `x_tick_labels`, when given, names the x values 0, 1, 2, ... (layer names instead of numbers).
std::string line_chart(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                       const std::string& y_label, int width = 640, int height = 400,
                       const std::vector<std::string>& x_tick_labels = {});
std::string histogram(const std::vector<double>& values, int bins, const std::string& title, const std::string& x_label,
                      int width = 640, int height = 400);
// A histogram filled one value at a time (its memory is its bins, so millions of activations
// need no list). A value equal to one of `exact` (a ReLU's 0, a ReLU6's ceiling 6) is counted
// apart and drawn as its own orange bar at that value, labelled with its share ("0: 40.2%"),
// so a spike of zeros is visible instead of hidden in the first bin or left out. The y axis is
// the share of all values in %, scaled to the ordinary bins; a spike taller than that is cut
// at the top (a white gap marks the cut) and its label gives its height. Values outside
// [lo, hi] count in the end bins.
class Histogram {
 public:
  Histogram(double lo, double hi, int bins, std::vector<double> exact = {});
  void add(double value);
  int64_t count() const { return total_; }
  double share_exact(double value) const;  // the share of all values equal to `value` (one of `exact`)
  std::string svg(const std::string& title, const std::string& x_label, int width = 640, int height = 400) const;

 private:
  double lo_, hi_;
  std::vector<double> bins_, exact_, exact_counts_;
  int64_t total_ = 0;
};
// Bars in groups, each its own colour, named in a legend at the plot's top left: bar i is in
// group groups[i] (0 when `groups` is empty), drawn in the palette's colour of that group.
struct BarGroups {
  std::vector<size_t> groups;      // one per bar, or empty: all in group 0
  std::vector<std::string> names;  // the legend's words for group 0, 1, ...; empty: no legend
};
// One bar per label; `x_label` titles the x axis (what the labels are), under the labels.
std::string bar_chart(const std::vector<std::string>& labels, const std::vector<double>& values, const std::string& title,
                      const std::string& y_label, int width = 640, int height = 400, const std::string& x_label = "",
                      const BarGroups& groups = {});
// A small graph drawn as an SVG diagram (a network small enough to list every path): labelled
// circles, and arrows between them with their labels. Coordinates are the SVG's pixels.
struct DiagramNode {
  double x = 0, y = 0;  // the circle's centre
  std::string label;    // inside the circle ("x0")
  std::string note;     // under it ("= 1.0")
  bool dimmed = false;  // drawn gray (a unit that is off)
};
enum class EdgeStyle { Plain, Highlighted, Cut };  // thin gray; thick in `color`; dashed gray
struct DiagramEdge {
  size_t from = 0, to = 0;  // indices into the nodes
  std::string label;        // written a third of the way along it ("w=0.5")
  EdgeStyle style = EdgeStyle::Plain;
  std::string color = "#d62728";  // for Highlighted edges and their labels
};
struct DiagramNote {  // a line of text under the graph, in a color (a path's, to match it)
  std::string text;
  std::string color = "black";
};
std::string diagram(const std::vector<DiagramNode>& nodes, const std::vector<DiagramEdge>& edges, const std::string& title,
                    const std::vector<DiagramNote>& notes, int width = 720, int height = 420);
// Text made safe inside HTML or SVG, in an element or a quoted attribute: < > & " as entities.
std::string escape_markup(const std::string& text);
// Writes text (an SVG, an HTML page) atomically.
void save_text(const std::string& path, const std::string& text);

// ---- boxes on photos (detections) ----
struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};
// A legend of colour swatches, each a square followed by its words, `per_row` to a row (all in
// one row when 0): for a picture whose colours one colour bar cannot say (a signed RGB map).
io::Image swatch_legend(const std::vector<std::pair<Rgb, std::string>>& entries, int per_row = 0);
// A distinct strong color for class k (white text reads on all of them).
Rgb class_color(int64_t k);
// Draws the outline of the box with corners (x0, y0) and (x1, y1) in the image's pixels,
// `thickness` pixels wide inside it, clipped to the image; a gray image becomes RGB. A
// non-empty `label` is written (escaped: printable()) in white on a tab of the same color
// above the box's top-left corner, or just inside it when there is no room above.
void draw_box(io::Image& image, float x0, float y0, float x1, float y1, Rgb color, const std::string& label = "",
              int thickness = 2, int text_height = 14);

}  // namespace tg::viz
