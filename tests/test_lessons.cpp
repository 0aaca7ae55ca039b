// Every lesson, run in its fast smoke mode as a user would run it: it must finish, and
// every figure it lists must be a valid PNG of the size it claims (or a whole SVG) and
// not a constant image. Then the gallery must show them all.
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tinygrad-cpp/course/assignment.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/viz/viz.h"

#ifndef TG_BIN_DIR
#define TG_BIN_DIR "build/bin"
#endif

namespace fs = std::filesystem;
using test::contains;

namespace {
std::string slurp(const fs::path& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<fs::path> lesson_programs() {
  std::vector<fs::path> programs;
  for (const auto& entry : fs::directory_iterator(fs::path(TG_BIN_DIR) / "lessons")) programs.push_back(entry.path());
  std::sort(programs.begin(), programs.end());
  return programs;
}

// The tasks of tests/tasks.txt that are not implemented in this tree (none in the instructor tree).
std::string unfinished_tasks() {
  std::string missing;
  for (const auto& task : tg::assignment::load_tasks("tests/tasks.txt"))
    if (!test::missing_task(task.id).empty()) missing += " " + task.id;
  return missing;
}
}  // namespace

TEST_SUITE("lessons") {
  TEST_CASE("every lesson runs in smoke mode and its figures are real pictures") {
    const test::TempDir out;
    const std::vector<fs::path> programs = lesson_programs();
    REQUIRE(programs.size() >= 1);
    const std::string unfinished = unfinished_tasks();
    std::vector<std::string> ran;
    int waiting = 0;
    for (const fs::path& program : programs) {
      const std::string id = program.filename().string();
      CAPTURE(id);
      const fs::path dir = out.path / id;
      const std::string command = program.string() + " --smoke --out " + dir.string() + " > " + (out.path / (id + ".log")).string() + " 2>&1";
      const int raw = std::system(command.c_str());
      const std::string log = slurp(out.path / (id + ".log"));
      INFO(log);
      REQUIRE(WIFEXITED(raw));
      if (WEXITSTATUS(raw) != 0 && !unfinished.empty()) {
        // A student copy: the lesson stops at the first task it needs, and says which, in one line.
        CHECK(WEXITSTATUS(raw) == tg::lesson::Lesson::kExitWaitingForTask);
        const std::string last_line = log.substr(log.rfind('\n', log.size() - 2) + 1);
        CHECK(last_line.rfind("error: this lesson needs task '", 0) == 0);
        ++waiting;
        continue;
      }
      REQUIRE(WEXITSTATUS(raw) == 0);
      ran.push_back(id);
      CHECK(contains(slurp(out.path / (id + ".log")), "Step 1."));
      const nlohmann::json manifest = nlohmann::json::parse(slurp(dir / "lesson.json"));
      CHECK(manifest["id"] == id);
      REQUIRE(!manifest["figures"].empty());
      for (const auto& figure : manifest["figures"]) {
        const std::string file = figure["file"];
        CAPTURE(file);
        CHECK(!figure["caption"].get<std::string>().empty());
        if (file.size() > 4 && file.substr(file.size() - 4) == ".svg") {
          const std::string svg = slurp(dir / file);
          CHECK(svg.rfind("<svg", 0) == 0);
          CHECK(contains(svg, "</svg>"));
          continue;
        }
        const tg::io::Image image = tg::io::load_image((dir / file).string());
        CHECK(image.width == figure["width"].get<int>());
        CHECK(image.height == figure["height"].get<int>());
        const auto [lo, hi] = std::minmax_element(image.pixels.begin(), image.pixels.end());
        CHECK(*hi - *lo > 64);  // not a constant (blank) picture
      }
    }
    if (unfinished.empty()) CHECK(ran.size() == programs.size());
    if (waiting > 0) MESSAGE(waiting << " lessons wait for unfinished tasks:" << unfinished);
    REQUIRE(!ran.empty());
    // The gallery lists every figure of every lesson that ran, in lesson order.
    tg::lesson::write_gallery(out.path.string());
    const std::string html = slurp(out.path / "index.html");
    size_t previous = 0;
    for (const std::string& id : ran) {
      const size_t at = html.find("<h2 id=\"" + id + "\">");
      CHECK(at != std::string::npos);
      CHECK(at >= previous);
      previous = at;
    }
    CHECK(std::count(html.begin(), html.end(), '<') > 20);
    // It opens with the lectures' figures, each linked to the lesson and file that shows it.
    if (std::find(ran.begin(), ran.end(), "08_guided_backprop") != ran.end()) {
      const size_t map = html.find("The lectures' figures");
      REQUIRE(map != std::string::npos);
      CHECK(map < html.find("<h2 id=\"" + ran.front() + "\">"));
      CHECK(test::contains(html, "Khapra 97: one neuron back-propagated three ways"));
      CHECK(test::contains(html, "<a href=\"08_guided_backprop/cat_rules.png\">cat_rules.png</a>"));
    }
  }

  TEST_CASE("share_in_boxes: the share of a map's largest |value| over channels inside boxes") {
    tg::Tensor map = tg::Tensor::zeros({1, 2, 4, 4});
    map.data()[0] = -3.f;       // channel 0, (0,0): inside the box
    map.data()[16 + 0] = 1.f;   // channel 1, (0,0): smaller than |-3|, does not count
    map.data()[16 + 15] = 1.f;  // channel 1, (3,3): outside
    const std::vector<tg::lesson::Box> box = {{0, 0, 2, 2}};
    CHECK(tg::lesson::share_in_boxes(map, box) == doctest::Approx(0.75));
    CHECK(tg::lesson::share_in_boxes(tg::Tensor::zeros({4, 4}), box) == 0.0);
    CHECK_THROWS_WITH_AS(tg::lesson::share_in_boxes(tg::Tensor::zeros({2, 1, 4, 4}), box), doctest::Contains("[2,1,4,4]"), tg::Error);
  }

  TEST_CASE("a lesson's photo carries the detection it explains, and with_box draws it at the photo's aspect") {
    REQUIRE_MESSAGE(tg::io::file_exists(tg::lesson::Lesson::kPhotoModelPath), "run make setup: it fetches the photo model");
    const char* argv[] = {"photo_test", "--out", "build/photo_test_unused"};
    tg::lesson::Lesson lesson(3, const_cast<char**>(argv),
                              {.id = "photo_test", .title = "t", .summary = "s", .uses_model = false, .uses_photo = true});
    // The shipped photo: Cat, its best anchor (the 1x1 head's, as tests/test_detection.cpp finds).
    const tg::lesson::Photo cat = lesson.photo();
    CHECK(cat.target_name == "Cat");
    CHECK(cat.detection.class_index == cat.target);
    CHECK(cat.detection.anchor == 1911);
    CHECK(cat.detection.grid == "1x1");
    // Another photo and class: the coffee cup on the 3x3 head, above the detector's 0.5.
    const tg::lesson::Photo cup = lesson.photo("assets/coffee.png", "Coffee cup");
    CHECK(cup.detection.label == "Coffee cup");
    CHECK(cup.detection.grid == "3x3");
    CHECK(cup.detection.score > 0.5f);
    // A 300x300 gray map comes back 450x300 (the photo is 600x400) with the box's color on its left edge.
    const tg::io::Image gray{300, 300, 3, std::vector<uint8_t>(300 * 300 * 3, 128)};
    const tg::io::Image boxed = cup.with_box(gray);
    CHECK(boxed.width == 450);
    CHECK(boxed.height == 300);
    const tg::viz::Rgb color = tg::viz::class_color(cup.detection.class_index);
    const int x0 = static_cast<int>(std::lround(cup.detection.box.x0 * 450));
    const int middle = static_cast<int>(std::lround((cup.detection.box.y0 + cup.detection.box.y1) / 2 * 300));
    CHECK(boxed.at(middle, x0, 0) == color.r);
    CHECK(boxed.at(middle, x0, 1) == color.g);
    CHECK(boxed.at(middle, x0 - 3, 0) == 128);  // outside the box: the map itself
    CHECK(boxed.at(middle, x0 + 5, 0) == 128);  // inside it too
  }

  TEST_CASE("a lesson given a bad path says so in one line") {
    const test::TempDir out;
    const fs::path program = fs::path(TG_BIN_DIR) / "lessons" / "02_filters";  // loads the model first
    const std::string log = (out.path / "log").string();
    const int raw = std::system((program.string() + " --model " + (out.path / "missing.safetensors").string() + " --out " +
                                 (out.path / "o").string() + " > /dev/null 2> " + log).c_str());
    CHECK(WEXITSTATUS(raw) == 1);
    const std::string err = slurp(log);
    CHECK(contains(err, "error: " + (out.path / "missing.safetensors").string() + ": cannot open"));
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(WEXITSTATUS(std::system((program.string() + " --bogus > /dev/null 2>&1").c_str())) == 2);
    CHECK(WEXITSTATUS(std::system((program.string() + " --help > /dev/null 2>&1").c_str())) == 0);
    CHECK_FALSE(fs::exists(out.path / "o"));  // no output folder for a lesson whose inputs did not load
    // The same for the student's own photo and class: checked before the first figure (the
    // lesson's first step draws FashionCNN's filters, which need neither).
    const std::string bad = (out.path / "bad.png").string();
    { std::ofstream(bad) << "not an image"; }
    for (const std::string& flags : {" --image " + bad, std::string(" --target Unicorn")}) {
      CAPTURE(flags);
      const int status = std::system((program.string() + flags + " --out " + (out.path / "p").string() + " > /dev/null 2> " + log).c_str());
      CHECK(WEXITSTATUS(status) == 1);
      const std::string message = slurp(log);
      CHECK(std::count(message.begin(), message.end(), '\n') == 1);
      CHECK(contains(message, flags.find("image") != std::string::npos ? bad + ": not a PNG or JPEG image" : "no class 'Unicorn'"));
      CHECK_FALSE(fs::exists(out.path / "p"));
    }
  }

  TEST_CASE("a lesson run from another folder finds the repository; one copied elsewhere says where to run it") {
    NEEDS_TASKS("relu", "tape-reverse-walk", "conv2d-backward", "maxpool-backward", "linear-backward", "occlusion");
    const test::TempDir dir;
    const fs::path program = fs::absolute(fs::path(TG_BIN_DIR) / "lessons" / "05_occlusion");
    const std::string log = (dir.path / "log").string();
    int raw = std::system(("cd " + dir.path.string() + " && " + program.string() + " --smoke --out here > " + log + " 2>&1").c_str());
    CHECK(WEXITSTATUS(raw) == 0);
    CHECK(fs::exists(dir.path / "here" / "lesson.json"));  // the user's --out, relative to where they ran it
    fs::copy_file(program, dir.path / "lone");
    raw = std::system(("cd " + dir.path.string() + " && ./lone --smoke > /dev/null 2> " + log).c_str());
    CHECK(WEXITSTATUS(raw) == 1);
    CHECK(contains(slurp(log), "run the lesson from the repository root"));
  }
}
