// The tgc tool run as a user runs it: exit codes, one-line errors, no partial output.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>

#include "tests/helpers.h"
#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/explain/occlusion.h"
#include "tinygrad-cpp/nn/nn.h"
#include "tinygrad-cpp/models/train.h"
#include "tinygrad-cpp/viz/viz.h"

#ifndef TG_BIN_DIR
#define TG_BIN_DIR "build/bin"
#endif

using test::contains;
namespace fs = std::filesystem;

namespace {
struct Run {
  int status;
  std::string out, err;
};

// Runs `tgc ARGS` with stdout and stderr captured separately.
Run tgc(const std::string& args) {
  const test::TempDir temp;
  const std::string out = temp.file("out"), err = temp.file("err");
  const std::string command = std::string(TG_BIN_DIR) + "/tgc " + args + " >" + out + " 2>" + err + " </dev/null";
  const int raw = std::system(command.c_str());
  auto slurp = [](const std::string& path) {
    std::ifstream f(path);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// The share of a rectangle's pixels within 25/255 of white (every colour channel >= 230): how
// blank a map panel looks.
double blank_fraction(const tg::io::Image& image, int x0, int y0, int width, int height) {
  int64_t blank = 0;
  for (int y = y0; y < y0 + height; ++y)
    for (int x = x0; x < x0 + width; ++x) {
      bool white = true;
      for (int c = 0; c < std::min(image.channels, 3); ++c) white = white && image.at(y, x, c) >= 230;
      blank += white;
    }
  return static_cast<double>(blank) / (static_cast<double>(width) * height);
}
}  // namespace

TEST_SUITE("tgc") {
  TEST_CASE("usage errors exit 2 with the usage; --help exits 0") {
    Run r = tgc("eval --bogus 1");
    CHECK(r.status == 2);
    CHECK(contains(r.err, "error: unknown flag --bogus"));
    CHECK(contains(r.err, "usage: tgc eval --model FILE"));
    CHECK(tgc("frobnicate").status == 2);
    CHECK(tgc("eval").status == 2);  // --model is required
    CHECK(contains(tgc("train --epochs many").err, "--epochs: 'many' is not an integer"));
    r = tgc("train --help");
    CHECK(r.status == 0);
    CHECK(contains(r.out, "--resume FILE"));
    CHECK(tgc("bench no_such_workload").status == 2);
  }

  TEST_CASE("bad files give one line naming the file, exit 1") {
    const test::TempDir temp;
    const fs::path& dir = temp.path;
    const std::string junk = (dir / "junk.safetensors").string();
    std::ofstream(junk) << "this is not a safetensors file at all";
    Run r = tgc("info --model " + junk);
    CHECK(r.status == 1);
    CHECK(lines(r.err) == 1);
    CHECK(contains(r.err, "error: " + junk + ": "));
    r = tgc("eval --model " + (dir / "missing.safetensors").string());
    CHECK(r.status == 1);
    CHECK(contains(r.err, "missing.safetensors: cannot open"));
    r = tgc("eval --model assets/fashion_cnn.safetensors --data " + dir.string());
    CHECK(r.status == 1);
    CHECK(contains(r.err, "t10k-images-idx3-ubyte.gz: not found"));
    r = tgc("train --data " + dir.string() + " --out " + (dir / "w.safetensors").string());
    CHECK(r.status == 1);
    CHECK_FALSE(fs::exists(dir / "w.safetensors"));
  }

  TEST_CASE("Ctrl-C during tgc train stops cleanly and keeps a loadable checkpoint") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward");
    const test::TempDir temp;
    const fs::path& dir = temp.path;
    for (const char* split : {"train", "t10k"})
      for (const char* kind : {"images-idx3", "labels-idx1"})
        fs::copy_file(std::string("assets/fashion-sample/t10k-") + kind + "-ubyte.gz",
                      dir / (std::string(split) + "-" + kind + "-ubyte.gz"));
    const std::string out = (dir / "w.safetensors").string(), ckpt = (dir / "w.ckpt.safetensors").string();
    // Start a long run, wait for the first checkpoint, then send SIGINT as Ctrl-C would.
    const std::string script = "( " + std::string(TG_BIN_DIR) + "/tgc train --epochs 500 --data " + dir.string() +
                               " --out " + out + " > " + (dir / "log").string() + " 2>&1 & pid=$!; i=0; " +
                               "while [ ! -f " + ckpt + " ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; " +
                               "kill -INT $pid; wait $pid; exit $? )";
    const int raw = std::system(("bash -c '" + script + "'").c_str());
    CHECK(WIFEXITED(raw));
    CHECK(WEXITSTATUS(raw) == 130);
    const tg::io::NamedTensors checkpoint = tg::io::load_safetensors(ckpt);
    CHECK(std::stoi(checkpoint.metadata.at("epoch")) >= 1);
    CHECK(tg::models::load_fashion_cnn(out).metadata.at("epoch") == checkpoint.metadata.at("epoch"));
    for (const auto& entry : fs::directory_iterator(dir)) CHECK(entry.path().string().find(".tmp-") == std::string::npos);
    std::ifstream log(dir / "log");
    const std::string text(std::istreambuf_iterator<char>(log), {});
    CHECK(contains(text, "interrupted: stopped cleanly"));
  }

  TEST_CASE("tgc eval on the shipped sample ends with the accuracy line") {
    NEEDS_TASKS("relu");
    Run r = tgc("eval --model assets/fashion_cnn.safetensors --data assets/fashion-sample");
    CHECK(r.status == 0);
    const size_t at = r.out.rfind("accuracy: ");
    REQUIRE(at != std::string::npos);
    CHECK(r.out.substr(at).size() == std::string("accuracy: 0.9234\n").size());
    CHECK(std::stod(r.out.substr(at + 10)) > 0.9);
    CHECK(contains(r.out, "Ankle boot"));
  }
}

TEST_SUITE("tgc") {
  TEST_CASE("tgc explain writes the raw attribution and a figure that is not blank") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules", "conv2d-backward", "maxpool-backward", "linear-backward", "saliency",
                "gradcam", "occlusion", "smoothgrad");
    const test::TempDir dir;
    const std::string npy = dir.file("a.npy"), png = dir.file("a.png");
    for (const char* method : {"saliency", "guided_backprop", "gradcam", "occlusion", "smoothgrad", "integrated_gradients"}) {
      CAPTURE(method);
      Run r = tgc(std::string("explain --model assets/fashion_cnn.safetensors --image assets/fashion-png/9_ankle_boot.png") +
                  " --method " + method + " --samples 4 --steps 16 --npy " + npy + " --png " + png);
      REQUIRE(r.status == 0);
      CHECK(contains(r.out, "predicted 9 (Ankle boot)"));
      const tg::Tensor a = tg::io::load_npy(npy);
      if (std::string(method) == "gradcam") CHECK(a.shape() == tg::Shape{14, 14});
      else CHECK(a.shape() == tg::Shape{1, 28, 28});
      const tg::io::Image figure = tg::io::load_image(png);
      CHECK(figure.width > 3 * 28 * 8);
      // Not blank, not saturated: many distinct colors, and neither all-black nor all-white.
      std::vector<int> seen(256, 0);
      int64_t bright = 0;
      for (size_t i = 0; i < figure.pixels.size(); ++i) {
        seen[figure.pixels[i]] = 1;
        bright += figure.pixels[i] > 250;
      }
      CHECK(std::count(seen.begin(), seen.end(), 1) > 50);
      CHECK(bright < static_cast<int64_t>(figure.pixels.size()) * 9 / 10);
    }
  }

  TEST_CASE("tgc explain --method all: one figure, the methods side by side, every map panel readable") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules", "conv2d-backward", "maxpool-backward", "linear-backward", "saliency",
                "gradcam", "occlusion", "smoothgrad");
    const test::TempDir dir;
    const std::string boot = " --model assets/fashion_cnn.safetensors --image assets/fashion-png/9_ankle_boot.png";
    Run r = tgc("explain" + boot + " --method all --samples 4 --steps 16 --png " + dir.file("all.png") + " --npy " +
                dir.file("all.npy"));
    REQUIRE(r.status == 0);
    CHECK(r.err.empty());  // no progress line when stderr is not a terminal
    CHECK(contains(r.out, "occlusion: window 4, stride 2 (scaled to the 28x28 input"));
    CHECK(contains(r.out, "guided_backprop: attribution [1,28,28]"));
    CHECK(contains(r.out, "shown signed, clipped at"));
    const std::vector<std::string> methods = {"saliency", "input_x_gradient", "smoothgrad", "integrated_gradients",
                                              "guided_backprop", "deconvnet", "occlusion", "gradcam", "guided_gradcam"};
    for (const std::string& m : methods) CHECK(fs::exists(dir.file("all." + m + ".npy")));  // OUT.<method>.npy each
    // The layout: a title, a line saying how maps are shown, then a grid of 5 columns: the input
    // and the 9 maps, each 224x224 (28 x 8) under its title, over its colour bar.
    const tg::io::Image figure = tg::io::load_image(dir.file("all.png"));
    const int columns = 5, rows = 2, cell = 224, spacing = 6;
    REQUIRE(figure.width == columns * cell + (columns + 1) * spacing);
    const int top = tg::viz::text("", 16).height + 2 + tg::viz::text("", 12).height + 4;
    const int cell_height = (figure.height - top - (rows + 1) * spacing) / rows;
    for (int i = 1; i <= static_cast<int>(methods.size()); ++i) {
      const int x0 = spacing + (i % columns) * (cell + spacing);
      const int y0 = top + spacing + (i / columns) * (cell_height + spacing) + tg::viz::text("", 14).height + 2;
      const double blank = blank_fraction(figure, x0, y0, cell, cell);
      CAPTURE(methods[static_cast<size_t>(i - 1)]);
      MESSAGE(methods[static_cast<size_t>(i - 1)] << ": " << blank << " of the map panel within 25/255 of white");
      CHECK(blank < 0.95);  // the issue found 95 to 99.8% on the photo figures it called blank
      CHECK(blank_fraction(figure, x0, y0 + cell + 2, cell, 10) < 0.2);  // its colour bar under it
    }
    // A list; --abs shows every map as |a|.
    r = tgc("explain" + boot + " --method saliency,guided_backprop --abs --png " + dir.file("two.png"));
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "guided_backprop: attribution [1,28,28]"));
    CHECK(contains(r.out, "shown |a|, clipped at"));
    CHECK(tg::io::load_image(dir.file("two.png")).width >= 3 * cell + 4 * spacing);
    // Without --png or --npy it says what it computed and how to save it.
    r = tgc("explain" + boot + " --method saliency --clip 95");
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "the 95th percentile of |a|"));
    CHECK(contains(r.out, "nothing written: --png OUT.png saves the figure, --npy OUT.npy the raw attribution\n"));
    // Usage errors name the problem.
    for (const auto& [flags, message] : std::vector<std::pair<std::string, std::string>>{
             {"--method saliency,saliency", "--method: saliency is listed twice"},
             {"--method saliency,bogus", "unknown method 'bogus'"},
             {"--method saliency --abs --signed", "--abs and --signed: give one of them"},
             {"--method saliency --clip 20", "--clip"},
             {"--method saliency --fit squash", "--fit: 'squash' is not stretch, crop or pad"},
             {"--method occlusion --neuron relu1:0", "occlusion explains targets of kind class, detection, not a neuron"}}) {
      CAPTURE(flags);
      r = tgc("explain" + boot + " " + flags);
      CHECK(r.status == 2);
      CHECK(contains(r.err, message));
    }
    // --method all with a neuron: the methods that explain one, and a word about the others.
    r = tgc("explain" + boot + " --method all --neuron relu1:0:14:14 --samples 2 --steps 2");
    CHECK(r.status == 0);
    CHECK(contains(r.out, "--method all: skipped occlusion, gradcam, guided_gradcam (they do not explain a neuron)"));
  }

  TEST_CASE("occlusion's default window scales with the input: the lecture's 32 on 300 pixels, 4 on 28") {
    CHECK(tg::explain::occlusion_window(300, 300).window == 32);
    CHECK(tg::explain::occlusion_window(300, 300).stride == 16);
    CHECK(tg::explain::occlusion_window(224, 224).window == 24);
    CHECK(tg::explain::occlusion_window(28, 28).window == 4);
    CHECK(tg::explain::occlusion_window(28, 28).stride == 2);
  }

  TEST_CASE("tgc explain refuses bad images with one line and writes nothing") {
    const test::TempDir dir;
    const std::string out = dir.file("out.png"), npy = dir.file("out.npy");
    std::vector<uint8_t> png = tg::io::read_file("assets/fashion-png/9_ankle_boot.png");
    std::vector<uint8_t> huge = png;
    const uint8_t side[8] = {0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0};
    std::copy(side, side + 8, huge.begin() + 16);
    std::vector<uint8_t> corrupt(png.begin(), png.begin() + static_cast<long>(png.size() / 2));
    const std::vector<std::pair<std::string, std::vector<uint8_t>>> bad = {
        {"empty.png", {}}, {"huge.png", huge}, {"corrupt.png", corrupt}, {"text.png", {'h', 'e', 'l', 'l', 'o'}}};
    for (const auto& [name, bytes] : bad) {
      CAPTURE(name);
      test::write_bytes(dir.file(name), bytes);
      Run r = tgc("explain --model assets/fashion_cnn.safetensors --method saliency --image " + dir.file(name) + " --png " +
                  out + " --npy " + npy);
      CHECK(r.status == 1);
      CHECK(lines(r.err) == 1);
      CHECK(contains(r.err, "error: " + dir.file(name) + ": "));
      CHECK_FALSE(fs::exists(out));
      CHECK_FALSE(fs::exists(npy));
    }
    Run r = tgc("explain --model assets/fashion_cnn.safetensors --method nonsense --image assets/fashion-png/9_ankle_boot.png");
    CHECK(r.status == 2);
    CHECK(contains(r.err, "unknown method 'nonsense'"));
    r = tgc("explain --model assets/fashion_cnn.safetensors --method saliency --image assets/fashion-png/9_ankle_boot.png --npy " +
            dir.file("ok.npy") + " --png " + dir.file("no/such/dir/x.png"));
    CHECK(r.status == 1);
    CHECK_FALSE(fs::exists(dir.file("ok.npy")));
  }
}

TEST_SUITE("shipped-model") {
  TEST_CASE("the shipped weights reach 0.915 test accuracy") {
    NEEDS_TASKS("relu");
    const tg::models::LoadedModel loaded = tg::models::load_fashion_cnn("assets/fashion_cnn.safetensors");
    CHECK(loaded.metadata.at("arch") == "FashionCNN");
    // The full test set when Debian's dataset-fashion-mnist is installed (make setup does), else the sample.
    const std::string full = tg::data::default_data_dir();
    const bool have_full = tg::io::file_exists(full + "/t10k-images-idx3-ubyte.gz");
    const tg::data::Dataset test = tg::data::load_fashion_mnist(have_full ? full : "assets/fashion-sample", tg::data::Split::Test);
    const double accuracy = tg::train::evaluate(*loaded.model, test).accuracy();
    MESSAGE("accuracy on " << test.size() << " test images: " << accuracy);
    CHECK(accuracy >= (have_full ? 0.915 : 0.9));
  }
}

TEST_SUITE("tgc-photo") {
  const std::string kSsd = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";

  TEST_CASE("tgc predict and explain on the photo model: the cat, by label, in color") {
    REQUIRE_MESSAGE(tg::io::file_exists(kSsd), "run make setup: it fetches the photo model");
    Run r = tgc("predict --model " + kSsd + " --image assets/chelsea.png --top 3");
    REQUIRE(r.status == 0);
    // A detector's lines are its detections, best first: LABEL: P box=X0,Y0,X1,Y1 in the photo's pixels.
    CHECK(contains(r.out, "\nCat: 0.85"));
    CHECK(std::regex_search(r.out, std::regex("\nCat: 0\\.85\\d\\d box=[0-9],0,4[0-9][0-9],300\n")));
    CHECK(lines(r.out) == 3);  // the input line, the stretch note and the one detection with p >= 0.5 (--top is at most 3)
    CHECK_FALSE(contains(r.out, "background"));
    r = tgc("predict --model " + kSsd + " --image assets/coffee.png --top 1 --min-score 0.1");
    CHECK(std::regex_search(r.out, std::regex("\nCoffee cup: 0\\.\\d{4} box=\\d+,\\d+,\\d+,\\d+\n$")));
    CHECK(lines(r.out) == 3);  // --top K: at most K lines (after the input line and the stretch note)
    const test::TempDir dir;
    // --png draws the boxes on the photo at its own size; a label file's escape codes are escaped.
    fs::create_symlink(fs::absolute(kSsd), dir.file("m.tflite"));
    std::ofstream(dir.file("m_labels.txt")) << "???\nBicycle\nBoot\nLaptop\nPerson\nChair\nCattle\nDesk\nCat\x1b[2J\n";
    r = tgc("predict --model " + dir.file("m.tflite") + " --image assets/chelsea.png --png " + dir.file("boxes.png"));
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "\nCat\\x1b[2J: 0.85"));
    CHECK_FALSE(contains(r.out, "\x1b"));
    const tg::io::Image boxes = tg::io::load_image(dir.file("boxes.png"));
    CHECK(boxes.width == 451);
    CHECK(boxes.height == 300);
    CHECK(tgc("predict --model assets/fashion_cnn.safetensors --image assets/chelsea.png --png " + dir.file("x.png")).status == 2);
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules", "relu6-guided", "conv2d-backward", "saliency");
    r = tgc("explain --model " + kSsd + " --image assets/chelsea.png --method guided_backprop --target cAt --npy " +
            dir.file("g.npy") + " --png " + dir.file("g.png"));
    REQUIRE(r.status == 0);
    // A detector explains one detection: the Cat's, the 1x1 head's whole-image box.
    CHECK(contains(r.out, "explaining the detection 8 (Cat): p = 0.85"));
    CHECK(contains(r.out, "box=3,0,424,300, anchor 1911 of the 1x1 head"));
    CHECK(tg::io::load_npy(dir.file("g.npy")).shape() == tg::Shape{3, 300, 300});
    const tg::io::Image png = tg::io::load_image(dir.file("g.png"));
    CHECK(png.channels == 3);
    CHECK(png.width > 3 * 451);  // photo, map and overlay side by side, each at the photo's 451:300
    CHECK(png.height > 300 + 40);  // and a title above, a colour bar below
    // --box K is the K-th line of tgc predict; the cat photo has one.
    r = tgc("explain --model " + kSsd + " --image assets/chelsea.png --method saliency --box 1");
    CHECK(r.status == 0);
    CHECK(contains(r.out, "anchor 1911"));
    r = tgc("explain --model " + kSsd + " --image assets/chelsea.png --method saliency --box 2");
    CHECK(r.status == 2);
    CHECK(contains(r.err, "--box 2: tgc predict lists 1 detection on this image"));
    CHECK(tgc("explain --model assets/fashion_cnn.safetensors --image assets/chelsea.png --method saliency --box 1").status == 2);
    // Grad-CAM reads a map the detection reads: the coffee cup's 3x3-head detection is computed
    // from the backbone's last map, Conv_1 (10x10), not the 19x19 map only the finest head reads.
    r = tgc("explain --model " + kSsd + " --image assets/coffee.png --method gradcam --npy " + dir.file("c.npy"));
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "anchor 1843 of the 3x3 head"));
    CHECK(contains(r.out, "layer: FeatureExtractor/MobilenetV2/Conv_1/relu6"));
    CHECK(tg::io::load_npy(dir.file("c.npy")).shape() == tg::Shape{10, 10});
    r = tgc("explain --model " + kSsd + " --image assets/chelsea.png --method saliency --target Unicorn");
    CHECK(r.status == 1);
    CHECK(contains(r.err, "no class 'Unicorn'"));
    CHECK(lines(r.err) == 1);
  }

  TEST_CASE("tgc predict --fit: the photo cropped or padded to the input's aspect, and said so") {
    REQUIRE(tg::io::file_exists(kSsd));
    const test::TempDir dir;
    Run r = tgc("predict --model " + kSsd + " --image assets/chelsea.png");
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "note: stretched 451x300 to 300x300: its aspect ratio changes by 50%"));
    r = tgc("predict --model " + kSsd + " --image assets/chelsea.png --fit crop --png " + dir.file("crop.png"));
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "note: --fit crop: 451x300 cropped to 300x300, the input's aspect ratio"));
    CHECK_FALSE(contains(r.out, "stretched"));
    CHECK(tg::io::load_image(dir.file("crop.png")).width == 300);  // the boxes are drawn on what the model saw
    r = tgc("predict --model " + kSsd + " --image assets/chelsea.png --fit pad --png " + dir.file("pad.png"));
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "note: --fit pad: 451x300 padded to 451x451"));
    CHECK(tg::io::load_image(dir.file("pad.png")).height == 451);
    // An unwritable --png is refused before the model is run.
    r = tgc("predict --model " + kSsd + " --image assets/chelsea.png --png " + dir.file("no/such/dir/p.png"));
    CHECK(r.status == 1);
    CHECK(contains(r.err, "folder '" + dir.file("no/such/dir") + "' is missing"));
    CHECK(r.out.empty());
  }

  TEST_CASE("tgc info lists the photo model's layers; a bad TFLite file is one line and no output") {
    REQUIRE(tg::io::file_exists(kSsd));
    Run r = tgc("info --model " + kSsd);
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "55 conv2d"));
    CHECK(contains(r.out, "17 depthwise_conv2d"));
    CHECK(contains(r.out, "24 classes"));
    CHECK(contains(r.out, "Cat"));
    // one line per layer, not one escaped blob ("\x0a" where the line breaks belong)
    CHECK(!contains(r.out, "\\x0a"));
    CHECK(contains(r.out, "152 layers"));  // SAME's odd rows are the convolutions' own padding: no pad layers
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') > 152);
    CHECK(contains(r.out, "\n  depthwise_conv2d FeatureExtractor/MobilenetV2/expanded_conv/depthwise  [1,32,150,150]\n"));
    const test::TempDir dir;
    std::ifstream in(kSsd, std::ios::binary);
    std::vector<char> bytes(200000);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::ofstream(dir.file("cut.tflite"), std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    for (const std::string command : {"info --model ", "predict --image assets/chelsea.png --model "}) {
      r = tgc(command + dir.file("cut.tflite"));
      CHECK(r.status == 1);
      CHECK(lines(r.err) == 1);
      CHECK(contains(r.err, "error: " + dir.file("cut.tflite") + ": corrupt TFLite file"));
      CHECK(r.out.empty());
    }
    r = tgc("explain --model " + dir.file("cut.tflite") + " --image assets/chelsea.png --method saliency --npy " + dir.file("x.npy"));
    CHECK(r.status == 1);
    CHECK_FALSE(fs::exists(dir.file("x.npy")));
  }

  TEST_CASE("the setup step refuses a package whose sha256 is wrong, with one line and no model") {
    const test::TempDir dir;
    const std::string command = "TG_MODEL_DIR=" + dir.path.string() + " TG_PACKAGE_SHA256=" + std::string(64, '0') +
                                " bash assets/get_photo_model.sh >" + dir.file("out") + " 2>" + dir.file("err");
    const int raw = std::system(command.c_str());
    std::ifstream err(dir.file("err"));
    const std::string message(std::istreambuf_iterator<char>(err), {});
    CHECK(WEXITSTATUS(raw) == 1);
    CHECK(lines(message) == 1);
    CHECK(contains(message, "sha256"));
    CHECK_FALSE(fs::exists(dir.file("ssd_mobilenetv2_oidv4_fp16.tflite")));
  }
}

TEST_SUITE("threads") {
  TEST_CASE("TG_NUM_THREADS that is not a whole number is a one-line warning, not a silent guess") {
    NEEDS_TASKS("relu");
    const test::TempDir dir;
    const std::string command = "TG_NUM_THREADS=8abc " + std::string(TG_BIN_DIR) +
                                "/tgc eval --model assets/fashion_cnn.safetensors --data assets/fashion-sample >" +
                                dir.file("out") + " 2>" + dir.file("err");
    const int raw = std::system(command.c_str());
    std::ifstream err(dir.file("err")), out(dir.file("out"));
    const std::string warning(std::istreambuf_iterator<char>(err), {});
    const std::string result(std::istreambuf_iterator<char>(out), {});
    CHECK(WEXITSTATUS(raw) == 0);
    CHECK(lines(warning) == 1);
    CHECK(contains(warning, "warning: TG_NUM_THREADS='8abc' is not a whole number"));
    CHECK(contains(result, "accuracy: "));
  }
}

TEST_SUITE("tgc-hardening") {
  TEST_CASE("usage errors: one error line, the usage line, a pointer to --help, exit 2; --help shows real defaults") {
    for (const std::string args : {"train --lr 1e39", "train --lr nan", "explain --model m --image i --method nope",
                                   "explain --model m --image i --method saliency --noise -1",
                                   "explain --model m --image i --method saliency --samples 0"}) {
      CAPTURE(args);
      const Run r = tgc(args);
      CHECK(r.status == 2);
      CHECK(lines(r.err) == 3);
      CHECK(contains(r.err, "error: "));
      CHECK(contains(r.err, "--help` for every flag"));
      CHECK(r.out.empty());
    }
    const Run jpg = tgc("explain --model assets/fashion_cnn.safetensors --image assets/chelsea.png --method saliency --png x.jpg");
    CHECK(jpg.status == 2);
    CHECK(contains(jpg.err, "--png: 'x.jpg' must end in .png"));
    // tgc train checks --out before an epoch's work: a wrong extension is a usage error, a
    // missing folder an error, both at once (no data is read: the data folder does not exist).
    const Run out_name = tgc("train --data /nonexistent --out w.bin");
    CHECK(out_name.status == 2);
    CHECK(contains(out_name.err, "--out: 'w.bin' must end in .safetensors"));
    const Run out_folder = tgc("train --data /nonexistent --out /nonexistent/w.safetensors");
    CHECK(out_folder.status == 1);
    CHECK(contains(out_folder.err, "folder '/nonexistent' is missing or not writable"));
    CHECK(lines(out_folder.err) == 1);
    const Run help = tgc("explain --method nope --samples 7 --help");
    CHECK(help.status == 0);
    CHECK(contains(help.out, "(default: 50)"));
    CHECK_FALSE(contains(help.out, "nope"));
  }

  TEST_CASE("what a file says is escaped; non-finite weights and checkpoint numbers are refused by name") {
    const test::TempDir dir;
    // A tensor name with a newline and an escape sequence that would clear the terminal.
    tg::io::save_safetensors(dir.file("odd.safetensors"), {{"a\nb\x1b[2J", tg::Tensor::ones({2})}}, {{"note", "x\ry"}});
    Run r = tgc("info --model " + dir.file("odd.safetensors"));
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "a\\x0ab\\x1b[2J"));
    CHECK(r.out.find('\x1b') == std::string::npos);
    CHECK(contains(r.out, "note: x\\x0dy"));
    // FashionCNN weights with a NaN: refused, naming the tensor.
    tg::io::NamedTensors weights = tg::io::load_safetensors("assets/fashion_cnn.safetensors");
    std::vector<std::pair<std::string, tg::Tensor>> tensors = weights.tensors;
    for (auto& [name, t] : tensors)
      if (name == "fc1.bias") {
        t = t.clone();
        t.data()[3] = std::numeric_limits<float>::quiet_NaN();
      }
    tg::io::save_safetensors(dir.file("nan.safetensors"), tensors, weights.metadata);
    r = tgc("eval --model " + dir.file("nan.safetensors") + " --data assets/fashion-sample");
    CHECK(r.status == 1);
    CHECK(lines(r.err) == 1);
    CHECK(contains(r.err, "tensor 'fc1.bias' holds nan"));
    CHECK_FALSE(contains(r.out, "accuracy"));
    // A checkpoint whose learning rate is NaN: refused before any training.
    std::map<std::string, std::string> meta = weights.metadata;
    meta["seed"] = "0";
    meta["batch"] = "64";
    meta["lr"] = "nan";
    meta["epoch"] = "1";
    tg::io::save_safetensors(dir.file("bad.ckpt.safetensors"), weights.tensors, meta);
    r = tgc("train --data assets/fashion-sample --epochs 2 --out " + dir.file("w.safetensors") + " --resume " +
            dir.file("bad.ckpt.safetensors"));
    CHECK(r.status == 1);
    CHECK(contains(r.err, "checkpoint metadata lr = 'nan' is not a number"));
    CHECK_FALSE(fs::exists(dir.file("w.safetensors")));
  }
}

// tgc visualize, invert and top-patches on FashionCNN: a few steps each, real values checked.
TEST_SUITE("tgc-questions") {
  // The number after `key` on the first line holding it ("logit " -> -0.77).
  auto number_after = [](const std::string& text, const std::string& key) {
    const size_t at = text.find(key);
    REQUIRE_MESSAGE(at != std::string::npos, "no '" << key << "' in: " << text);
    return std::stod(text.substr(at + key.size()));
  };

  TEST_CASE("tgc visualize raises the class's logit and the neuron's activation; frames at Fibonacci steps") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward", "ascent-step");
    const test::TempDir dir;
    Run r = tgc("visualize --model assets/fashion_cnn.safetensors --target Trouser --steps 30 --png " + dir.file("v.png") +
                " --frames " + dir.path.string());
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "visualizing class Trouser (1): 30 steps"));
    const std::string before = r.out.substr(0, r.out.find("after"));
    const std::string after = r.out.substr(r.out.find("after 30 steps"));
    const double logit_before = number_after(before, "logit "), logit_after = number_after(after, "logit ");
    CHECK(logit_after > logit_before + 5);
    CHECK(number_after(after, "p = ") > 0.9);
    const tg::io::Image figure = tg::io::load_image(dir.file("v.png"));
    CHECK(figure.width >= 224);
    for (int step : {1, 2, 3, 5, 8, 13, 21, 30}) CHECK(fs::exists(dir.file(fmt::format("step_{:04d}.png", step))));
    CHECK_FALSE(fs::exists(dir.file("step_0004.png")));
    CHECK(contains(r.out, "wrote 8 frames"));

    r = tgc("visualize --model assets/fashion_cnn.safetensors --neuron conv2:5 --steps 20");
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "neuron conv2:5:7:7"));  // the centre by default
    CHECK(number_after(r.out.substr(r.out.find("after")), "activation ") > number_after(r.out, "activation ") + 1);
    CHECK(contains(r.out, "no --png given"));
  }

  TEST_CASE("tgc invert: every start's code error falls far below a gray image's") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward", "ascent-step");
    const test::TempDir dir;
    Run r = tgc("invert --model assets/fashion_cnn.safetensors --image assets/fashion-png/1_trouser.png --layer fc1 "
                "--starts 2 --steps 60 --png " + dir.file("i.png"));
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "the code at fc1 is [1,128]"));
    CHECK(contains(r.out, "start 2: relative code error"));
    CHECK_FALSE(contains(r.out, "start 3:"));
    const double worst = number_after(r.out, "worst: "), gray = number_after(r.out, "(a gray image: ");
    CHECK(gray > 0.5);
    CHECK(worst < gray / 4);
    const tg::io::Image figure = tg::io::load_image(dir.file("i.png"));
    CHECK(figure.width > 3 * 224);  // the image and two reconstructions
  }

  TEST_CASE("tgc top-patches: K patches, strongest first, each the image's largest activation read directly") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward");
    const test::TempDir dir;
    // The shipped garments, and two files that are not images: each skipped with one note.
    for (const auto& entry : fs::directory_iterator("assets/fashion-png")) fs::copy(entry.path(), dir.path / entry.path().filename());
    std::ofstream(dir.file("notes.txt")) << "not an image";
    std::ofstream(dir.file("broken.png")) << "\x89PNG\r\n\x1a\n";
    Run r = tgc("top-patches --model assets/fashion_cnn.safetensors --images " + dir.path.string() +
                " --neuron relu2:5 --top 4 --png " + dir.file("t.png"));
    REQUIRE(r.status == 0);
    CHECK(lines(r.err) == 2);
    CHECK(contains(r.err, "note: skipped " + dir.file("notes.txt")));
    CHECK(contains(r.err, "note: skipped " + dir.file("broken.png")));
    CHECK(contains(r.out, "10 images read; relu2 channel 5: receptive field 14x14 input pixels, 2 pixels apart"));
    tg::models::LoadedModel loaded = tg::models::load_fashion_cnn("assets/fashion_cnn.safetensors");
    const std::regex line(R"((\d+)\. (\S+): (-?[0-9.]+) at \((\d+), (\d+)\); input rows (-?\d+)\.\.(-?\d+))");
    std::vector<double> values;
    for (std::sregex_iterator m(r.out.begin(), r.out.end(), line), end; m != end; ++m) {
      const std::string file = (*m)[2];
      const double value = std::stod((*m)[3]);
      const int64_t y = std::stoll((*m)[4]), x = std::stoll((*m)[5]);
      CAPTURE(file);
      values.push_back(value);
      const tg::Tensor input = tg::preprocess::image_to_input(tg::io::load_image(dir.file(file)), loaded.model->info().input);
      tg::NoGrad no_grad;
      const tg::Tensor a = loaded.model->forward_until(input, "relu2");
      const float* plane = a.data() + 5 * 14 * 14;
      CHECK(*std::max_element(plane, plane + 14 * 14) == doctest::Approx(value).epsilon(1e-4));
      CHECK(a.at({0, 5, y, x}) == doctest::Approx(value).epsilon(1e-4));
      CHECK(std::stoll((*m)[6]) == 2 * y - 6);  // its receptive field
      CHECK(std::stoll((*m)[7]) == 2 * y + 7);
    }
    CHECK(values.size() == 4);
    CHECK(std::is_sorted(values.rbegin(), values.rend()));
    CHECK(tg::io::load_image(dir.file("t.png")).width > 4 * 56);
  }

  TEST_CASE("on the photo model: one detection's logit climbs, a neuron's receptive field, top patches of the photos") {
    NEEDS_TASKS("relu", "tape-reverse-walk", "conv2d-backward", "ascent-step");
    const std::string ssd = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";
    REQUIRE_MESSAGE(tg::io::file_exists(ssd), "run make setup: it fetches the photo model");
    Run r = tgc("visualize --model " + ssd + " --target Cat --steps 4");
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "class Cat (8), one detection: the 150x150 px square anchor of the 5x5 head's centre cell: 4 steps"));
    CHECK(number_after(r.out.substr(r.out.find("after")), "logit ") > number_after(r.out, "logit "));
    r = tgc("visualize --model " + ssd + " --target Cat --head 4x4");
    CHECK(r.status == 2);
    CHECK(contains(r.err, "no '4x4' head (its heads: 19x19, 10x10, 5x5, 3x3, 2x2, 1x1)"));
    r = tgc("visualize --model " + ssd + " --neuron expanded_conv_6/expand:52 --steps 3");
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "neuron expanded_conv_6/expand:52:19:19"));
    CHECK(number_after(r.out.substr(r.out.find("after")), "activation ") > number_after(r.out, "activation "));
    // assets/ holds the two photos and files that are not images (each skipped with a note).
    r = tgc("top-patches --model " + ssd + " --images assets --neuron expanded_conv_6/expand:52 --top 2");
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "2 images read; expanded_conv_6/expand channel 52: receptive field 59x59 input pixels, 8 pixels apart"));
    CHECK(contains(r.out, "1. coffee.png: 5.09"));
    CHECK(contains(r.out, "2. chelsea.png: 4.17"));
    CHECK(contains(r.err, "note: skipped assets/SOURCES.md"));
  }

  TEST_CASE("tgc visualize and top-patches check a neuron against its layer; invert names a missing layer") {
    NEEDS_TASKS("relu", "tape-reverse-walk", "conv2d-backward");  // the layer's shape comes from running the model
    const std::string fashion = " --model assets/fashion_cnn.safetensors";
    for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
             {"visualize" + fashion + " --neuron conv2:32", "channel 32 of layer 'conv2', which has 32 channels"},
             {"visualize" + fashion + " --neuron conv2:1:14:0", "position 14:0 of layer 'conv2', whose map is 14x14"},
             {"visualize" + fashion + " --neuron fc1:1:0:0", "give LAYER:CHANNEL, no Y:X"},
             {"top-patches" + fashion + " --images assets/fashion-png --neuron relu2:40", "channel 40 of layer 'relu2'"}}) {
      CAPTURE(args);
      const Run r = tgc(args);
      CHECK(r.status == 2);
      CHECK(contains(r.err, "error: --neuron: "));
      CHECK(contains(r.err, message));
    }
    Run r = tgc("invert" + fashion + " --image assets/fashion-png/1_trouser.png --layer fc9");
    CHECK(r.status == 1);
    CHECK(lines(r.err) == 1);
    CHECK(contains(r.err, "fc9"));
    const test::TempDir dir;
    std::ofstream(dir.file("junk.txt")) << "junk";
    r = tgc("top-patches" + fashion + " --images " + dir.path.string() + " --neuron relu2:1");
    CHECK(r.status == 1);
    CHECK(contains(r.err, "no readable PNG or JPEG image among the 1 files"));
  }

  TEST_CASE("tgc visualize, invert, top-patches: usage errors exit 2, bad input is one line, outputs checked first") {
    const test::TempDir dir;
    const std::string fashion = " --model assets/fashion_cnn.safetensors";
    struct Usage {
      std::string args, message;
    };
    for (const Usage& u : std::vector<Usage>{
             {"visualize" + fashion, "give one of --target and --neuron"},
             {"visualize" + fashion + " --target 1 --neuron conv1:0", "give one of --target and --neuron"},
             {"visualize" + fashion + " --target 1 --steps 0", "--steps: 0 is outside [1, 10000]"},
             {"visualize" + fashion + " --target 1 --png out.jpg", "--png: 'out.jpg' must end in .png"},
             {"visualize" + fashion + " --neuron conv2", "is not LAYER:CHANNEL[:Y:X]"},
             {"visualize" + fashion + " --target 1 --head 3x3", "they go with --target on a detector"},
             {"invert" + fashion + " --image assets/fashion-png/1_trouser.png", "--layer is required"},
             {"invert" + fashion + " --image assets/fashion-png/1_trouser.png --layer fc1 --starts 17", "--starts: 17 is outside [1, 16]"},
             {"top-patches" + fashion + " --images assets/fashion-png --neuron conv2:1:2:3", "give LAYER:CHANNEL; every position"},
             {"top-patches" + fashion + " --images assets/fashion-png --neuron relu2:1 --top 0", "--top: 0 is outside [1, 100]"}}) {
      CAPTURE(u.args);
      const Run r = tgc(u.args);
      CHECK(r.status == 2);
      CHECK(contains(r.err, "error: "));
      CHECK(contains(r.err, u.message));
      CHECK(contains(r.err, "--help` for every flag"));
    }
    struct Bad {
      std::string args, message;
    };
    for (const Bad& b : std::vector<Bad>{
             {"visualize" + fashion + " --target 1 --png " + dir.file("missing/v.png"), "folder '" + dir.file("missing") + "' is missing"},
             {"visualize" + fashion + " --target 1 --frames " + dir.file("missing"), "--frames: cannot write into"},
             {"visualize" + fashion + " --target Sweater", "Sweater"},
             {"invert" + fashion + " --image " + dir.file("none.png") + " --layer fc1", "none.png"},
             {"top-patches" + fashion + " --images " + dir.file("nowhere") + " --neuron relu2:1", "is not a folder"},
             {"top-patches" + fashion + " --images " + dir.path.string() + " --neuron relu2:1", "holds no files"}}) {
      CAPTURE(b.args);
      const Run r = tgc(b.args);
      CHECK(r.status == 1);
      CHECK(lines(r.err) == 1);
      CHECK(contains(r.err, "error: "));
      CHECK(contains(r.err, b.message));
    }
    // --help shows the real defaults.
    CHECK(contains(tgc("invert --help").out, "random starts, 1..16 (default: 5)"));
    CHECK(contains(tgc("top-patches --help").out, "how many patches, 1..100 (default: 9)"));
    CHECK(contains(tgc("visualize --help").out, "default: lesson 9's table"));
    CHECK(contains(tgc("--help").out, "top-patches"));
  }
}
