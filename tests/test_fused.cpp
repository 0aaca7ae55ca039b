// The fused no-grad forward (kernels/inverted_residual.cpp behind models::Graph::forward):
// the kernel against its naive twin, the Graph's fused forward against its op-by-op one, on
// small random blocks and on the photo model's real weights; nothing fused is ever recorded.
#include <cmath>

#include "tests/helpers.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/models/graph.h"
#include "tinygrad-cpp/models/models.h"

using namespace tg;

namespace {

const char* kPhotoModel = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";

float max_abs_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  float worst = 0.f;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(a.data()[i] - b.data()[i]));
  return worst;
}

float max_abs(const Tensor& a) {
  float worst = 0.f;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(a.data()[i]));
  return worst;
}

// One block's shape: the input, the hidden width (0: no expansion), the depthwise window and
// its padding before (the output size fixes the padding after), the output channels.
struct Case {
  int64_t batch, in_channels, height, width, hidden, kernel, stride, pad_top, pad_left, out_h, out_w, out_channels;
  bool residual = false, biases = true;
};

std::string describe(const Case& c) {
  return fmt::format("batch {}, {}x{}x{} -> hidden {} -> {}x{}x{}, {}x{} window, stride {}, padding {},{}{}", c.batch,
                     c.in_channels, c.height, c.width, c.hidden, c.out_channels, c.out_h, c.out_w, c.kernel, c.kernel,
                     c.stride, c.pad_top, c.pad_left, c.residual ? ", residual" : "");
}

// SAME padding as TensorFlow has it: the odd row or column goes after.
Case same(int64_t batch, int64_t in, int64_t h, int64_t w, int64_t hidden, int64_t kernel, int64_t stride, int64_t out) {
  const int64_t oh = (h + stride - 1) / stride, ow = (w + stride - 1) / stride;
  const int64_t pad_h = std::max<int64_t>(0, (oh - 1) * stride + kernel - h), pad_w = std::max<int64_t>(0, (ow - 1) * stride + kernel - w);
  return {batch, in, h, w, hidden, kernel, stride, pad_h / 2, pad_w / 2, oh, ow, out};
}
// The same block adding its input to its output (stride 1, as many channels out as in).
Case residual(Case c) {
  c.residual = true;
  return c;
}

// The block's tensors, random, and the kernel's view of them.
struct Block {
  Case c;
  Tensor x, expand_w, expand_b, dw_w, dw_b, project_w, project_b;
  Block(const Case& k, uint64_t seed) : c(k) {
    Generator gen(seed);
    const int64_t hidden = c.hidden ? c.hidden : c.in_channels;
    x = Tensor::uniform({c.batch, c.in_channels, c.height, c.width}, gen, -2.f, 2.f);
    if (c.hidden) {
      expand_w = Tensor::uniform({hidden, c.in_channels, 1, 1}, gen, -0.5f, 0.5f);
      if (c.biases) expand_b = Tensor::uniform({hidden}, gen, -1.f, 1.f);
    }
    dw_w = Tensor::uniform({hidden, 1, c.kernel, c.kernel}, gen, -0.5f, 0.5f);
    if (c.biases) dw_b = Tensor::uniform({hidden}, gen, -1.f, 1.f);
    project_w = Tensor::uniform({c.out_channels, hidden, 1, 1}, gen, -0.5f, 0.5f);
    if (c.biases) project_b = Tensor::uniform({c.out_channels}, gen, -1.f, 1.f);
  }
  static const float* data(const Tensor& t) { return t.defined() ? t.data() : nullptr; }
  kernels::InvertedResidual kernel() const {
    const int64_t hidden = c.hidden ? c.hidden : c.in_channels;
    return {.in_channels = c.in_channels,
            .expand_weight = data(expand_w),
            .expand_bias = data(expand_b),
            .depthwise = {hidden, c.height, c.width, 1, c.kernel, c.kernel, c.stride, c.stride, c.pad_top, c.pad_left,
                          c.out_h, c.out_w},
            .depthwise_weight = data(dw_w),
            .depthwise_bias = data(dw_b),
            .out_channels = c.out_channels,
            .project_weight = data(project_w),
            .project_bias = data(project_b),
            .residual = c.residual};
  }
  // The same block as a Graph of op nodes, the way the TFLite importer builds one.
  std::shared_ptr<models::Graph> graph() const {
    auto g = std::make_shared<models::Graph>();
    const int64_t pad_bottom = (c.out_h - 1) * c.stride + c.kernel - c.height - c.pad_top;
    const int64_t pad_right = (c.out_w - 1) * c.stride + c.kernel - c.width - c.pad_left;
    const Pair2 stride{c.stride, c.stride}, pad{c.pad_top, c.pad_left};
    const Pair2 extra{pad_bottom - c.pad_top, pad_right - c.pad_left};
    int v = 0;
    auto relu6_node = [&](const std::string& name, int input) {
      return g->add(name, "relu6", {input}, [](const std::vector<Tensor>& in) { return relu6(in[0]); });
    };
    if (c.hidden) {
      const Tensor w = expand_w, b = expand_b;
      v = g->add("block/expand", "conv2d", {0}, [=](const std::vector<Tensor>& in) { return conv2d(in[0], w, b); });
      g->set_convolution(v, {.weight = w, .bias = b});
      v = relu6_node("block/expand/relu6", v);
    }
    const Tensor dw = dw_w, dwb = dw_b, pw = project_w, pb = project_b;
    const int64_t groups = dw.dim(0);
    v = g->add("block/depthwise", "depthwise_conv2d", {v}, [=](const std::vector<Tensor>& in) {
      return conv2d(in[0], dw, dwb, stride, pad, 1, groups, extra);
    });
    g->set_convolution(v, {.weight = dw, .bias = dwb, .stride_h = c.stride, .stride_w = c.stride, .pad_top = c.pad_top,
                           .pad_left = c.pad_left, .pad_bottom = pad_bottom, .pad_right = pad_right, .groups = groups});
    v = relu6_node("block/depthwise/relu6", v);
    v = g->add("block/project", "conv2d", {v}, [=](const std::vector<Tensor>& in) { return conv2d(in[0], pw, pb); });
    g->set_convolution(v, {.weight = pw, .bias = pb});
    if (c.residual)
      v = g->add("block/add", "add", {v, 0}, [](const std::vector<Tensor>& in) { return add(in[0], in[1]); });
    g->set_output(v, models::Graph::Head::Identity);
    return g;
  }
};

// Odd sizes, stride 2 with TensorFlow's asymmetric SAME padding, widths that are not a
// multiple of the vector width (16, 8 or 4 floats), hidden widths that are not either, no
// expansion, no biases, a 5x5 window, batch 1 and 8.
std::vector<Case> cases() {
  std::vector<Case> all = {
      residual(same(1, 8, 7, 9, 48, 3, 1, 8)),
      residual(same(8, 8, 7, 9, 48, 3, 1, 8)),
      same(1, 6, 11, 13, 20, 3, 2, 10),  // SAME with stride 2: one row and column of padding, after
      same(8, 6, 10, 12, 36, 3, 2, 7),   // even sizes: no padding before, one after
      residual(same(2, 16, 19, 19, 96, 3, 1, 16)),
      same(1, 5, 23, 17, 0, 3, 1, 9),    // no expansion: the depthwise reads x
      same(3, 4, 9, 21, 24, 5, 2, 6),    // a 5x5 window
      same(1, 3, 1, 1, 18, 3, 1, 5),     // one pixel: every tap but the centre in the padding
      {.batch = 1, .in_channels = 4, .height = 8, .width = 8, .hidden = 32, .kernel = 3, .stride = 1, .pad_top = 1,
       .pad_left = 1, .out_h = 8, .out_w = 8, .out_channels = 4, .biases = false},  // PyTorch's symmetric padding, no biases
      {8, 24, 75, 75, 144, 3, 2, 0, 0, 38, 38, 32},  // expanded_conv_3's shape (bands of rows)
  };
  return all;
}

}  // namespace

TEST_SUITE("fused-inverted-residual") {
  TEST_CASE("the banded kernel equals its naive twin (textbook convolutions, whole maps)") {
    for (const Case& c : cases()) {
      INFO(describe(c));
      const Block b(c, 7);
      REQUIRE(kernels::inverted_residual_supported(b.kernel()));
      Tensor fast = Tensor::empty({c.batch, c.out_channels, c.out_h, c.out_w});
      Tensor naive = Tensor::empty(fast.shape());
      kernels::inverted_residual(b.x.data(), c.batch, b.kernel(), fast.data());
      kernels::inverted_residual_naive(b.x.data(), c.batch, b.kernel(), naive.data());
      // The naive twin sums each 1x1 convolution in double precision and the kernel in float,
      // in another order: float rounding, about 1e-7 of the sums' magnitudes, times the
      // hundreds of terms of the projection.
      CHECK(max_abs_difference(fast, naive) <= 1e-5f * (1.f + max_abs(naive)));
    }
  }

  TEST_CASE("Graph::forward under NoGrad fuses the block and equals the op-by-op forward; a recording forward never fuses") {
    for (const Case& c : cases()) {
      INFO(describe(c));
      const Block b(c, 11);
      auto g = b.graph();
      tape().clear();  // what earlier tests left
      Tensor op_by_op, fused;
      {
        NoGrad no_grad;
        models::NoFusion no_fusion;
        op_by_op = g->forward(b.x);
        CHECK(g->fused_blocks() == 0);
      }
      const Tensor inner = g->activation("block/depthwise/relu6");
      // Maps of at most kGemmFewColumns positions stay op by op (their 1x1 convolutions' gemms
      // read the weights in place and sum in another order than the bands).
      const bool fuses = kernels::inverted_residual_agrees_to_the_bit(b.kernel());
      CHECK(fuses == (c.height * c.width > kernels::kGemmFewColumns && c.out_h * c.out_w > kernels::kGemmFewColumns));
      {
        NoGrad no_grad;
        fused = g->forward(b.x);
        CHECK(g->fused_blocks() == (fuses ? 1 : 0));
      }
      CHECK(tape().empty());
      // The same kernels summing in the same order: equal up to float rounding of the
      // scalar path that takes hidden channels past the last whole vector.
      CHECK(max_abs_difference(fused, op_by_op) <= 1e-6f * (1.f + max_abs(op_by_op)));
      // An inner layer the fused pass skipped is computed when asked for.
      CHECK(max_abs_difference(g->activation("block/depthwise/relu6"), inner) == 0.f);
      // Recording: every op on the tape, nothing fused.
      Tensor leaf = b.x.detach().requires_grad_();
      const Tensor recorded = g->forward(leaf);
      CHECK(g->fused_blocks() == 0);
      CHECK(tape().size() == g->size());
      CHECK(max_abs_difference(recorded, op_by_op) == 0.f);
      tape().clear();
    }
  }

  TEST_CASE("forward_until a layer inside a block runs the block op by op; forward_after an inner layer after a fused pass") {
    const Case c = residual(same(2, 8, 9, 11, 40, 3, 1, 8));
    const Block b(c, 3);
    auto g = b.graph();
    NoGrad no_grad;
    Tensor expected;
    {
      models::NoFusion no_fusion;
      expected = g->forward(b.x);
    }
    const Tensor until = g->forward_until(b.x, "block/depthwise");
    CHECK(g->fused_blocks() == 0);
    CHECK(until.shape() == Shape{2, 40, 9, 11});
    g->forward(b.x);
    CHECK(g->fused_blocks() == 1);
    const Tensor inner = g->activation("block/expand/relu6");
    CHECK(max_abs_difference(g->forward_after(inner, "block/expand/relu6"), expected) == 0.f);
  }

  TEST_CASE("an inner value with a second reader stays op by op: the whole block, or the expansion only") {
    const Case c = same(1, 8, 7, 7, 32, 3, 1, 8);
    const Block b(c, 5);
    NoGrad no_grad;
    auto g = b.graph();  // values: 1 expand, 2 its relu6, 3 depthwise, 4 its relu6, 5 project
    g->add("head", "relu6", {3}, [](const std::vector<Tensor>& in) { return relu6(in[0]); });  // reads the depthwise
    g->forward(b.x);
    CHECK(g->fused_blocks() == 0);
    // A second head reading the expansion's relu6 (as the SSD's first box predictor does):
    // the block fuses from its depthwise on.
    auto h = b.graph();
    h->add("head", "relu6", {2}, [](const std::vector<Tensor>& in) { return relu6(in[0]); });
    const Tensor fused = h->forward(b.x);
    CHECK(h->fused_blocks() == 1);
    models::NoFusion no_fusion;
    CHECK(max_abs_difference(h->forward(b.x), fused) == 0.f);
  }

  TEST_CASE("the photo model: fused and op-by-op forwards agree on real weights, batch 1 and 8") {
    REQUIRE_MESSAGE(io::file_exists(kPhotoModel), "run make setup: it fetches the photo model");
    auto model = std::dynamic_pointer_cast<models::Graph>(models::load_model(kPhotoModel));
    REQUIRE(model);
    tape().clear();  // what earlier tests left
    Generator gen(2);
    for (int64_t batch : {1, 8}) {
      CAPTURE(batch);
      const Tensor x = Tensor::uniform({batch, 3, 300, 300}, gen, -1.f, 1.f);
      NoGrad no_grad;
      Tensor op_by_op, boxes, inner;
      {
        models::NoFusion no_fusion;
        model->forward(x);
        op_by_op = model->anchor_logits();
        boxes = model->box_encodings();
        inner = model->activation("expanded_conv_5/depthwise/relu6");
      }
      model->forward(x);
      // 17 blocks, all but the one whose expansion also feeds the first box predictor (that
      // one fuses from its depthwise on).
      CHECK(model->fused_blocks() == 17);
      // The same kernels summing in the same order: equal to the bit here (the tolerance
      // allows for a compiler contracting a scalar multiply-add one way and not the other).
      const Tensor logits = model->anchor_logits();
      CHECK(max_abs_difference(logits, op_by_op) <= 1e-5f * max_abs(op_by_op));
      CHECK(max_abs_difference(model->box_encodings(), boxes) <= 1e-5f * max_abs(boxes));
      CHECK(max_abs_difference(model->activation("expanded_conv_5/depthwise/relu6"), inner) <= 1e-5f * max_abs(inner));
      MESSAGE("batch ", batch, ": max |fused - op by op| of the class logits ", max_abs_difference(logits, op_by_op));
    }
    CHECK(tape().empty());
  }
}
