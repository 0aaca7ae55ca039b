// Explaining a model: everything in explain/, by family.
//   target.h      what is explained (a class, a neuron, a detection) and how it is seeded
//   gradients.h   saliency, input x gradient, SmoothGrad, integrated gradients
//   rule_based.h  guided backprop, deconvnet
//   cam.h         CAM, Grad-CAM, guided Grad-CAM
//   occlusion.h   occlusion sensitivity
//   ascent.h      synthesis: the gradient-ascent engine, its objectives, feature inversion
//   image.h       synthesis: image parameterizations (decorrelated image, random transforms)
//   top_patches.h the data's answer: receptive fields, the patches that excite a unit most
//   methods.h     the method table tgc and the explorer read
#pragma once

#include "tinygrad-cpp/explain/ascent.h"
#include "tinygrad-cpp/explain/cam.h"
#include "tinygrad-cpp/explain/gradients.h"
#include "tinygrad-cpp/explain/image.h"
#include "tinygrad-cpp/explain/methods.h"
#include "tinygrad-cpp/explain/occlusion.h"
#include "tinygrad-cpp/explain/rule_based.h"
#include "tinygrad-cpp/explain/target.h"
#include "tinygrad-cpp/explain/top_patches.h"
