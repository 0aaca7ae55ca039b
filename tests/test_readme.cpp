// The README's link line builds a program of one's own: the first tour, and a program that
// loads a photo and segments it (libjpeg, stb and OpenCV), each with exactly that line, run
// in a folder that holds the project's headers and library as the README's folder does.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <sys/wait.h>

#include "tests/helpers.h"
#include "tinygrad-cpp/data/io.h"

#ifndef TG_BIN_DIR
#define TG_BIN_DIR "build/bin"
#endif

namespace fs = std::filesystem;
using test::contains;

namespace {
std::string read_text(const std::string& path) {
  const std::vector<uint8_t> bytes = tg::io::read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

// The fenced blocks of a markdown text in a given language, in order.
std::vector<std::string> fenced(const std::string& markdown, const std::string& language) {
  std::vector<std::string> blocks;
  std::istringstream in(markdown);
  std::string line, block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```" + language) inside = true, block.clear();
    else if (inside && line == "```") inside = false, blocks.push_back(block);
    else if (inside) block += line + "\n";
  }
  return blocks;
}

// The README's one g++ line (in a ```sh block).
std::string link_line(const std::string& readme) {
  std::string found;
  for (const std::string& block : fenced(readme, "sh")) {
    std::istringstream lines(block);
    std::string line;
    while (std::getline(lines, line))
      if (line.rfind("g++ ", 0) == 0) {
        CHECK_MESSAGE(found.empty(), "README.md has two g++ lines: " << found << " and " << line);
        found = line;
      }
  }
  return found;
}

// Writes `program` as tour.cpp in a fresh folder beside links to the headers and the library,
// runs the README's line there and returns what it printed (and its status).
std::pair<int, std::string> build_and_run(const std::string& line, const std::string& program, const test::TempDir& dir) {
  fs::create_symlink(fs::absolute("tinygrad-cpp"), dir.path / "tinygrad-cpp");
  fs::create_directories(dir.path / "build");
  fs::create_symlink(fs::absolute(fs::path(TG_BIN_DIR).parent_path() / "lib"), dir.path / "build" / "lib");
  fs::create_symlink(fs::absolute("assets"), dir.path / "assets");
  { std::ofstream(dir.file("tour.cpp")) << program; }
  const std::string command = "cd " + dir.path.string() + " && (" + line + ") > output.txt 2>&1";
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_text(dir.file("output.txt"))};
}

const char* kImageProgram = R"(#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/explain/segment.h"
#include <fmt/core.h>

int main() {
  const tg::io::Image photo = tg::io::load_image("assets/chelsea.png");
  tg::io::Image corner{.width = 8, .height = 8, .channels = 3};
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x)
      for (int c = 0; c < 3; ++c) corner.pixels.push_back(photo.at(y, x, c));
  std::vector<uint8_t> seeds(64, tg::segment::kProbablyBackground);
  for (int i = 0; i < 8; ++i) seeds[i] = tg::segment::kBackground, seeds[63 - i] = tg::segment::kForeground;
  const std::vector<uint8_t> mask = tg::segment::grabcut(corner, seeds, 1);
  fmt::print("{}x{} photo, a mask of {}\n", photo.width, photo.height, mask.size());
}
)";
}  // namespace

TEST_SUITE("readme") {
  TEST_CASE("the README's link line builds and runs the first tour and an image-loading program") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    MESSAGE("skipped in the sanitizer builds: their library needs the sanitizer runtime, which the README's line does not link");
    return;
#endif
    const std::string readme = read_text("README.md");
    const std::string line = link_line(readme);
    REQUIRE_MESSAGE(!line.empty(), "README.md has no g++ line in a ```sh block");
    CHECK(contains(line, " tour.cpp "));
    const std::vector<std::string> programs = fenced(readme, "cpp");
    if (!programs.empty()) {  // the instructor's README has the tour; a student copy's README only the line
      const test::TempDir dir;
      const auto [status, output] = build_and_run(line, programs[0], dir);
      INFO(output);
      CHECK(status == 0);
      CHECK(contains(output, "dy/dx = "));
    }
    const test::TempDir dir;
    const auto [status, output] = build_and_run(line, kImageProgram, dir);
    INFO(output);
    CHECK(status == 0);
    CHECK(contains(output, "451x300 photo, a mask of 64"));
  }
}
