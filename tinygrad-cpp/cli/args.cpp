#include "tinygrad-cpp/cli/args.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

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

}  // namespace tg::cli
