// From a saliency map to an object mask, as Simonyan, Vedaldi & Zisserman (2013) did:
// the most salient pixels are taken as surely the object, the least salient as surely
// background, and GrabCut (Rother, Kolmogorov & Blake 2004) decides the rest. GrabCut
// fits a Gaussian mixture of colors to each side, cuts the pixel graph where the colors
// and the neighbours agree best (a min cut), refits, and repeats. The graph cut is
// OpenCV's cv::grabCut (Debian's libopencv-imgproc-dev); the seeding is ours.
#pragma once

#include <cstdint>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/core/tensor.h"

namespace tg::segment {

// A label per pixel, row-major (the values are the ones cv::grabCut uses).
enum Seed : uint8_t {
  kBackground = 0,          // surely background: never changed
  kForeground = 1,          // surely the object: never changed
  kProbablyBackground = 2,  // GrabCut decides; starts in the background's color model
  kProbablyForeground = 3,  // GrabCut decides; starts in the object's color model
};

// Seeds from a saliency map ([H,W] or [1,H,W], larger = more salient): pixels at or above
// the `foreground_quantile` of the map are kForeground, at or below the
// `background_quantile` kBackground, the others kProbablyForeground (as GrabCut's own
// rectangle start does: whatever is not surely background may be the object, and its
// colors start in the object's model). Simonyan et al. used the 95% and 30% quantiles.
std::vector<uint8_t> seeds_from_saliency(const Tensor& saliency, double foreground_quantile = 0.95,
                                         double background_quantile = 0.30);

// GrabCut on an 8-bit image (gray or RGB) from per-pixel seeds (width * height of them).
// Returns the mask: 1 where GrabCut labels the pixel object, else 0.
std::vector<uint8_t> grabcut(const io::Image& image, const std::vector<uint8_t>& seeds, int iterations = 5);

// |a and b| / |a or b| of two masks of the same size (1 when both are empty).
double intersection_over_union(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

// A rectangle of pixels, [x0, x1) x [y0, y1): a detector's box on the image it saw.
struct Rect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// A detector says where the object is: every seed outside its box becomes kBackground
// (GrabCut's own rectangle start), the seeds inside are kept. Seeds are width x height.
void background_outside(std::vector<uint8_t>& seeds, int width, int height, const Rect& box);

// How a mask (width x height, 1 = object) sits on a box: the share of the box's pixels in the
// mask, and the share of the mask's pixels inside the box (0 for an empty box or mask).
struct BoxCoverage {
  double box_covered = 0, mask_inside = 0;
};
BoxCoverage box_coverage(const std::vector<uint8_t>& mask, int width, int height, const Rect& box);

}  // namespace tg::segment
