#include "tinygrad-cpp/course/assignment.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <set>
#include <regex>
#include <sstream>

#include "tinygrad-cpp/data/io.h"

namespace tg::assignment {

namespace fs = std::filesystem;

std::vector<Task> load_tasks(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_file(path, 1 << 20);
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  std::vector<Task> tasks;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Task t;
    if (!(fields >> t.id >> t.points) || t.points < 0)
      throw Error(fmt::format("{}:{}: expected 'task-id points description'", path, number));
    std::getline(fields >> std::ws, t.description);
    for (const Task& other : tasks)
      if (other.id == t.id) throw Error(fmt::format("{}:{}: task '{}' listed twice", path, number, t.id));
    tasks.push_back(t);
  }
  if (tasks.empty()) throw Error(path + ": no tasks");
  return tasks;
}

namespace {
std::string c_string(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}
}  // namespace

std::string strip_solutions(const std::string& source, const std::string& label, const std::vector<Task>& tasks) {
  static const std::regex begin(R"(^(\s*)// BEGIN SOLUTION\(([^)]*)\)\s*$)");
  static const std::regex end(R"(^\s*// END SOLUTION\s*$)");
  static const std::regex hint(R"(^\s*// HINT:\s?(.*)$)");
  static const std::regex stray(R"(^\s*//\s*(BEGIN|END) SOLUTION)");
  std::istringstream in(source);
  std::string out, line, indent, task_id, hints;
  int open_line = 0;
  for (int number = 1; std::getline(in, line); ++number) {
    std::smatch m;
    if (std::regex_match(line, m, begin)) {
      if (open_line)
        throw Error(fmt::format("{}:{}: BEGIN SOLUTION({}) inside the region of task '{}' opened at line {} (regions do not nest)",
                                label, number, m[2].str(), task_id, open_line));
      task_id = m[2];
      bool known = false;
      for (const Task& t : tasks) known |= t.id == task_id;
      if (!known) throw Error(fmt::format("{}:{}: unknown task '{}' (tests/tasks.txt lists the tasks)", label, number, task_id));
      indent = m[1];
      hints.clear();
      open_line = number;
      continue;
    }
    if (std::regex_match(line, end)) {
      if (!open_line) throw Error(fmt::format("{}:{}: END SOLUTION without a BEGIN SOLUTION", label, number));
      std::string description;
      for (const Task& t : tasks)
        if (t.id == task_id) description = t.description;
      out += fmt::format("{}// TODO({}): {}\n", indent, task_id, hints.empty() ? description : hints);
      out += fmt::format("{}throw tg::NotImplemented(\"{}: {}\");\n", indent, task_id, c_string(description));
      open_line = 0;
      continue;
    }
    if (open_line) {
      if (std::regex_match(line, m, hint)) {
        if (!hints.empty()) hints += ' ';
        hints += m[1].str();
      }
      continue;  // solution text never reaches the copy
    }
    if (std::regex_search(line, stray))
      throw Error(fmt::format("{}:{}: malformed solution marker (expected '// BEGIN SOLUTION(task-id)' or '// END SOLUTION' alone on the line)",
                              label, number));
    out += line + "\n";
  }
  if (open_line) throw Error(fmt::format("{}:{}: BEGIN SOLUTION({}) is never closed by END SOLUTION", label, open_line, task_id));
  return out;
}

void make_student_copy(const std::string& root, const std::string& destination, const std::vector<Task>& tasks) {
  const std::vector<std::string> entries = {"tinygrad-cpp", "lessons", "tests", "assets", ".ci", "Makefile", "README.md", ".gitignore", "LICENSE"};
  // First pass: read and transform everything, so a bad marker anywhere writes nothing.
  std::map<std::string, std::string> files;  // relative path -> contents
  std::set<std::string> has_marker, has_suite, has_probe;
  for (const std::string& entry : entries) {
    const fs::path top = fs::path(root) / entry;
    if (!fs::exists(top)) continue;
    std::vector<fs::path> paths;
    if (fs::is_directory(top)) {
      for (const auto& f : fs::recursive_directory_iterator(top))
        if (f.is_regular_file()) paths.push_back(f.path());
    } else {
      paths.push_back(top);
    }
    for (const fs::path& path : paths) {
      const std::string relative = fs::relative(path, root).string();
      const std::vector<uint8_t> bytes = io::read_file(path.string(), uint64_t{64} << 20);
      std::string text(bytes.begin(), bytes.end());
      const std::string extension = path.extension().string();
      if (extension == ".cpp" || extension == ".h") {
        const std::string stripped = strip_solutions(text, relative, tasks);
        for (const Task& t : tasks) {  // what each task has, for the check below
          // A region cut from the library or a lesson left its throw behind (tests hold no regions).
          if (relative.rfind("tests/", 0) != 0 && stripped.find("throw tg::NotImplemented(\"" + t.id + ": ") != std::string::npos)
            has_marker.insert(t.id);
          if (relative.rfind("tests/", 0) == 0 && text.find("TEST_SUITE(\"" + t.id + "\")") != std::string::npos)
            has_suite.insert(t.id);
          if (relative.rfind("tests/", 0) == 0 && text.find("TASK_PROBE(\"" + t.id + "\")") != std::string::npos)
            has_probe.insert(t.id);
        }
        text = stripped;
      }
      files[relative] = std::move(text);
    }
  }
  // Every listed task must be cut somewhere, graded by a suite of its name, and probed (so
  // tests that need it can wait for it): otherwise the copy would grade nothing for it.
  for (const Task& t : tasks) {
    std::string missing;
    if (!has_marker.count(t.id)) missing += " a // BEGIN SOLUTION(" + t.id + ") marker in the sources,";
    if (!has_suite.count(t.id)) missing += " a TEST_SUITE(\"" + t.id + "\") in tests/,";
    if (!has_probe.count(t.id)) missing += " a TASK_PROBE(\"" + t.id + "\") in tests/,";
    if (!missing.empty()) {
      missing.pop_back();
      throw Error(fmt::format("tests/tasks.txt: task '{}' lacks{}", t.id, missing));
    }
  }
  // The copy's README is the students' guide, with the task table where its placeholder line is.
  const std::string guide = "tinygrad-cpp/course/STUDENT_README.md", placeholder = "<!-- task table -->\n";
  const size_t at = files.count(guide) ? files[guide].find(placeholder) : std::string::npos;
  if (at == std::string::npos)
    throw Error(fmt::format("{}: missing, or lacks the line '<!-- task table -->' where the task table goes", guide));
  std::string table = "| task | points | what to implement |\n|---|---|---|\n";
  for (const Task& t : tasks) table += fmt::format("| {} | {} | {} |\n", t.id, t.points, t.description);
  files["README.md"] = std::string(files[guide]).replace(at, placeholder.size(), table);
  // The instructors' guide (markers, make student, "In this tree: 100/100") is not the students'.
  files.erase("tinygrad-cpp/course/README.md");
  files.erase(guide);
  // A cut region leaves the names set up for it (sizes, pointers, a lambda) unused until the
  // student writes the code: GCC would greet them with a page of unused-variable warnings.
  if (files.count("Makefile"))
    files["Makefile"] +=
        "\n# Added by make student: the cut regions leave the variables set up for them unused until the\n"
        "# TODOs are written, so these two warnings are off in this copy.\n"
        "CXXFLAGS += -Wno-unused-variable -Wno-unused-but-set-variable\n";
  for (const auto& [relative, text] : files) {
    const fs::path target = fs::path(destination) / relative;
    fs::create_directories(target.parent_path());
    io::write_file_atomic(target.string(), text.data(), text.size());
  }
}

}  // namespace tg::assignment
