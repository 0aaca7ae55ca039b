// What every lesson program shares: its flags (--help, --out, --model, --fashion-image,
// --image and --target for its photo steps, --smoke), numbered steps printed as it goes, figures written to out/NN_name/, and a
// lesson.json that the gallery (out/index.html) is built from.
//
//   int main(int argc, char** argv) {
//     tg::lesson::Lesson lesson(argc, argv, {.id = "08_guided_backprop", .title = "Guided backprop",
//                                            .summary = "what it shows", .uses_photo = true});
//     return lesson.run([&] {
//       lesson.step("Load the model");
//       ...
//       lesson.figure("rules.png", image, "Vanilla, deconvnet and guided gradients");
//     });
//   }
#pragma once

#include <fmt/format.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/nn/nn.h"

namespace tg::lesson {

struct Info {
  std::string id;        // "08_guided_backprop": also the output folder's name
  std::string title;     // one line
  std::string summary;   // what the student will see, for --help and the gallery
  bool uses_model = true;     // --model: the FashionCNN weights
  std::string fashion_image;  // the default of --fashion-image (a Fashion-MNIST picture); empty: no such flag
  bool uses_photo = false;    // --image and --target: the photo its photo steps explain (chelsea.png, Cat)
  int default_steps = 0;      // > 0: the lesson takes --steps N, its synthesis's steps (this by default)
};

// A photo as the photo model sees it, and the way back to the photo for figures. The model's
// input is stretched to the model's size (300x300), as the SSD was trained; figures undo the
// stretch with at_own_aspect, so a cat is not drawn squashed.
struct Photo {
  std::string name;         // the file's name, for titles ("chelsea.png")
  io::Image original;       // as loaded, at its own size
  Tensor input;             // [1,C,H,W], the model's input
  int64_t target = -1;      // the class the lesson explains on it
  std::string target_name;  // its label ("Cat")
  // On a detector, the one detection a lesson explains there: the anchor where `target`'s
  // score is highest (the best `target` detection; its score may be below the detector's 0.5).
  // anchor < 0 on a classifier.
  models::Detection detection;
  // An image of the input's size (the input itself, a map, an overlay) resampled to the
  // photo's aspect ratio; the longer side grows, so no pixel of the map is lost.
  io::Image at_own_aspect(const io::Image& input_sized) const;
  // The same with the detection's box drawn on it (labelled "Cat 0.85"), when there is one.
  io::Image with_box(const io::Image& input_sized) const;
};

class Lesson {
 public:
  Lesson(int argc, char** argv, Info info);

  // Runs the lesson body; a tg::Error becomes one line "error: ..." and exit status 1. In a
  // student copy, reaching a task that is still a TODO is one line naming the task and exit
  // status kExitWaitingForTask, so `make lessons` runs the others and still writes the gallery.
  int run(const std::function<void()>& body);
  static constexpr int kExitWaitingForTask = 3;

  // Numbered steps and what they found.
  void step(const std::string& text);
  template <class... Args>
  void say(fmt::format_string<Args...> format, Args&&... args) {
    fmt::print("    {}\n", fmt::format(format, std::forward<Args>(args)...));
  }
  // Live progress of a long step ("ascent 12/30"): on a terminal one line rewritten in
  // place and cleared at the end; elsewhere (a log, the tests) nothing, so logs keep one
  // plain line per result.
  void progress(const std::string& what, int done, int total);
  // A number that matters: printed, and shown in the gallery under the lesson.
  void number(const std::string& name, double value, const std::string& format = "{:.4g}");

  // Figures: written to out()/file and listed in the gallery with their caption. A figure
  // that reproduces one of the lectures' names it in `lecture` ("Khapra 97: ..."); the
  // gallery opens with the map from those names to the lessons' files.
  void figure(const std::string& file, const io::Image& image, const std::string& caption,
              const std::string& lecture = "");
  void chart(const std::string& file, const std::string& svg, const std::string& caption,
             const std::string& lecture = "");

  const std::string& out() const { return out_; }
  bool smoke() const { return smoke_; }  // a fast run for the tests: fewer steps and images
  int synthesis_steps() const { return synthesis_steps_; }  // --steps (Info::default_steps when not given)
  nn::Sequential& model();               // --model, loaded on first use
  // The photo model (make setup installs it), loaded on first use: the lectures' figures
  // of photos come from it. A missing file is an error that says to run make setup.
  nn::Model& photo_model();
  static constexpr const char* kPhotoModelPath = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";
  static constexpr const char* kDefaultPhoto = "assets/chelsea.png";  // --image
  static constexpr const char* kDefaultTarget = "Cat";                // --target on it
  const std::string& model_path() const { return model_path_; }
  io::Image fashion_image();             // --fashion-image
  const std::string& fashion_image_path() const { return fashion_image_path_; }
  // The lesson's photo for the photo model: --image (chelsea.png by default) and --target (Cat
  // for the shipped photo; for another photo the model's best class unless --target names one).
  Photo photo();
  const std::string& image_path() const { return image_path_; }  // --image
  // Another photo a step shows next to it (the coffee cup), with the class to explain there.
  Photo photo(const std::string& path, const std::string& target_name);

 private:
  void write_manifest() const;
  void ensure_out() const;  // creates the output folder (at the first figure, not before)
  Info info_;
  std::string out_, model_path_, fashion_image_path_, image_path_, target_name_;
  bool smoke_ = false;
  int steps_ = 0, synthesis_steps_ = 0;
  std::optional<models::LoadedModel> model_;
  std::shared_ptr<nn::Model> photo_model_;
  struct Figure {
    std::string file, caption, lecture;
    int width, height;
  };
  std::vector<Figure> figures_;
  std::vector<std::pair<std::string, std::string>> numbers_;
};

// A rectangle of pixels, [x0, x1) x [y0, y1).
struct Box {
  int64_t x0, y0, x1, y1;
  bool contains(int64_t x, int64_t y) const { return x >= x0 && x < x1 && y >= y0 && y < y1; }
};
// The cat's two eyes in chelsea.png as the photo model sees it (300x300): 10% of the image.
inline const std::vector<Box> kChelseaEyes = {{75, 80, 145, 150}, {175, 100, 240, 165}};
// The share of a map's total that lies inside the boxes. The map is [H,W], [C,H,W] or
// [1,C,H,W]; each pixel counts with its largest |value| over the channels.
double share_in_boxes(const Tensor& map, const std::vector<Box>& boxes);

// Pearson's correlation of two tensors' values (same number of elements), and Spearman's
// rank correlation of their magnitudes |a| and |b| (ties get their average rank).
double pearson(const Tensor& a, const Tensor& b);
double rank_correlation_of_magnitudes(const Tensor& a, const Tensor& b);

// Writes out_dir/index.html from every out_dir/*/lesson.json, in lesson order.
void write_gallery(const std::string& out_dir);

}  // namespace tg::lesson
