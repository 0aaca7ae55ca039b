// tgc top-patches: over a folder of images, the patches (receptive fields) that excite one
// channel of a layer most -- lesson 4's question asked of the student's own images.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/cli/questions.h"
#include "tinygrad-cpp/explain/top_patches.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::cli {

namespace {
constexpr uintmax_t kMaxFileBytes = uintmax_t{64} << 20;  // larger files are skipped unread

// A file name short enough for a tile's title.
std::string short_name(const std::string& name) {
  const std::string shown = printable(name);
  return shown.size() <= 24 ? shown : shown.substr(0, 10) + "..." + shown.substr(shown.size() - 11);
}
}  // namespace

int command_top_patches(int argc, char** argv) {
  Args args("tgc top-patches",
            "Ask the data what a unit responds to (lesson 4): run every PNG/JPEG image of a folder (sorted by\n"
            "name, not its subfolders) through the model up to the layer, keep each image's strongest position\n"
            "of the channel, and show the --top strongest, one per image, as the input patches those positions\n"
            "see: their receptive fields, measured by a backward pass from the layer's centre (a patch past the\n"
            "border is filled black). Each image is first made the model's input as tgc predict does. One line\n"
            "per patch: rank, file, value, position in the layer's map, the patch's rows and columns of the\n"
            "input. Unreadable files are skipped with a note each; at most --max-files files are read, each\n"
            "at most 64 MB and within the image reader's pixel cap.");
  args.option("model", "FILE", "weights (safetensors) or a .tflite model", true)
      .option("images", "DIR", "folder of PNG/JPEG images", true)
      .option("neuron", "LAYER:CHANNEL", "the layer and channel (every position of the channel's map is searched)", true)
      .option("top", "K", "how many patches, 1..100", false, "9")
      .option("max-files", "N", "read at most this many files (the first by name), 1..100000", false, "500")
      .option("png", "OUT.png", "the patches, strongest first, each titled with its file and value");
  args.parse(argc, argv, 2);
  const int64_t top = args.get_int("top", 1, 100);
  const int64_t max_files = args.get_int("max-files", 1, 100000);
  const explain::Neuron n = neuron(args, "neuron");
  if (n.y >= 0) args.fail("--neuron: give LAYER:CHANNEL; every position of the channel's map is searched");
  check_output(args, "png", ".png");
  namespace fs = std::filesystem;
  const std::string folder = args.get("images");
  std::error_code error;
  if (!fs::is_directory(folder, error)) throw Error(fmt::format("--images: '{}' is not a folder", folder));
  std::vector<fs::path> files;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error))
    if (it->is_regular_file(error)) files.push_back(it->path());
  if (error) throw Error(fmt::format("--images: cannot list '{}': {}", folder, error.message()));
  std::sort(files.begin(), files.end());
  if (static_cast<int64_t>(files.size()) > max_files) {
    fmt::print(stderr, "note: {} files in {}; reading the first {} by name (--max-files)\n", files.size(), printable(folder), max_files);
    files.resize(static_cast<size_t>(max_files));
  }
  if (files.empty()) throw Error(fmt::format("--images: '{}' holds no files", folder));

  const std::shared_ptr<nn::Model> loaded = models::load_model(args.get("model"));
  nn::Model& model = *loaded;
  const preprocess::InputSpec& spec = model.info().input;
  const explain::ReceptiveField field = explain::receptive_field(model, n.layer);
  if (n.channel >= field.channels)
    args.fail(fmt::format("--neuron: channel {} of layer '{}', which has {} channels", n.channel, n.layer, field.channels));

  // The strongest `top` so far, with the images they come from (as the model saw them).
  std::vector<explain::Patch> best;
  std::vector<std::pair<int64_t, io::Image>> pictures;  // image number -> its input as pixels
  int64_t read = 0;
  Progress progress("top-patches");
  for (size_t i = 0; i < files.size(); ++i) {
    progress.update(static_cast<int64_t>(i), static_cast<int64_t>(files.size()));  // the files done so far
    const std::string path = files[i].string();
    Tensor input;
    try {
      if (fs::file_size(files[i]) > kMaxFileBytes) throw Error(fmt::format("{}: larger than 64 MB", path));
      input = preprocess::image_to_input(io::load_image(path), spec);
    } catch (const Error& e) {
      fmt::print(stderr, "note: skipped {}\n", printable(e.what()));
      continue;
    } catch (const fs::filesystem_error& e) {
      fmt::print(stderr, "note: skipped {}: {}\n", printable(path), printable(e.code().message()));
      continue;
    }
    ++read;
    Tensor a;
    {
      NoGrad no_grad;
      a = model.forward_until(input, n.layer);
    }
    std::vector<explain::Patch> candidates = explain::strongest_positions(a, n.channel, static_cast<int64_t>(i));
    candidates.insert(candidates.end(), best.begin(), best.end());
    best = explain::top_patches(candidates, top);
    if (std::any_of(best.begin(), best.end(), [&](const explain::Patch& p) { return p.image == static_cast<int64_t>(i); }))
      pictures.emplace_back(static_cast<int64_t>(i), preprocess::input_to_image(input, spec));
    std::erase_if(pictures, [&](const auto& picture) {
      return std::none_of(best.begin(), best.end(), [&](const explain::Patch& p) { return p.image == picture.first; });
    });
  }
  progress.update(static_cast<int64_t>(files.size()), static_cast<int64_t>(files.size()));
  if (read == 0) throw Error(fmt::format("--images: no readable PNG or JPEG image among the {} files of '{}'", files.size(), folder));
  const explain::Window& c = field.centre;
  fmt::print("{} images read; {} channel {}: receptive field {}x{} input pixels{}\n", read, printable(n.layer), n.channel,
             c.height(), c.width(),
             field.stride_y || field.stride_x ? fmt::format(", {} pixels apart", std::max(field.stride_y, field.stride_x))
                                              : " (the whole input at every position)");
  if (static_cast<int64_t>(best.size()) < top) fmt::print("only {} images: {} patches, one per image\n", best.size(), best.size());

  std::vector<io::Image> tiles;
  for (size_t k = 0; k < best.size(); ++k) {
    const explain::Patch& p = best[k];
    const explain::Window w = field.window(p.y, p.x);
    const std::string name = files[static_cast<size_t>(p.image)].filename().string();
    fmt::print("{}. {}: {:.4f} at ({}, {}); input rows {}..{}, columns {}..{}\n", k + 1, printable(name), p.value, p.y, p.x,
               w.y0, w.y1 - 1, w.x0, w.x1 - 1);
    if (!args.has("png")) continue;
    const auto picture = std::find_if(pictures.begin(), pictures.end(), [&](const auto& q) { return q.first == p.image; });
    const io::Image patch = explain::crop(picture->second, w);
    const int scale = std::max(1, 128 / std::max(patch.width, patch.height));  // small patches enlarged
    tiles.push_back(viz::titled(viz::scale_nearest(patch, scale), fmt::format("{} {:.2f}", short_name(name), p.value), 12));
  }
  if (args.has("png")) {
    const int columns = static_cast<int>(std::clamp<int64_t>(1200 / std::max(tiles.front().width, 1), 1, std::min<int64_t>(top, 10)));
    const io::Image figure = viz::titled(
        viz::grid(tiles, columns, 4),
        fmt::format("{} channel {}: the {} strongest of {} images, one patch per image (its {}x{} receptive field)",
                    printable(n.layer), n.channel, tiles.size(), read, c.height(), c.width()));
    io::write_files_atomic({{args.get("png"), io::encode_png(figure, args.get("png"))}});
    fmt::print("wrote {}\n", printable(args.get("png")));
  }
  return 0;
}

}  // namespace tg::cli
