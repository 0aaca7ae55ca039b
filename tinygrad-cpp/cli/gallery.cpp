// gallery: writes out/index.html from the lessons' out/NN_name/lesson.json files.
//   build/bin/gallery [OUT_DIR]      (default: out)
#include <cstdio>

#include "tinygrad-cpp/course/lesson.h"

int main(int argc, char** argv) {
  try {
    tg::lesson::write_gallery(argc > 1 ? argv[1] : "out");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", tg::printable(e.what()).c_str());
    return 1;
  }
}
