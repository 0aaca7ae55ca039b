// Course assignments: the repository is the reference solution; a student copy has
// the marked parts cut out.
//
//   // BEGIN SOLUTION(task-id)
//   // HINT: one or more lines of hint, which become the TODO text
//   ...reference code...
//   // END SOLUTION
//
// becomes, with the indentation of the BEGIN line,
//
//   // TODO(task-id): <hints>
//   throw tg::NotImplemented("task-id: <what to implement, from tests/tasks.txt>");
#pragma once

#include <string>
#include <vector>

namespace tg::assignment {

struct Task {
  std::string id;
  int points = 0;
  std::string description;  // what to implement
};

// Reads tests/tasks.txt: "id points description" per line, '#' comments.
std::vector<Task> load_tasks(const std::string& path);

// The student version of one source file. Unbalanced, nested or unknown markers throw
// tg::Error "<label>:<line>: <what is wrong>".
std::string strip_solutions(const std::string& source, const std::string& label, const std::vector<Task>& tasks);

// Copies the project at `root` (tinygrad-cpp/, lessons/, tests/, assets/, .ci/, Makefile,
// README.md, .gitignore, LICENSE) to `destination`, stripping every .h/.cpp file; the copy's
// README.md is tinygrad-cpp/course/STUDENT_README.md with the task table filled in, and the
// instructors' guide (tinygrad-cpp/course/README.md) is left out. Checks every file before
// writing any.
void make_student_copy(const std::string& root, const std::string& destination, const std::vector<Task>& tasks);

}  // namespace tg::assignment
