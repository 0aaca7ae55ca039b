// make_student: writes the student copy of the project (see tinygrad-cpp/course/assignment.h).
//   build/bin/make_student [DESTINATION]      (default: build/student; run from the project root)
#include <fmt/format.h>

#include <cstdio>

#include "tinygrad-cpp/course/assignment.h"
#include "tinygrad-cpp/core/tensor.h"

int main(int argc, char** argv) {
  const std::string destination = argc > 1 ? argv[1] : "build/student";
  try {
    const auto tasks = tg::assignment::load_tasks("tests/tasks.txt");
    tg::assignment::make_student_copy(".", destination, tasks);
    fmt::print("wrote the student copy to {} ({} tasks cut out); build it there with `make test` or `make grade`\n",
               destination, tasks.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", tg::printable(e.what()).c_str());
    return 1;
  }
}
