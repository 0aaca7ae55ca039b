// write_gallery (declared in lesson.h): out/index.html, every lesson's figures on one page.
// It opens with a table of contents of the lessons (each lesson links back to it), then the
// three lecture courses the figures come from, then the map from the lectures' figures to the
// lessons, then the lessons. Small images (a 28x28 Fashion-MNIST picture blown up, filters) are
// scaled by nearest neighbour so their pixels stay sharp; larger ones (the photo figures) are
// scaled smoothly, so their titles stay readable. The page works from 420 px wide up.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::lesson {

namespace fs = std::filesystem;

namespace {

// Images narrower than this are drawn pixelated (each pixel a sharp square when enlarged).
constexpr int kPixelatedBelowWidth = 400;

const char* kStyle =
    "body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 12px;color:#222}"
    "h2{border-top:1px solid #ccc;padding-top:1em}a.top{font-size:0.6em;font-weight:normal;margin-left:0.8em}"
    "nav ul{columns:2 300px;list-style:none;padding-left:0}nav li{margin:0.15em 0}"
    "figure{display:inline-block;margin:0.5em;vertical-align:top;max-width:100%}"
    "img{max-width:100%;height:auto;border:1px solid #ddd}img.pixels{image-rendering:pixelated}"
    "figcaption{font-size:0.9em;max-width:640px}.wide{overflow-x:auto}table{border-collapse:collapse}"
    "td{padding:2px 10px;border-bottom:1px solid #eee;font-family:monospace;overflow-wrap:break-word}"
    "table.map td,table.courses td{font-family:sans-serif}th{text-align:left;padding:2px 10px}"
    "@media (max-width:600px){body{padding:0 6px}figure{margin:0.5em 0}td,th{padding:2px 4px}"
    // narrow: the two tables of links become one block per row, no sideways scrolling
    "table.map tr,table.courses tr,table.map td,table.courses td{display:block;border:none}"
    "table.map tr,table.courses tr{border-bottom:1px solid #ddd;padding:4px 0}table.map th,table.courses th{display:none}}";

// The three courses whose figures the lessons reproduce, as the lecture column names them.
const char* kCourses =
    "<p>The figures reproduce ones from three lecture courses, named below by lecturer and lecture "
    "number:</p>\n<div class=\"wide\"><table class=\"courses\">\n"
    "<tr><th>name</th><th>course</th><th>lecture</th><th>topic</th></tr>\n"
    "<tr><td>Khapra 96, 97</td><td>Mitesh M. Khapra, <i>Deep Learning</i>, IIT Madras</td><td>96<br>97</td>"
    "<td>Finding the influence of input pixels using backpropagation<br>Guided backpropagation</td></tr>\n"
    "<tr><td>Mopuri 10.1</td><td>Konda Reddy Mopuri, <i>Deep Learning</i>, IIT Tirupati</td><td>10.1</td>"
    "<td>Inside DNNs: filters, activations, occlusion, saliency, CAM and Grad-CAM</td></tr>\n"
    "<tr><td>Balasubramanian 39</td><td>Vineeth N Balasubramanian, <i>Deep Learning for Computer Vision</i>, IIT "
    "Hyderabad</td><td>39</td><td>Explaining CNNs, early methods: class models, saliency, deconvnet and guided "
    "backprop, feature inversion</td></tr>\n</table></div>\n";

std::string e(const std::string& text) { return viz::escape_markup(text); }

}  // namespace

void write_gallery(const std::string& out_dir) {
  std::vector<fs::path> manifests;
  for (const auto& entry : fs::directory_iterator(out_dir))
    if (entry.is_directory() && fs::exists(entry.path() / "lesson.json")) manifests.push_back(entry.path() / "lesson.json");
  std::sort(manifests.begin(), manifests.end());
  std::vector<nlohmann::json> lessons;
  for (const fs::path& path : manifests) {
    const std::vector<uint8_t> bytes = io::read_file(path.string(), 1 << 24);
    try {
      lessons.push_back(nlohmann::json::parse(bytes.begin(), bytes.end()));
      lessons.back()["folder"] = path.parent_path().filename().string();
    } catch (const nlohmann::json::exception& error) {
      throw Error(path.string() + ": not a lesson manifest (" + error.what() + ")");
    }
  }
  std::string html = fmt::format(
      "<!doctype html>\n<html><head><meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>tinygrad-cpp lessons</title>\n<style>\n{}\n</style></head><body>\n"
      "<h1>tinygrad-cpp: looking inside a CNN</h1>\n<p>Every lesson's figures, in order. Each lesson is a program in "
      "<code>lessons/</code>; run one with <code>make lesson N=07</code>.</p>\n",
      kStyle);
  // The contents: every lesson, and the lecture map.
  html += "<nav id=\"top\">\n<h2>Contents</h2>\n<ul>\n";
  for (const nlohmann::json& m : lessons) {
    const std::string folder = m["folder"].get<std::string>();
    html += fmt::format("<li>{} <a href=\"#{}\">{}</a> ({} figures)</li>\n", e(folder.substr(0, folder.find('_'))), e(folder),
                        e(m.value("title", folder)), m.value("figures", nlohmann::json::array()).size());
  }
  html += "</ul>\n<p><a href=\"#lectures\">The lectures' figures and the lessons that reproduce them</a></p>\n</nav>\n";
  // The lectures' figures and where each is reproduced, in lesson order.
  std::string map;
  for (const nlohmann::json& m : lessons)
    for (const auto& f : m.value("figures", nlohmann::json::array()))
      if (!f.value("lecture", "").empty()) {
        const std::string folder = m["folder"].get<std::string>(), file = f.value("file", "");
        map += fmt::format("<tr><td>{}</td><td><a href=\"#{}\">{}</a></td><td><a href=\"{}/{}\">{}</a></td></tr>\n",
                           e(f.value("lecture", "")), e(folder), e(folder), e(folder), e(file), e(file));
      }
  html += "<h2 id=\"lectures\">The lectures' figures<a class=\"top\" href=\"#top\">back to the contents</a></h2>\n";
  html += kCourses;
  if (!map.empty())
    html += "<div class=\"wide\"><table class=\"map\">\n<tr><th>lecture figure</th><th>lesson</th><th>file</th></tr>\n" + map +
            "</table></div>\n";
  for (const nlohmann::json& m : lessons) {
    const std::string folder = m["folder"].get<std::string>();
    html += fmt::format("<h2 id=\"{}\">{}: {}<a class=\"top\" href=\"#top\">back to the contents</a></h2>\n<p>{}</p>\n", e(folder),
                        e(m.value("id", folder)), e(m.value("title", "")), e(m.value("summary", "")));
    if (m.contains("numbers") && !m["numbers"].empty()) {
      html += "<div class=\"wide\"><table>\n";
      for (const auto& n : m["numbers"])
        html += fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", e(n.value("name", "")), e(n.value("value", "")));
      html += "</table></div>\n";
    }
    for (const auto& f : m.value("figures", nlohmann::json::array())) {
      const int width = f.value("width", 0), height = f.value("height", 0);
      html += fmt::format("<figure><img src=\"{}/{}\" alt=\"{}\"{}{}><figcaption>{}</figcaption></figure>\n", e(folder),
                          e(f.value("file", "")), e(f.value("caption", "")),
                          width > 0 && height > 0 ? fmt::format(" width=\"{}\" height=\"{}\"", width, height) : "",
                          width > 0 && width < kPixelatedBelowWidth ? " class=\"pixels\"" : "", e(f.value("caption", "")));
    }
  }
  html += "</body></html>\n";
  viz::save_text(out_dir + "/index.html", html);
  fmt::print("wrote {}/index.html ({} lessons)\n", out_dir, manifests.size());
}

}  // namespace tg::lesson
