#include "tinygrad-cpp/viz/viz.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <stb/stb_truetype.h>

#include "tinygrad-cpp/core/ops.h"

namespace tg::viz {

namespace {

// A [C,H,W] view of a [C,H,W] or [H,W] tensor, or of a batch of one [1,C,H,W].
struct Planes {
  int64_t channels, height, width;
};
Planes planes_of(const Tensor& t, const char* what) {
  if (t.ndim() == 2) return {1, t.dim(0), t.dim(1)};
  if (t.ndim() == 3) return {t.dim(0), t.dim(1), t.dim(2)};
  if (t.ndim() == 4 && t.dim(0) == 1) return {t.dim(1), t.dim(2), t.dim(3)};
  throw Error(std::string(what) + ": map " + shape_str(t.shape()) + " must be [C,H,W], [H,W] or [1,C,H,W]");
}

float clamp01(float v) { return std::min(1.f, std::max(0.f, v)); }
uint8_t to_byte(float v) { return static_cast<uint8_t>(std::lround(clamp01(v) * 255.f)); }

}  // namespace

// [1,H,W]: each pixel's largest |value| over the channels.
static Tensor max_abs_over_channels(const Tensor& map, const char* op) {
  const Planes p = planes_of(map, op);
  const float* a = map.data();
  Tensor out = Tensor::zeros({1, p.height, p.width});
  for (int64_t c = 0; c < p.channels; ++c)
    for (int64_t i = 0; i < p.height * p.width; ++i) {
      float& v = out.data()[i];
      v = std::max(v, std::fabs(a[c * p.height * p.width + i]));
    }
  return out;
}

float clip_level(const Tensor& map, float percentile) {
  if (!(percentile >= 0.f && percentile <= 100.f))
    throw Error(fmt::format("clip_level: percentile {} must be in [0, 100]", percentile));
  const Tensor magnitude = max_abs_over_channels(map, "clip_level");
  std::vector<float> sorted(magnitude.data(), magnitude.data() + magnitude.numel());
  const size_t at = static_cast<size_t>(std::lround(percentile / 100.0 * static_cast<double>(sorted.size() - 1)));
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(at), sorted.end());
  return sorted[at];
}

std::string clip_note(const Tensor& map, const std::string& symbol) {
  return fmt::format("{} clipped at its 99th percentile ({:.2g})", symbol, clip_level(map));
}

Show show_for(Normalize policy) {
  return policy == Normalize::MinMax ? Show::MinMax : policy == Normalize::MaxAbs ? Show::Magnitude : Show::Signed;
}

std::string percentile_words(float percentile) { return fmt::format("{:g}th percentile", percentile); }

MapDisplay display_map(const Tensor& attribution, Show show, float percentile) {
  Tensor map = attribution.ndim() == 2 ? reshape(attribution, {1, attribution.dim(0), attribution.dim(1)}) : attribution;
  MapDisplay d{.show = show};
  if (show == Show::MinMax) {
    const auto [lowest, highest] = std::minmax_element(map.data(), map.data() + map.numel());
    d.low = *lowest, d.high = *highest;
    d.unit = normalize(map, Normalize::MinMax);
    if (d.unit.dim(0) > 1) d.unit = mean(d.unit, {0}, true);
    return d;
  }
  // Signed maps add their colour channels, so colours that agree add up; magnitudes take the
  // largest |a| over them (Simonyan et al.). Either is clipped at a percentile of |a|, so a
  // few pixels cannot wash out the rest.
  if (show == Show::Signed && map.dim(0) > 1) map = sum(map, {0}, true);
  const float level = std::max(clip_level(map, percentile), std::numeric_limits<float>::min());
  if (show == Show::Magnitude) {
    d.unit = normalize(map, Normalize::Percentile99, percentile);
    d.low = 0, d.high = level;
  } else {
    d.unit = normalize(clamp(map, -level, level), Normalize::Signed);
    d.colormap = Colormap::Diverging;
    d.low = -level, d.high = level;
  }
  return d;
}

Tensor normalize(const Tensor& map, Normalize policy, float percentile) {
  const Planes p = planes_of(map, "normalize");
  const int64_t n = p.channels * p.height * p.width;
  const float* a = map.data();
  if (policy == Normalize::MaxAbs || policy == Normalize::Percentile99) {
    Tensor out = max_abs_over_channels(map, "normalize");
    float* o = out.data();
    const float top = policy == Normalize::MaxAbs ? *std::max_element(o, o + out.numel()) : clip_level(map, percentile);
    if (top > 0.f)
      for (int64_t i = 0; i < out.numel(); ++i) o[i] = std::min(o[i] / top, 1.f);
    return out;
  }
  Tensor out = Tensor::empty({p.channels, p.height, p.width});
  float* o = out.data();
  if (policy == Normalize::Signed) {
    float peak = 0.f;
    for (int64_t i = 0; i < n; ++i) peak = std::max(peak, std::fabs(a[i]));
    for (int64_t i = 0; i < n; ++i) o[i] = peak > 0.f ? 0.5f + 0.5f * a[i] / peak : 0.5f;
    return out;
  }
  float low, high;
  if (policy == Normalize::MinMax) {
    const auto [lo, hi] = std::minmax_element(a, a + n);
    low = *lo;
    high = *hi;
  } else {
    if (!(percentile > 50.f && percentile <= 100.f))
      throw Error(fmt::format("normalize: percentile {} must be in (50, 100]", percentile));
    std::vector<float> sorted(a, a + n);
    std::sort(sorted.begin(), sorted.end());
    auto at = [&](float q) { return sorted[static_cast<size_t>(std::lround(q / 100.f * static_cast<float>(n - 1)))]; };
    low = at(100.f - percentile);
    high = at(percentile);
  }
  for (int64_t i = 0; i < n; ++i) o[i] = high > low ? clamp01((a[i] - low) / (high - low)) : 0.f;
  return out;
}

io::Image colorize(const Tensor& unit_map, Colormap colormap) {
  const Planes p = planes_of(unit_map, "colorize");
  if (p.channels != 1) throw Error("colorize: map " + shape_str(unit_map.shape()) + " must have one channel");
  // Anchor colors at evenly spaced values; linear interpolation between them.
  static const std::vector<std::array<float, 3>> gray = {{0, 0, 0}, {255, 255, 255}};
  static const std::vector<std::array<float, 3>> diverging = {{33, 102, 172}, {146, 197, 222}, {247, 247, 247},
                                                              {244, 165, 130}, {178, 24, 43}};
  static const std::vector<std::array<float, 3>> viridis = {{68, 1, 84},    {71, 44, 122},   {59, 81, 139},
                                                            {44, 113, 142}, {33, 144, 141},  {39, 173, 129},
                                                            {92, 200, 99},  {170, 220, 50},  {253, 231, 37}};
  const auto& anchors = colormap == Colormap::Gray ? gray : colormap == Colormap::Diverging ? diverging : viridis;
  io::Image image{static_cast<int>(p.width), static_cast<int>(p.height), 3, {}};
  image.pixels.resize(static_cast<size_t>(p.width * p.height * 3));
  for (int64_t i = 0; i < p.height * p.width; ++i) {
    const float position = clamp01(unit_map.data()[i]) * static_cast<float>(anchors.size() - 1);
    const size_t k = std::min(anchors.size() - 2, static_cast<size_t>(position));
    const float t = position - static_cast<float>(k);
    for (int c = 0; c < 3; ++c)
      image.pixels[static_cast<size_t>(i) * 3 + c] =
          static_cast<uint8_t>(std::lround(anchors[k][c] * (1.f - t) + anchors[k + 1][c] * t));
  }
  return image;
}

io::Image picture(const Tensor& map, Normalize policy, Colormap colormap, int scale) {
  const Tensor plane = map.ndim() == 4 && map.dim(0) == 1 ? reshape(map, {map.dim(1), map.dim(2), map.dim(3)}) : map;
  return scale_nearest(colorize(normalize(plane, policy), colormap), scale);
}

io::Image to_image(const Tensor& unit) {
  const Planes p = planes_of(unit, "to_image");
  if (p.channels != 1 && p.channels != 3) throw Error("to_image: " + shape_str(unit.shape()) + " must have 1 or 3 channels");
  io::Image image{static_cast<int>(p.width), static_cast<int>(p.height), static_cast<int>(p.channels), {}};
  image.pixels.resize(static_cast<size_t>(unit.numel()));
  const int64_t plane = p.height * p.width;
  for (int64_t c = 0; c < p.channels; ++c)
    for (int64_t i = 0; i < plane; ++i) image.pixels[static_cast<size_t>(i * p.channels + c)] = to_byte(unit.data()[c * plane + i]);
  return image;
}

Tensor from_image(const io::Image& image) {
  Tensor t = Tensor::empty({image.channels, image.height, image.width});
  const int64_t plane = static_cast<int64_t>(image.height) * image.width;
  for (int64_t c = 0; c < image.channels; ++c)
    for (int64_t i = 0; i < plane; ++i) t.data()[c * plane + i] = image.pixels[static_cast<size_t>(i * image.channels + c)] / 255.f;
  return t;
}

io::Image scale_nearest(const io::Image& image, int factor) {
  if (factor < 1) throw Error(fmt::format("scale_nearest: factor {} must be >= 1", factor));
  io::Image out{image.width * factor, image.height * factor, image.channels, {}};
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * out.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < image.channels; ++c) out.at(y, x, c) = image.at(y / factor, x / factor, c);
  return out;
}

io::Image overlay(const io::Image& base, const io::Image& heat, float alpha) {
  if (base.width != heat.width || base.height != heat.height || heat.channels != 3)
    throw Error(fmt::format("overlay: base {}x{} and heat map {}x{}x{} must match in size, heat map RGB", base.width,
                            base.height, heat.width, heat.height, heat.channels));
  io::Image out{base.width, base.height, 3, std::vector<uint8_t>(static_cast<size_t>(base.width) * base.height * 3)};
  for (int y = 0; y < base.height; ++y)
    for (int x = 0; x < base.width; ++x)
      for (int c = 0; c < 3; ++c) {
        const float b = base.at(y, x, base.channels >= 3 ? c : 0);
        out.at(y, x, c) = static_cast<uint8_t>(std::lround(b * (1.f - alpha) + heat.at(y, x, c) * alpha));
      }
  return out;
}

io::Image grid(const std::vector<io::Image>& tiles, int columns, int spacing, uint8_t background) {
  if (tiles.empty() || columns < 1) throw Error("grid: needs at least one tile and one column");
  int cell_w = 0, cell_h = 0, channels = 1;
  for (const io::Image& t : tiles) {
    cell_w = std::max(cell_w, t.width);
    cell_h = std::max(cell_h, t.height);
    channels = std::max(channels, t.channels >= 3 ? 3 : 1);
  }
  const int cols = std::min<int>(columns, static_cast<int>(tiles.size()));
  const int rows = (static_cast<int>(tiles.size()) + cols - 1) / cols;
  io::Image out{cols * cell_w + (cols + 1) * spacing, rows * cell_h + (rows + 1) * spacing, channels, {}};
  out.pixels.assign(static_cast<size_t>(out.width) * out.height * channels, background);
  for (size_t i = 0; i < tiles.size(); ++i) {
    const io::Image& t = tiles[i];
    const int ox = spacing + static_cast<int>(i % cols) * (cell_w + spacing);
    const int oy = spacing + static_cast<int>(i / cols) * (cell_h + spacing);
    for (int y = 0; y < t.height; ++y)
      for (int x = 0; x < t.width; ++x)
        for (int c = 0; c < channels; ++c) out.at(oy + y, ox + x, c) = t.at(y, x, t.channels >= 3 ? c : 0);
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Words in figures
namespace {

constexpr const char* kFontPath = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

// The font, read once: a missing font is an error that says how to get it.
const stbtt_fontinfo& font() {
  static const std::vector<uint8_t> bytes = [] {
    if (!io::file_exists(kFontPath))
      throw Error(std::string(kFontPath) + ": font missing; `make setup` installs it (Debian package fonts-dejavu-core)");
    return io::read_file(kFontPath, 16 << 20);
  }();
  static const stbtt_fontinfo info = [] {
    stbtt_fontinfo f;
    if (!stbtt_InitFont(&f, bytes.data(), stbtt_GetFontOffsetForIndex(bytes.data(), 0)))
      throw Error(std::string(kFontPath) + ": not a TrueType font stb_truetype can read");
    return f;
  }();
  return info;
}

// The next code point of UTF-8 text (a byte that does not start one is taken as Latin-1).
uint32_t next_code_point(const std::string& s, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t b = byte(i);
  int extra = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : 0;
  if (extra == 0 || i + extra >= s.size()) {
    ++i;
    return b;
  }
  uint32_t cp = b & (0x3f >> extra);
  for (int k = 1; k <= extra; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) {
      ++i;
      return b;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  i += extra + 1;
  return cp;
}

io::Image blank(int width, int height, int channels) {
  io::Image out{std::max(width, 1), std::max(height, 1), channels, {}};
  out.pixels.assign(static_cast<size_t>(out.width) * out.height * channels, 255);
  return out;
}

// Copies `tile` into `out` with its top-left corner at (x0, y0); gray tiles fill all channels.
void paste(io::Image& out, const io::Image& tile, int x0, int y0) {
  for (int y = 0; y < tile.height; ++y)
    for (int x = 0; x < tile.width; ++x)
      for (int c = 0; c < out.channels; ++c)
        if (y0 + y >= 0 && y0 + y < out.height && x0 + x >= 0 && x0 + x < out.width)
          out.at(y0 + y, x0 + x, c) = tile.at(y, x, tile.channels >= 3 ? std::min(c, 2) : 0);
}

}  // namespace

io::Image text(const std::string& words, int pixel_height) {
  const stbtt_fontinfo& f = font();
  pixel_height = std::clamp(pixel_height, 6, 200);
  const float scale = stbtt_ScaleForPixelHeight(&f, static_cast<float>(pixel_height));
  int ascent, descent, gap;
  stbtt_GetFontVMetrics(&f, &ascent, &descent, &gap);
  const int baseline = static_cast<int>(std::ceil(ascent * scale));
  const int height = baseline + static_cast<int>(std::ceil(-descent * scale)) + 1;
  std::vector<uint32_t> code_points;
  for (size_t i = 0; i < words.size();) code_points.push_back(next_code_point(words, i));
  // First the width, then the glyphs, each blended darker into white paper.
  float x = 1.f;
  for (size_t k = 0; k < code_points.size(); ++k) {
    int advance, bearing;
    stbtt_GetCodepointHMetrics(&f, static_cast<int>(code_points[k]), &advance, &bearing);
    x += advance * scale;
    if (k + 1 < code_points.size())
      x += scale * stbtt_GetCodepointKernAdvance(&f, static_cast<int>(code_points[k]), static_cast<int>(code_points[k + 1]));
  }
  io::Image out = blank(static_cast<int>(std::ceil(x)) + 2, height, 1);
  x = 1.f;
  for (size_t k = 0; k < code_points.size(); ++k) {
    const int cp = static_cast<int>(code_points[k]);
    int advance, bearing, x0, y0, x1, y1;
    stbtt_GetCodepointHMetrics(&f, cp, &advance, &bearing);
    stbtt_GetCodepointBitmapBox(&f, cp, scale, scale, &x0, &y0, &x1, &y1);
    const int w = x1 - x0, h = y1 - y0;
    if (w > 0 && h > 0) {
      std::vector<uint8_t> glyph(static_cast<size_t>(w) * h);
      stbtt_MakeCodepointBitmap(&f, glyph.data(), w, h, w, scale, scale, cp);
      const int left = static_cast<int>(std::lround(x)) + x0, top = baseline + y0;
      for (int gy = 0; gy < h; ++gy)
        for (int gx = 0; gx < w; ++gx) {
          const int px = left + gx, py = top + gy;
          if (px < 0 || py < 0 || px >= out.width || py >= out.height) continue;
          uint8_t& dst = out.at(py, px, 0);
          dst = static_cast<uint8_t>(std::min<int>(dst, 255 - glyph[static_cast<size_t>(gy) * w + gx] * 7 / 8));
        }
    }
    x += advance * scale;
    if (k + 1 < code_points.size()) x += scale * stbtt_GetCodepointKernAdvance(&f, cp, static_cast<int>(code_points[k + 1]));
  }
  return out;
}

io::Image stack(const std::vector<io::Image>& rows, int spacing) {
  if (rows.empty()) throw Error("stack: needs at least one image");
  int width = 0, height = 0, channels = 1;
  for (const io::Image& r : rows) {
    width = std::max(width, r.width);
    height += r.height;
    channels = std::max(channels, r.channels >= 3 ? 3 : 1);
  }
  height += spacing * static_cast<int>(rows.size() - 1);
  io::Image out = blank(width, height, channels);
  int y = 0;
  for (const io::Image& r : rows) {
    paste(out, r, (width - r.width) / 2, y);
    y += r.height + spacing;
  }
  return out;
}

io::Image titled(const io::Image& tile, const std::string& title, int pixel_height) {
  return stack({text(title, pixel_height), tile}, 2);
}

io::Image color_bar(Colormap colormap, int width, const std::string& low, const std::string& middle,
                    const std::string& high) {
  width = std::max(width, 16);
  Tensor ramp = Tensor::empty({1, 10, width});
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < width; ++x) ramp.data()[y * width + x] = static_cast<float>(x) / static_cast<float>(width - 1);
  const io::Image bar = colorize(ramp, colormap);
  const io::Image l = text(low, 12), m = text(middle, 12), h = text(high, 12);
  io::Image labels = blank(width, std::max({l.height, m.height, h.height}), 1);
  if (!low.empty()) paste(labels, l, 0, 0);
  if (!middle.empty()) paste(labels, m, (width - m.width) / 2, 0);
  if (!high.empty()) paste(labels, h, width - h.width, 0);
  return stack({bar, labels}, 1);
}

io::Image swatch_legend(const std::vector<std::pair<Rgb, std::string>>& entries, int per_row) {
  if (entries.empty()) throw Error("swatch_legend: needs at least one entry");
  const size_t row_length = per_row > 0 ? static_cast<size_t>(per_row) : entries.size();
  std::vector<io::Image> rows;
  for (size_t first = 0; first < entries.size(); first += row_length) {
    std::vector<io::Image> items;
    for (size_t k = first; k < std::min(entries.size(), first + row_length); ++k) {
      const io::Image words = text(entries[k].second, 12);
      const int side = 14;
      io::Image item = blank(side + 4 + words.width + 14, std::max(side, words.height), 3);
      for (int y = 0; y < side; ++y)
        for (int x = 0; x < side; ++x) {
          const bool edge = x == 0 || y == 0 || x == side - 1 || y == side - 1;  // a thin dark frame: white shows too
          item.at(y, x, 0) = edge ? 60 : entries[k].first.r;
          item.at(y, x, 1) = edge ? 60 : entries[k].first.g;
          item.at(y, x, 2) = edge ? 60 : entries[k].first.b;
        }
      paste(item, words, side + 4, (item.height - words.height) / 2);
      items.push_back(item);
    }
    int width = 0, height = 0;
    for (const io::Image& item : items) width += item.width, height = std::max(height, item.height);
    io::Image row = blank(width, height, 3);
    int x = 0;
    for (const io::Image& item : items) paste(row, item, x, 0), x += item.width;
    rows.push_back(row);
  }
  return stack(rows, 3);
}

// ---------------------------------------------------------------------------------
// SVG charts
std::string escape_markup(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

namespace {

// About `count` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int count) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(1, count);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * power) {
      step = m * power;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

struct Frame {
  int width, height;
  double x_lo, x_hi, y_lo, y_hi;
  static constexpr int left = 64, right = 16, top = 36, bottom = 48;
  double px(double x) const { return left + (x - x_lo) / (x_hi - x_lo) * (width - left - right); }
  double py(double y) const { return height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom); }
};

// The SVG header, title, axes with ticks and labels. With `x_tick_labels` the x ticks are at
// 0, 1, 2, ... and carry those words instead of numbers.
std::string axes(const Frame& f, const std::string& title, const std::string& x_label, const std::string& y_label,
                 bool x_ticks = true, const std::vector<std::string>& x_tick_labels = {}) {
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      f.width, f.height, f.width / 2, escape_markup(title));
  const double x0 = f.px(f.x_lo), x1 = f.px(f.x_hi), y0 = f.py(f.y_lo), y1 = f.py(f.y_hi);
  s += fmt::format("<path d=\"M{:.1f} {:.1f} V{:.1f} H{:.1f}\" stroke=\"black\" fill=\"none\"/>\n", x0, y1, y0, x1);
  for (double t : nice_ticks(f.y_lo, f.y_hi, 5)) {
    if (t < f.y_lo || t > f.y_hi) continue;
    s += fmt::format("<line x1=\"{0:.1f}\" x2=\"{1:.1f}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
                     "<text x=\"{3:.1f}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:g}</text>\n",
                     x0, x1, f.py(t), x0 - 6, f.py(t) + 4, t);
  }
  for (size_t k = 0; k < x_tick_labels.size(); ++k)
    s += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1:.1f}\" y2=\"{2:.1f}\" stroke=\"black\"/>"
                     "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4}</text>\n",
                     f.px(static_cast<double>(k)), y0, y0 + 5, y0 + 18, escape_markup(x_tick_labels[k]));
  if (x_ticks && x_tick_labels.empty())
    for (double t : nice_ticks(f.x_lo, f.x_hi, 6)) {
      if (t < f.x_lo || t > f.x_hi) continue;
      s += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1:.1f}\" y2=\"{2:.1f}\" stroke=\"black\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4:g}</text>\n",
                       f.px(t), y0, y0 + 5, y0 + 18, t);
    }
  s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (x0 + x1) / 2, f.height - 10, escape_markup(x_label));
  s += fmt::format("<text transform=\"translate(16 {:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n", (y0 + y1) / 2,
                   escape_markup(y_label));
  return s;
}

}  // namespace

std::string line_chart(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                       const std::string& y_label, int width, int height, const std::vector<std::string>& x_tick_labels) {
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const Series& s : series) {
    if (s.x.size() != s.y.size()) throw Error("line_chart: series '" + s.label + "' has different x and y lengths");
    for (double v : s.x) x_lo = std::min(x_lo, v), x_hi = std::max(x_hi, v);
    for (double v : s.y) y_lo = std::min(y_lo, v), y_hi = std::max(y_hi, v);
  }
  if (!std::isfinite(x_lo)) throw Error("line_chart: no data");
  if (y_hi == y_lo) y_hi = y_lo + 1;
  if (!x_tick_labels.empty())  // a quarter step beyond the first and last name, so both fit
    x_lo = std::min(x_lo, 0.0) - 0.25, x_hi = std::max(x_hi, static_cast<double>(x_tick_labels.size() - 1)) + 0.25;
  if (x_hi == x_lo) x_hi = x_lo + 1;
  const double pad = 0.05 * (y_hi - y_lo);
  Frame f{width, height, x_lo, x_hi, y_lo - pad, y_hi + pad};
  std::string svg = axes(f, title, x_label, y_label, /*x_ticks=*/true, x_tick_labels);
  // The legend (154 pixels wide, 16 a line) goes in the first corner of the plot, of top right,
  // top left, bottom right, bottom left, that no line passes through (top right when all do).
  const double legend_w = 154, legend_h = 16.0 * static_cast<double>(series.size()) + 4;
  const double plot_x0 = f.px(f.x_lo), plot_x1 = f.px(f.x_hi), plot_y0 = f.py(f.y_hi), plot_y1 = f.py(f.y_lo);
  const std::vector<std::pair<double, double>> corners = {{plot_x1 - legend_w, plot_y0 + 4},
                                                           {plot_x0 + 8, plot_y0 + 4},
                                                           {plot_x1 - legend_w, plot_y1 - legend_h - 4},
                                                           {plot_x0 + 8, plot_y1 - legend_h - 4}};
  auto crossed = [&](double lx, double ly) {
    for (const Series& s : series)
      for (size_t i = 0; i < s.x.size(); ++i)
        for (int step = 0; step <= (i + 1 < s.x.size() ? 20 : 0); ++step) {  // points along each segment
          const double t = step / 20.0;
          const double x = f.px(s.x[i]) + (i + 1 < s.x.size() ? t * (f.px(s.x[i + 1]) - f.px(s.x[i])) : 0);
          const double y = f.py(s.y[i]) + (i + 1 < s.x.size() ? t * (f.py(s.y[i + 1]) - f.py(s.y[i])) : 0);
          if (x >= lx && x <= lx + legend_w && y >= ly && y <= ly + legend_h) return true;
        }
    return false;
  };
  std::pair<double, double> legend = corners.front();
  for (const auto& corner : corners)
    if (!crossed(corner.first, corner.second)) {
      legend = corner;
      break;
    }
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    std::string d;
    for (size_t i = 0; i < s.x.size(); ++i) d += fmt::format("{}{:.1f} {:.1f} ", i ? "L" : "M", f.px(s.x[i]), f.py(s.y[i]));
    svg += fmt::format("<path d=\"{}\" stroke=\"{}\" stroke-width=\"2\" fill=\"none\"/>\n", d, kPalette[k % 8]);
    svg += fmt::format("<rect x=\"{:.0f}\" y=\"{:.0f}\" width=\"12\" height=\"4\" fill=\"{}\"/><text x=\"{:.0f}\" y=\"{:.0f}\">{}</text>\n",
                       legend.first, legend.second + 4 + 16.0 * k, kPalette[k % 8], legend.first + 18,
                       legend.second + 9 + 16.0 * k, escape_markup(s.label));
  }
  return svg + "</svg>\n";
}

std::string histogram(const std::vector<double>& values, int bins, const std::string& title, const std::string& x_label,
                      int width, int height) {
  if (values.empty() || bins < 1) throw Error("histogram: needs values and at least one bin");
  const auto [lo_it, hi_it] = std::minmax_element(values.begin(), values.end());
  Histogram h(*lo_it, *hi_it > *lo_it ? *hi_it : *lo_it + 1, bins);
  for (double v : values) h.add(v);
  return h.svg(title, x_label, width, height);
}

Histogram::Histogram(double lo, double hi, int bins, std::vector<double> exact)
    : lo_(lo), hi_(hi), bins_(static_cast<size_t>(std::max(bins, 0)), 0.0), exact_(std::move(exact)),
      exact_counts_(exact_.size(), 0.0) {
  if (bins < 1 || !(hi > lo)) throw Error(fmt::format("Histogram: needs at least one bin and lo < hi (got {} bins, [{:g}, {:g}])", bins, lo, hi));
}

void Histogram::add(double value) {
  ++total_;
  for (size_t k = 0; k < exact_.size(); ++k)
    if (value == exact_[k]) {
      exact_counts_[k] += 1;
      return;
    }
  const double at = (value - lo_) / (hi_ - lo_) * static_cast<double>(bins_.size());
  bins_[static_cast<size_t>(std::clamp(at, 0.0, static_cast<double>(bins_.size() - 1)))] += 1;
}

double Histogram::share_exact(double value) const {
  for (size_t k = 0; k < exact_.size(); ++k)
    if (exact_[k] == value) return total_ ? exact_counts_[k] / static_cast<double>(total_) : 0.0;
  throw Error(fmt::format("Histogram: {:g} is not one of its exact values", value));
}

std::string Histogram::svg(const std::string& title, const std::string& x_label, int width, int height) const {
  if (total_ == 0) throw Error("Histogram: no values");
  const double percent = 100.0 / static_cast<double>(total_), bin_width = (hi_ - lo_) / static_cast<double>(bins_.size());
  double tallest = 0, tallest_exact = 0;
  for (double c : bins_) tallest = std::max(tallest, c * percent);
  for (double c : exact_counts_) tallest_exact = std::max(tallest_exact, c * percent);
  if (tallest == 0) tallest = tallest_exact;
  // An exact value's bar is one bin wide, beside the range when it sits on its end.
  double x_lo = lo_, x_hi = hi_;
  for (double v : exact_) x_lo = std::min(x_lo, v - bin_width), x_hi = std::max(x_hi, v + bin_width);
  Frame f{width, height, x_lo, x_hi, 0, tallest * 1.15};
  std::string svg = axes(f, title, x_label, exact_.empty() ? "share of values (%)" : "share of all values (%)");
  for (size_t b = 0; b < bins_.size(); ++b) {
    const double x0 = f.px(lo_ + bin_width * static_cast<double>(b)), x1 = f.px(lo_ + bin_width * static_cast<double>(b + 1));
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>\n", x0,
                       f.py(bins_[b] * percent), std::max(0.5, x1 - x0 - 1), f.py(0) - f.py(bins_[b] * percent), kPalette[0]);
  }
  for (size_t k = 0; k < exact_.size(); ++k) {
    const double v = exact_[k], share = exact_counts_[k] * percent;
    const double left = v <= lo_ ? v - bin_width : v >= hi_ ? v : v - bin_width / 2;
    const double x0 = f.px(left), x1 = f.px(left + bin_width), shown = std::min(share, f.y_hi);
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>\n", x0, f.py(shown),
                       std::max(1.0, x1 - x0), f.py(0) - f.py(shown), kPalette[3]);
    if (share > f.y_hi)  // cut: a white gap across the bar near its top
      svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"4\" fill=\"white\"/>\n", x0 - 1,
                         f.py(f.y_hi) + 8, x1 - x0 + 2);
    const bool right_half = x0 > width / 2;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\" fill=\"{}\" font-weight=\"bold\">{:g}: {:.1f}%{}</text>\n",
                       right_half ? x0 - 4 : x1 + 4, f.py(shown) + 14, right_half ? "end" : "start", kPalette[3], v, share,
                       share > f.y_hi ? " (cut)" : "");
  }
  return svg + "</svg>\n";
}

std::string bar_chart(const std::vector<std::string>& labels, const std::vector<double>& values, const std::string& title,
                      const std::string& y_label, int width, int height, const std::string& x_label, const BarGroups& groups) {
  if (labels.size() != values.size() || values.empty()) throw Error("bar_chart: needs one label per value");
  if (!groups.groups.empty() && groups.groups.size() != values.size())
    throw Error(fmt::format("bar_chart: groups: got {} group numbers, expected one per bar ({})", groups.groups.size(), values.size()));
  const size_t palette_size = sizeof(kPalette) / sizeof(kPalette[0]);
  auto group_of = [&](size_t i) { return groups.groups.empty() ? size_t{0} : groups.groups[i] % palette_size; };
  const double lo = std::min(0.0, *std::min_element(values.begin(), values.end()));
  const double hi = std::max(0.0, *std::max_element(values.begin(), values.end()));
  // Headroom above the tallest bar for the legend's lines.
  const double headroom = 1.05 + 0.12 * static_cast<double>(groups.names.size());
  Frame f{width, height, 0, static_cast<double>(values.size()), lo, hi > lo ? hi * headroom : lo + 1};
  std::string svg = axes(f, title, x_label, y_label, /*x_ticks=*/false);
  for (size_t i = 0; i < values.size(); ++i) {
    const double x0 = f.px(static_cast<double>(i) + 0.15), x1 = f.px(static_cast<double>(i) + 0.85);
    const double top = f.py(std::max(0.0, values[i])), bottom = f.py(std::min(0.0, values[i]));
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                       x0, top, x1 - x0, bottom - top, kPalette[group_of(i)], (x0 + x1) / 2, f.py(lo) + 16, escape_markup(labels[i]));
  }
  for (size_t g = 0; g < groups.names.size(); ++g) {
    const double y = f.top + 10 + 18.0 * static_cast<double>(g);
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"12\" fill=\"{}\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
                       f.px(0) + 10, y, kPalette[g % palette_size], f.px(0) + 28, y + 11, escape_markup(groups.names[g]));
  }
  return svg + "</svg>\n";
}

std::string diagram(const std::vector<DiagramNode>& nodes, const std::vector<DiagramEdge>& edges, const std::string& title,
                    const std::vector<DiagramNote>& notes, int width, int height) {
  const double radius = 22;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" "
      "orient=\"auto-start-reverse\"><path d=\"M0 0 L10 5 L0 10 z\" fill=\"context-stroke\"/></marker></defs>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{3}</text>\n",
      width, height, width / 2, escape_markup(title));
  // Plain edges first, so the highlighted paths are drawn over them.
  for (const EdgeStyle pass : {EdgeStyle::Plain, EdgeStyle::Cut, EdgeStyle::Highlighted})
    for (const DiagramEdge& e : edges) {
      if (e.style != pass) continue;
      if (e.from >= nodes.size() || e.to >= nodes.size())
        throw Error(fmt::format("diagram: edge {} -> {} names a node past the {} nodes", e.from, e.to, nodes.size()));
      const DiagramNode &a = nodes[e.from], &b = nodes[e.to];
      const double dx = b.x - a.x, dy = b.y - a.y, length = std::max(1e-9, std::hypot(dx, dy));
      const double ux = dx / length, uy = dy / length;
      const std::string stroke = pass == EdgeStyle::Highlighted ? e.color : "#999";
      svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"{}\"{} "
                         "marker-end=\"url(#arrow)\"/>\n",
                         a.x + ux * radius, a.y + uy * radius, b.x - ux * radius, b.y - uy * radius, stroke,
                         pass == EdgeStyle::Highlighted ? 3 : 1.2, pass == EdgeStyle::Cut ? " stroke-dasharray=\"6 4\"" : "");
      if (!e.label.empty())
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"{}\" stroke=\"white\" "
                           "stroke-width=\"4\" paint-order=\"stroke\">{}</text>\n",
                           a.x + dx / 3, a.y + dy / 3 - 4, pass == EdgeStyle::Highlighted ? e.color : "#555",
                           escape_markup(e.label));
    }
  for (const DiagramNode& n : nodes) {
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"1.5\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-weight=\"bold\" fill=\"{}\">{}</text>\n",
                       n.x, n.y, radius, n.dimmed ? "#eee" : "#fff", n.dimmed ? "#aaa" : "#333", n.x, n.y + 5,
                       n.dimmed ? "#999" : "#111", escape_markup(n.label));
    if (!n.note.empty())
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"12\" fill=\"{}\">{}</text>\n", n.x,
                         n.y + radius + 15, n.dimmed ? "#999" : "#333", escape_markup(n.note));
  }
  double y = height - 12.0 - 18.0 * static_cast<double>(notes.size() - (notes.empty() ? 0 : 1));
  for (const DiagramNote& note : notes) {
    svg += fmt::format("<text x=\"16\" y=\"{:.1f}\" fill=\"{}\">{}</text>\n", y, note.color, escape_markup(note.text));
    y += 18;
  }
  return svg + "</svg>\n";
}

void save_text(const std::string& path, const std::string& text) { io::write_file_atomic(path, text.data(), text.size()); }

// ---------------------------------------------------------------------------------
// Boxes on photos
Rgb class_color(int64_t k) {
  static const std::array<Rgb, 8> palette = {Rgb{214, 39, 40}, {31, 119, 180}, {44, 160, 44},  {148, 103, 189},
                                             {255, 127, 14},   {23, 150, 160}, {227, 60, 160}, {120, 90, 60}};
  return palette[static_cast<size_t>(std::max<int64_t>(k, 0)) % palette.size()];
}

void draw_box(io::Image& image, float x0, float y0, float x1, float y1, Rgb color, const std::string& label,
              int thickness, int text_height) {
  if (image.channels < 3) {  // gray (and gray + alpha) becomes RGB
    io::Image rgb{image.width, image.height, 3, {}};
    rgb.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.width; ++x)
        for (int c = 0; c < 3; ++c) rgb.at(y, x, c) = image.at(y, x, 0);
    image = std::move(rgb);
  }
  const uint8_t rgb[3] = {color.r, color.g, color.b};
  auto fill = [&](int ax, int ay, int bx, int by, const io::Image* ink) {  // [ax, bx) x [ay, by), clipped
    for (int y = std::max(ay, 0); y < std::min(by, image.height); ++y)
      for (int x = std::max(ax, 0); x < std::min(bx, image.width); ++x)
        for (int c = 0; c < 3; ++c) {
          // white text: the tab's color lightened by the glyph's ink (the text image is dark on white)
          const float dark = ink ? 1.f - static_cast<float>(ink->at(y - ay, x - ax, 0)) / 255.f : 0.f;
          image.at(y, x, c) = static_cast<uint8_t>(std::lround(rgb[c] + (255.f - rgb[c]) * dark));
        }
  };
  const int left = static_cast<int>(std::lround(std::min(x0, x1))), right = static_cast<int>(std::lround(std::max(x0, x1)));
  const int top = static_cast<int>(std::lround(std::min(y0, y1))), bottom = static_cast<int>(std::lround(std::max(y0, y1)));
  const int t = std::clamp(thickness, 1, 100);
  fill(left, top, right, top + t, nullptr);
  fill(left, bottom - t, right, bottom, nullptr);
  fill(left, top, left + t, bottom, nullptr);
  fill(right - t, top, right, bottom, nullptr);
  if (label.empty()) return;
  const io::Image words = text(printable(label), text_height);
  const int tab_x = std::clamp(left, 0, std::max(0, image.width - words.width));
  const int tab_y = top - words.height >= 0 ? top - words.height : std::max(top, 0);
  fill(tab_x, tab_y, tab_x + words.width, tab_y + words.height, &words);
}

io::Image at_aspect(const io::Image& input_sized, int64_t width, int64_t height) {
  const double aspect = static_cast<double>(width) / static_cast<double>(height);
  const double shown = static_cast<double>(input_sized.width) / input_sized.height;
  int64_t w = input_sized.width, h = input_sized.height;
  if (aspect > shown) w = std::lround(static_cast<double>(h) * aspect);
  else h = std::lround(static_cast<double>(w) / aspect);
  if (w == input_sized.width && h == input_sized.height) return input_sized;
  return to_image(upsample(from_image(input_sized), h, w, Interpolation::Bilinear));
}

}  // namespace tg::viz
