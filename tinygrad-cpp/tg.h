// tinygrad-cpp: include this one header for the whole library.
#pragma once

#include "tinygrad-cpp/gradcheck.h"
#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/ops.h"
#include "tinygrad-cpp/tape.h"
#include "tinygrad-cpp/tensor.h"
