#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/course/lesson.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unistd.h>
#include <filesystem>
#include <numeric>
#include <nlohmann/json.hpp>

#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::lesson {

namespace fs = std::filesystem;

Lesson::Lesson(int argc, char** argv, Info info) : info_(std::move(info)) {
  cli::Args args("build/bin/lessons/" + info_.id, info_.title + "\n\n" + info_.summary);
  args.option("out", "DIR", "folder for the figures", false, "out/" + info_.id);
  if (info_.uses_model) args.option("model", "FILE", "FashionCNN weights", false, "assets/fashion_cnn.safetensors");
  if (!info_.fashion_image.empty())
    args.option("fashion-image", "IMG", "a Fashion-MNIST picture (PNG or JPEG)", false, info_.fashion_image);
  if (info_.uses_photo) {
    args.option("image", "IMG", "the photo the photo steps explain (PNG or JPEG)", false, kDefaultPhoto);
    args.option("target", "CLASS", "the class to explain on it (default: Cat on the shipped photo, else the best class)",
                false, "");
  }
  if (info_.default_steps > 0)
    args.option("steps", "N", "optimization steps of the lesson's synthesis", false, std::to_string(info_.default_steps));
  args.toggle("smoke", "a fast run (fewer steps and images), as the tests do");
  args.parse(argc, argv, 1);
  if (info_.default_steps > 0) synthesis_steps_ = static_cast<int>(args.get_int("steps", 1, 100000));
  // Paths the user gave are theirs (relative to where they ran the lesson); the lesson's own
  // assets are the repository's. Run from elsewhere, the lesson moves to the repository
  // (found from its own executable) after making the user's paths absolute.
  auto user_path = [&](const std::string& flag) {
    const std::string value = args.get(flag);
    return args.on(flag) && !value.empty() ? fs::absolute(value).string() : value;
  };
  out_ = user_path("out");
  if (info_.uses_model) model_path_ = user_path("model");
  if (!info_.fashion_image.empty()) fashion_image_path_ = user_path("fashion-image");
  if (info_.uses_photo) {
    image_path_ = user_path("image");
    target_name_ = args.get("target");
    if (target_name_.empty() && image_path_ == kDefaultPhoto) target_name_ = kDefaultTarget;
  }
  smoke_ = args.on("smoke");
  if (!fs::exists("assets/fashion_cnn.safetensors")) {
    // The executable is build/bin/lessons/NN (or build/sanitize/bin/lessons/NN): walk up
    // from it to the folder that holds the assets.
    std::error_code ec;
    fs::path root = fs::read_symlink("/proc/self/exe", ec).parent_path();
    for (int up = 0; !ec && up < 6 && !fs::exists(root / "assets/fashion_cnn.safetensors"); ++up) root = root.parent_path();
    if (!ec && fs::exists(root / "assets/fashion_cnn.safetensors")) fs::current_path(root, ec);
    if (ec || !fs::exists("assets/fashion_cnn.safetensors")) {
      std::fprintf(stderr, "error: cannot find the repository's assets/ from here; run the lesson from the repository root\n");
      std::exit(1);
    }
  }
}

void Lesson::ensure_out() const {
  std::error_code ec;
  fs::create_directories(out_, ec);
  if (ec) throw Error(out_ + ": cannot create the output folder (" + ec.message() + ")");
}

int Lesson::run(const std::function<void()>& body) {
  try {
    // The output folder appears with the first figure, after the inputs have loaded.
    fmt::print("Lesson {}: {}\n\n", info_.id, info_.title);
    // The student's own inputs are checked before the first step, so a bad --image or --target
    // stops the lesson before it writes any figure.
    if (info_.uses_photo) {
      io::load_image(image_path_);
      if (!target_name_.empty()) photo_model().class_index(target_name_);
    }
    if (!fashion_image_path_.empty()) io::load_image(fashion_image_path_);
    body();
    write_manifest();
    fmt::print("\nfigures in {}/ ({} files); `make lessons` collects every lesson in out/index.html\n", out_,
               figures_.size());
    return 0;
  } catch (const NotImplemented& e) {  // a student copy where this lesson's task is still a TODO
    std::fflush(stdout);               // the steps so far, then the error after them
    std::fprintf(stderr, "error: this lesson needs task '%s', which is not implemented yet (%s); `make grade` shows your progress\n",
                 e.task().c_str(), e.what());
    return kExitWaitingForTask;
  } catch (const std::exception& e) {  // tg::Error, and anything from the standard library
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", printable(e.what()).c_str());
    return 1;
  }
}

void Lesson::step(const std::string& text) {
  ++steps_;
  fmt::print("{}Step {}. {}\n", steps_ > 1 ? "\n" : "", steps_, text);
}

void Lesson::progress(const std::string& what, int done, int total) {
  static const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  if (!terminal) return;
  if (done < total) fmt::print("\r    {}: {}/{} ", what, done, total);
  else fmt::print("\r{:<{}}\r", "", what.size() + 32);  // clear the line for what follows
  std::fflush(stdout);
}

void Lesson::number(const std::string& name, double value, const std::string& format) {
  const std::string text = fmt::vformat(format, fmt::make_format_args(value));
  fmt::print("    {} = {}\n", name, text);
  numbers_.emplace_back(name, text);
}

void Lesson::figure(const std::string& file, const io::Image& image, const std::string& caption,
                    const std::string& lecture) {
  ensure_out();
  io::save_png(out_ + "/" + file, image);
  figures_.push_back({file, caption, lecture, image.width, image.height});
  fmt::print("    wrote {}/{} ({}x{})\n", out_, file, image.width, image.height);
}

void Lesson::chart(const std::string& file, const std::string& svg, const std::string& caption,
                   const std::string& lecture) {
  ensure_out();
  viz::save_text(out_ + "/" + file, svg);
  figures_.push_back({file, caption, lecture, 0, 0});
  fmt::print("    wrote {}/{}\n", out_, file);
}

nn::Sequential& Lesson::model() {
  if (!model_) model_ = models::load_fashion_cnn(model_path_);
  return *model_->model;
}

nn::Model& Lesson::photo_model() {
  if (!photo_model_) {
    if (!io::file_exists(kPhotoModelPath))
      throw Error(std::string(kPhotoModelPath) + ": the photo model is not installed; run `make setup` (it uses npm once)");
    photo_model_ = models::load_model(kPhotoModelPath);
  }
  return *photo_model_;
}

io::Image Lesson::fashion_image() { return io::load_image(fashion_image_path_); }

Photo Lesson::photo() {
  if (!info_.uses_photo) throw Error(info_.id + ": photo() in a lesson whose Info does not set uses_photo");
  return photo(image_path_, target_name_);
}

Photo Lesson::photo(const std::string& path, const std::string& target_name) {
  nn::Model& model = photo_model();
  Photo p;
  p.name = fs::path(path).filename().string();
  p.original = preprocess::load_photo(path).image;  // upright (EXIF), transparency on white
  p.input = preprocess::image_to_input(p.original, model.info().input);
  if (target_name.empty()) {
    NoGrad no_grad;
    p.target = model.predict(model.forward(p.input))[0];
  } else {
    p.target = model.class_index(target_name);
  }
  p.target_name = model.info().classes.at(static_cast<size_t>(p.target));
  p.detection.anchor = -1;
  if (models::is_detector(model)) {
    NoGrad no_grad;
    model.forward(p.input);
    p.detection = models::best_detection(dynamic_cast<models::Graph&>(model), p.target, p.original.width, p.original.height);
  }
  return p;
}

io::Image Photo::with_box(const io::Image& input_sized) const {
  io::Image shown = at_own_aspect(input_sized);
  if (detection.anchor < 0) return shown;
  const models::Box& b = detection.box;
  viz::draw_box(shown, b.x0 * static_cast<float>(shown.width), b.y0 * static_cast<float>(shown.height),
                b.x1 * static_cast<float>(shown.width), b.y1 * static_cast<float>(shown.height), viz::class_color(detection.class_index),
                fmt::format("{} {:.2f}", detection.label, detection.score));
  return shown;
}

io::Image Photo::at_own_aspect(const io::Image& input_sized) const {
  return viz::at_aspect(input_sized, original.width, original.height);
}

void Lesson::write_manifest() const {
  ensure_out();
  nlohmann::json manifest = {{"id", info_.id}, {"title", info_.title}, {"summary", info_.summary}};
  manifest["figures"] = nlohmann::json::array();
  for (const Figure& f : figures_)
    manifest["figures"].push_back(
        {{"file", f.file}, {"caption", f.caption}, {"lecture", f.lecture}, {"width", f.width}, {"height", f.height}});
  manifest["numbers"] = nlohmann::json::array();
  for (const auto& [name, value] : numbers_) manifest["numbers"].push_back({{"name", name}, {"value", value}});
  viz::save_text(out_ + "/lesson.json", manifest.dump(2) + "\n");
}

double pearson(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel())
    throw Error(fmt::format("pearson: {} and {} elements ({} vs {})", a.numel(), b.numel(), shape_str(a.shape()),
                            shape_str(b.shape())));
  const int64_t n = a.numel();
  double ma = 0, mb = 0;
  for (int64_t i = 0; i < n; ++i) ma += a.data()[i], mb += b.data()[i];
  ma /= static_cast<double>(n);
  mb /= static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (int64_t i = 0; i < n; ++i) {
    sab += (a.data()[i] - ma) * (b.data()[i] - mb);
    saa += (a.data()[i] - ma) * (a.data()[i] - ma);
    sbb += (b.data()[i] - mb) * (b.data()[i] - mb);
  }
  return sab / std::sqrt(saa * sbb + 1e-30);
}

double rank_correlation_of_magnitudes(const Tensor& a, const Tensor& b) {
  auto ranks = [](const Tensor& t) {
    const int64_t n = t.numel();
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return std::fabs(t.data()[i]) < std::fabs(t.data()[j]); });
    std::vector<float> r(static_cast<size_t>(n));
    for (int64_t i = 0; i < n;) {
      int64_t j = i;
      while (j + 1 < n && std::fabs(t.data()[order[j + 1]]) == std::fabs(t.data()[order[i]])) ++j;
      for (int64_t k = i; k <= j; ++k) r[order[k]] = 0.5f * static_cast<float>(i + j);
      i = j + 1;
    }
    return Tensor::from_vector(r, {n});
  };
  return pearson(ranks(a), ranks(b));
}

double share_in_boxes(const Tensor& map, const std::vector<Box>& boxes) {
  if (map.ndim() < 2 || map.ndim() > 4 || (map.ndim() == 4 && map.dim(0) != 1) || map.numel() == 0)
    throw Error("share_in_boxes: map " + shape_str(map.shape()) + " must be [H,W], [C,H,W] or [1,C,H,W]");
  const int64_t H = map.dim(map.ndim() - 2), W = map.dim(map.ndim() - 1);
  const int64_t C = map.numel() / (H * W);
  double inside = 0, total = 0;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      double v = 0;
      for (int64_t c = 0; c < C; ++c) v = std::max<double>(v, std::fabs(map.data()[(c * H + y) * W + x]));
      total += v;
      if (std::any_of(boxes.begin(), boxes.end(), [&](const Box& b) { return b.contains(x, y); })) inside += v;
    }
  return total > 0 ? inside / total : 0.0;
}

}  // namespace tg::lesson
