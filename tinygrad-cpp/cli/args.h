// A small command-line parser shared by tgc and the lessons.
//
//   tg::cli::Args args("tgc eval", "Evaluate a model on the Fashion-MNIST test set.");
//   args.option("model", "FILE", "weights file", /*required=*/true);
//   args.parse(argc, argv, 2);          // --help prints usage and exits 0;
//   std::string m = args.get("model");  // a bad flag prints usage and exits 2
#pragma once

#include <string>
#include <vector>

#include "tinygrad-cpp/explain/target.h"

namespace tg::cli {

class Args {
 public:
  Args(std::string usage_name, std::string summary);

  // --name VALUE. An empty default means "not given".
  Args& option(const std::string& name, const std::string& value_name, const std::string& help,
               bool required = false, const std::string& default_value = "");
  // --name with no value.
  Args& toggle(const std::string& name, const std::string& help);
  // Extra words after the flags (e.g. benchmark names).
  Args& positional(const std::string& value_name, const std::string& help);

  void parse(int argc, char** argv, int first = 1);

  bool has(const std::string& name) const;  // given, or has a default
  std::string get(const std::string& name) const;
  int64_t get_int(const std::string& name, int64_t min, int64_t max) const;
  // A float within [min, max], finite as a float (1e39 is not): a usage error otherwise.
  float get_float(const std::string& name, double min, double max) const;
  bool on(const std::string& name) const;  // for toggles
  const std::vector<std::string>& rest() const { return rest_; }

  std::string usage() const;       // the whole help: usage line, summary, every flag with its default
  std::string usage_line() const;  // "usage: tgc eval --model FILE [--data DIR]"
  // A usage error: "error: <message>", the usage line and a pointer to --help on stderr, exit 2.
  [[noreturn]] void fail(const std::string& message) const;

 private:
  struct Spec {
    std::string name, value_name, help, fallback;  // fallback: the default, what --help shows
    std::string value;                              // what was given
    bool required = false, is_toggle = false, given = false;
  };
  const Spec& spec(const std::string& name) const;
  std::string usage_name_, summary_, positional_name_, positional_help_;
  std::vector<Spec> specs_;
  std::vector<std::string> rest_;
};

// An output file (--png, --out) checked before any work: a usage error when its name does not
// end in `extension` (the format written); tg::Error when its folder is missing or not
// writable, or the name is a folder or another non-regular file. Nothing when not given.
void check_output(const Args& args, const std::string& flag, const std::string& extension);
// An output folder (--frames): it must exist and be writable. Nothing when not given.
void check_output_folder(const Args& args, const std::string& flag);
// --flag LAYER:CHANNEL or LAYER:CHANNEL:Y:X (the layer's name may hold ':'; the numbers are
// last); y = x = -1 when not given. A usage error otherwise.
explain::Neuron neuron(const Args& args, const std::string& flag);

}  // namespace tg::cli
