// The one detection a lesson explains on a photo, and how its figures show it. The photo
// model is a detector: every explanation of a photo is of one detection (one anchor's class
// logit), and every photo figure draws that detection's box.
#pragma once

#include <string>

#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/explain/target.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::lesson {

struct PhotoDetection {
  models::Detection detection;  // its class, anchor, score, box, head and the layer that head reads
  bool detected = true;         // false: no box of the class reached p 0.5; this is its best anchor
  explain::Target target() const;         // that anchor's class logit, for every explain method
  Box input_box(const nn::Model& model) const;  // its box in the model's input pixels (300x300)
  std::string describe() const;           // "Coffee cup p 0.55, box 174,23,421,323 (image pixels), 3x3 head"
};

// The best detection of the photo's target class (after non-maximum suppression), or when none
// reaches the detector's threshold, that class's best anchor (detected = false). The photo model
// must be a detector.
PhotoDetection photo_detection(nn::Model& model, const Photo& photo);

// A photo whose object fills the frame (the shipped cat) is detected by a coarse head: the 1x1
// head's one box spans the photo, and that detection reads every pixel a little, so occlusion
// and Grad-CAM have nothing to localize. Shrunk to `scale` of each side in the middle of a
// mid-gray canvas of the photo's own size, the object covers scale^2 of the frame and a finer
// head detects it (chelsea at 0.5: the 5x5 head). Named "chelsea.png at 50% on gray"; same
// target class; its `detection` is that photo's best detection of the class.
Photo shrunk_on_gray(nn::Model& model, const Photo& photo, float scale);

// The photo a lesson explains one detection on: the photo itself when its detection's box is at
// most `max_box_share` of the photo, else the photo shrunk on gray (kShrink) and its detection there.
struct FramedDetection {
  Photo photo;
  PhotoDetection found;
  float scale = 1.f;  // 1: the photo itself; < 1: shrunk on gray
  double box_share_before = 0;  // the share of the photo the original detection's box covers
  std::string why() const;      // one line on what was done and why, for the lesson's output and captions
  // A box in the original photo's input pixels (300x300) moved to where it is in the shrunk photo's input.
  Box framed(const Box& input_box, const nn::Model& model) const;
};
constexpr float kShrink = 0.5f;
constexpr double kFrameFillingShare = 0.6;
FramedDetection detection_inside_frame(nn::Model& model, const Photo& photo, double max_box_share = kFrameFillingShare);

// A map over a picture of the photo, so that both show: the photo in gray (its luma: the map's
// colours are the only colours), and each pixel blends the colormap's colour of `unit` (values in [0, 1], the picture's size) over the picture by how far the value is from
// `neutral` (0.5: a signed map on Diverging; 0: a magnitude on Viridis), up to 85% where the map
// is farthest from it (square root: weak values still tint). Where the map is neutral the gray
// photo shows as it is.
io::Image heat_over(const io::Image& picture, const Tensor& unit, viz::Colormap colormap, float neutral);

// The detection's box drawn on a picture of the photo at any size (the photo, a map over it,
// at the input's size or at the photo's own aspect), labelled with its class and p.
io::Image with_box(const io::Image& picture, const PhotoDetection& found);

}  // namespace tg::lesson
