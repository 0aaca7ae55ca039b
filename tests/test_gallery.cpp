// The gallery (out/index.html): every lesson reachable from the contents at the top and a way
// back from each, a viewport for phones, small images pixelated and photos smooth, the three
// lecture courses introduced once. Built from made-up lesson manifests, parsed as HTML.
#include <fstream>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/io.h"

namespace fs = std::filesystem;
using test::contains;

namespace {
std::string read_text(const std::string& path) {
  const std::vector<uint8_t> bytes = tg::io::read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

// The value of every `name="..."` attribute of every `<tag ...>` in the page, in order.
std::vector<std::string> attributes(const std::string& html, const std::string& tag, const std::string& name) {
  std::vector<std::string> values;
  const std::regex element("<" + tag + R"(\b[^>]*>)"), attribute("\\b" + name + R"re(="([^"]*)")re");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), element); it != std::sregex_iterator(); ++it) {
    std::smatch m;
    const std::string text = it->str();
    if (std::regex_search(text, m, attribute)) values.push_back(m[1]);
  }
  return values;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}
}  // namespace

TEST_SUITE("gallery") {
  TEST_CASE("every lesson is reachable from the contents at the top, and each links back to it") {
    const test::TempDir out;
    std::vector<std::string> ids;
    for (int n = 1; n <= 13; ++n) {
      const std::string id = fmt::format("{:02}_lesson_{}", n, n);
      ids.push_back(id);
      fs::create_directories(out.path / id);
      nlohmann::json m = {{"id", id}, {"title", fmt::format("Lesson number {}", n)}, {"summary", "what it shows"}};
      m["figures"] = nlohmann::json::array();
      // A 28x28 picture blown up, a 1,600-pixel-wide photo figure, and an SVG chart (no size).
      m["figures"].push_back({{"file", "small.png"}, {"caption", "small"}, {"lecture", n == 2 ? "Khapra 96: a map" : ""},
                              {"width", 280}, {"height", 280}});
      m["figures"].push_back({{"file", "photo.png"}, {"caption", "photo"}, {"lecture", n == 7 ? "Mopuri 10.1: a photo" : ""},
                              {"width", 1600}, {"height", 400}});
      m["figures"].push_back({{"file", "chart.svg"}, {"caption", "chart"}, {"lecture", ""}, {"width", 0}, {"height", 0}});
      std::ofstream(out.path / id / "lesson.json") << m.dump(2);
    }
    tg::lesson::write_gallery(out.path.string());
    const std::string html = read_text(out.file("index.html"));
    CHECK(contains(html, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));

    // The contents come first: a link to every lesson's heading, in order.
    const size_t first_lesson = html.find("<h2 id=\"" + ids.front() + "\">");
    REQUIRE(first_lesson != std::string::npos);
    const size_t top = html.find("id=\"top\"");
    REQUIRE(top < first_lesson);
    const std::vector<std::string> heading_ids = attributes(html, "h2", "id");
    std::vector<std::string> contents;
    for (const std::string& href : attributes(html.substr(top, first_lesson - top), "a", "href"))
      if (href.rfind("#", 0) == 0) contents.push_back(href.substr(1));
    for (const std::string& id : ids) {
      CAPTURE(id);
      CHECK(std::find(contents.begin(), contents.end(), id) != contents.end());
      CHECK(std::find(heading_ids.begin(), heading_ids.end(), id) != heading_ids.end());
      // The lesson's section (to the next heading) links back to the top.
      const size_t at = html.find("<h2 id=\"" + id + "\">");
      const std::string section = html.substr(at, html.find("<h2 id=", at + 1) - at);
      CHECK(contains(section, "href=\"#top\""));
    }
    CHECK(std::find(contents.begin(), contents.end(), "lectures") != contents.end());

    // Small images stay sharp; photo figures and charts are scaled smoothly.
    const std::regex image(R"re(<img src="([^"]*)"[^>]*>)re");
    std::map<std::string, int> pixelated;
    for (auto it = std::sregex_iterator(html.begin(), html.end(), image); it != std::sregex_iterator(); ++it) {
      const std::string file = fs::path((*it)[1].str()).filename().string();
      pixelated[file] += contains(it->str(), "class=\"pixels\"");
    }
    CHECK(pixelated["small.png"] == 13);
    CHECK(pixelated["photo.png"] == 0);
    CHECK(pixelated["chart.svg"] == 0);
    CHECK(count(html, "image-rendering:pixelated") == 1);  // in the style of class pixels only

    // The lecture courses are introduced once, in the lectures' section, before the map.
    CHECK(count(html, "Mitesh M. Khapra") == 1);
    CHECK(count(html, "Konda Reddy Mopuri") == 1);
    CHECK(count(html, "Vineeth N Balasubramanian") == 1);
    CHECK(html.find("Mitesh M. Khapra") > html.find("<h2 id=\"lectures\">"));
    CHECK(html.find("Mitesh M. Khapra") < html.find("Khapra 96: a map"));
    CHECK(contains(html, "<a href=\"02_lesson_2/small.png\">small.png</a>"));
  }
}
