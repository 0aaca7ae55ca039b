#include "tinygrad-cpp/cli/args.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <unistd.h>

#include "tinygrad-cpp/core/tensor.h"

namespace tg::cli {

Args::Args(std::string usage_name, std::string summary) : usage_name_(std::move(usage_name)), summary_(std::move(summary)) {
  toggle("help", "show this help and exit");
}

Args& Args::option(const std::string& name, const std::string& value_name, const std::string& help, bool required,
                   const std::string& default_value) {
  specs_.push_back({name, value_name, help, default_value, "", required, false, false});
  return *this;
}

Args& Args::toggle(const std::string& name, const std::string& help) {
  specs_.push_back({name, "", help, "", "", false, true, false});
  return *this;
}

Args& Args::positional(const std::string& value_name, const std::string& help) {
  positional_name_ = value_name;
  positional_help_ = help;
  return *this;
}

std::string Args::usage_line() const {
  std::string line = "usage: " + usage_name_;
  for (const Spec& s : specs_) {
    if (s.name == "help") continue;
    const std::string flag = "--" + s.name + (s.is_toggle ? "" : " " + s.value_name);
    line += s.required ? " " + flag : " [" + flag + "]";
  }
  if (!positional_name_.empty()) line += " [" + positional_name_ + "...]";
  return line;
}

std::string Args::usage() const {
  std::string details;
  for (const Spec& s : specs_) {
    if (s.name == "help") continue;
    const std::string flag = "--" + s.name + (s.is_toggle ? "" : " " + s.value_name);
    std::string help = s.help;
    if (!s.fallback.empty() && !s.is_toggle) help += " (default: " + s.fallback + ")";
    details += fmt::format("  {:<24} {}\n", flag, help);
  }
  if (!positional_name_.empty()) details += fmt::format("  {:<24} {}\n", positional_name_, positional_help_);
  details += fmt::format("  {:<24} {}\n", "--help", "show this help and exit");
  return usage_line() + "\n\n" + summary_ + "\n\n" + details;
}

void Args::fail(const std::string& message) const {
  std::fprintf(stderr, "error: %s\n%s\nrun `%s --help` for every flag\n", printable(message).c_str(), usage_line().c_str(),
               usage_name_.c_str());
  std::exit(2);
}

void Args::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string word = argv[i];
    if (word.rfind("--", 0) != 0) {
      if (positional_name_.empty()) fail("unexpected argument '" + word + "'");
      rest_.push_back(word);
      continue;
    }
    std::string name = word.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    Spec* found = nullptr;
    for (Spec& s : specs_)
      if (s.name == name) found = &s;
    if (!found) fail("unknown flag --" + name);
    if (found->is_toggle) {
      if (inline_value) fail("--" + name + " takes no value");
      found->given = true;
      if (name == "help") {
        std::fputs(usage().c_str(), stdout);
        std::exit(0);
      }
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) fail("--" + name + " needs a value (" + found->value_name + ")");
      value = argv[++i];
    }
    found->value = value;
    found->given = true;
  }
  for (const Spec& s : specs_)
    if (s.required && !s.given) fail("--" + s.name + " is required");
}

const Args::Spec& Args::spec(const std::string& name) const {
  for (const Spec& s : specs_)
    if (s.name == name) return s;
  throw Error("args: no flag --" + name + " was declared");
}

bool Args::has(const std::string& name) const {
  const Spec& s = spec(name);
  return s.given || !s.fallback.empty();
}

std::string Args::get(const std::string& name) const {
  const Spec& s = spec(name);
  return s.given ? s.value : s.fallback;
}

bool Args::on(const std::string& name) const { return spec(name).given; }

int64_t Args::get_int(const std::string& name, int64_t min, int64_t max) const {
  const std::string text = get(name);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0) fail(fmt::format("--{}: '{}' is not an integer", name, text));
  if (v < min || v > max) fail(fmt::format("--{}: {} is outside [{}, {}]", name, v, min, max));
  return v;
}

float Args::get_float(const std::string& name, double min, double max) const {
  const std::string text = get(name);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  // Finite as the float it becomes: 1e39 parses as a double but is infinity as a float.
  if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(static_cast<float>(v)))
    fail(fmt::format("--{}: '{}' is not a finite number", name, text));
  if (v < min || v > max) fail(fmt::format("--{}: {} is outside [{}, {}]", name, v, min, max));
  return static_cast<float>(v);
}

void check_output(const Args& args, const std::string& flag, const std::string& extension) {
  if (!args.has(flag)) return;
  const std::string name = args.get(flag);
  if (!name.ends_with(extension) || name.size() == extension.size())
    args.fail(fmt::format("--{}: '{}' must end in {} (that is the format written)", flag, name, extension));
  namespace fs = std::filesystem;
  const fs::path path(name);
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code error;
  if (!fs::is_directory(folder, error) || access(folder.c_str(), W_OK) != 0)
    throw Error(fmt::format("--{}: cannot write '{}': folder '{}' is missing or not writable", flag, name, folder.string()));
  if (fs::exists(fs::symlink_status(path, error)) && !fs::is_regular_file(fs::symlink_status(path, error)))
    throw Error(fmt::format("--{}: '{}' exists and is not a regular file", flag, name));
}

void check_output_folder(const Args& args, const std::string& flag) {
  if (!args.has(flag)) return;
  const std::string name = args.get(flag);
  std::error_code error;
  if (name.empty() || !std::filesystem::is_directory(name, error) || access(name.c_str(), W_OK) != 0)
    throw Error(fmt::format("--{}: cannot write into '{}': it is not a writable folder", flag, name));
}

explain::Neuron neuron(const Args& args, const std::string& flag) {
  const std::string text = args.get(flag);
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  auto number = [&](const std::string& word) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(word.c_str(), &end, 10);
    if (word.empty() || *end != '\0' || errno != 0 || v < 0)
      args.fail(fmt::format("--{}: '{}' is not LAYER:CHANNEL[:Y:X] with whole numbers >= 0", flag, text));
    return static_cast<int64_t>(v);
  };
  const size_t numbers = parts.size() >= 4 && !parts[parts.size() - 3].empty() &&
                                 std::isdigit(static_cast<unsigned char>(parts[parts.size() - 3][0]))
                             ? 3
                             : 1;
  if (parts.size() < numbers + 1 || parts.front().empty())
    args.fail(fmt::format("--{}: '{}' is not LAYER:CHANNEL[:Y:X]", flag, text));
  explain::Neuron n;
  for (size_t k = 0; k + numbers < parts.size(); ++k) n.layer += (k ? ":" : "") + parts[k];
  n.channel = number(parts[parts.size() - numbers]);
  if (numbers == 3) n.y = number(parts[parts.size() - 2]), n.x = number(parts.back());
  return n;
}

}  // namespace tg::cli
