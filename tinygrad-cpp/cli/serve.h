// `tgc serve`: the explorer page (tinygrad-cpp/serve/).
#pragma once

namespace tg::cli {
int command_serve(int argc, char** argv);
}
