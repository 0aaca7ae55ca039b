// The one detection a lesson explains on a photo, and how its figures show it. The photo
// model is a detector: every explanation of a photo is of one detection (one anchor's class
// logit), and every photo figure draws that detection's box.
#pragma once

#include <string>

#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/explain/target.h"
#include "tinygrad-cpp/models/detection.h"

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

// The detection's box drawn on a picture of the photo at any size (the photo, a map over it,
// at the input's size or at the photo's own aspect), labelled with its class and p.
io::Image with_box(const io::Image& picture, const PhotoDetection& found);

}  // namespace tg::lesson
