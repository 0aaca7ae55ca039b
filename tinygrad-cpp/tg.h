// tinygrad-cpp: include this one header for the whole library.
#pragma once

#include "tinygrad-cpp/core/gradcheck.h"
#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/core/ops.h"
#include "tinygrad-cpp/core/tape.h"
#include "tinygrad-cpp/core/tensor.h"
