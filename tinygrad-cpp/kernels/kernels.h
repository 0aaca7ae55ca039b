// Low-level numeric kernels on raw float pointers: gemm (a naive reference and a
// packed, blocked fast path), im2col / col2im for convolution, and a thread pool.
// The ops in ops/*.cpp are written on top of these.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>

namespace tg::kernels {

// C = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
// op(A) is M x K, op(B) is K x N, C is M x N; lda/ldb/ldc are row strides.
// With beta == 0, C is overwritten (old NaNs in C do not leak through).
void gemm_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc);
// row_bias (optional, M floats): C[i][j] also gets row_bias[i], added where the tile of C is
// written, so a 1x1 convolution's bias costs no extra pass over its output.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc, const float* row_bias = nullptr);
// With few columns (the convolutions on maps of 3x3 and smaller; 2x2 with AVX2) gemm reads
// the weight in place and skips the blocked path's packing of op(B) into slivers of 2
// vectors of columns (gemm.cpp): a dot product per element when op(A) = A, outer products
// when op(A) = A^T, up to kGemmFewColumns columns. Where the blocked path itself reads op(A) in place (at most 8
// slivers of columns) it wins from about 16 columns with AVX-512 and 8 with AVX2. The forms'
// time over the blocked path's, 2 threads, weight cold: 256 x 9 x 1152 0.45, 1152 x 9 x 256
// (A^T) 0.54; at 16 columns 0.9-1.3, at 24 1.3-1.6 (AVX2: at 8 columns 0.8-1.3, at 16
// 1.0-1.8). An element's sum depends only on its row of op(A), its column of op(B), K and the
// path: the same for any M and thread count.
#if defined(__AVX512F__)
constexpr int64_t kGemmFewColumns = 12;
#else
constexpr int64_t kGemmFewColumns = 6;
#endif
// gemm on the blocked path whatever the shape: each element summed over k in order, in panels
// of 256, for any N; what the fused inverted-residual block needs to agree to the bit with op by op.
void gemm_blocked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                  const float* row_bias = nullptr);

// The sum of n floats, VW at a time (the same order every run).
float sum(const float* values, int64_t n);

// Geometry of one 2-D convolution or pooling window sweep over one image.
struct ConvGeometry {
  int64_t channels, height, width;         // input image C, H, W
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  // Padding below the last row and right of the last column on top of pad_h and pad_w
  // (TensorFlow's SAME padding with stride 2 puts its odd row and column there).
  int64_t extra_bottom = 0, extra_right = 0;
  int64_t out_h() const { return (height + 2 * pad_h + extra_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w + extra_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  bool symmetric() const { return extra_bottom == 0 && extra_right == 0; }
};

// im2col: image [C,H,W] -> columns [C*kh*kw, out_h*out_w]; padding reads as 0.
// `row_stride` is the distance between rows of `columns` (out_h*out_w when packed;
// larger when several images share one column matrix side by side).
void im2col(const float* image, const ConvGeometry& g, float* columns, int64_t row_stride);
// The same for output rows [oy_begin, oy_end) only: columns [C*kh*kw, (oy_end-oy_begin)*out_w],
// so threads can each build the columns of their own band of output rows.
void im2col_rows(const float* image, const ConvGeometry& g, int64_t oy_begin, int64_t oy_end, float* columns,
                 int64_t row_stride);
// col2im: the adjoint of im2col; ADDS each column entry back into image [C,H,W].
void col2im(const float* columns, const ConvGeometry& g, float* image, int64_t row_stride);
// The same adding only into image rows [row_begin, row_end) of the C*H rows (row c*H + y),
// each pixel's entries in col2im's order: threads that take ranges of rows never write the
// same pixel, and every sum has col2im's bits.
void col2im_rows(const float* columns, const ConvGeometry& g, int64_t row_begin, int64_t row_end, float* image,
                 int64_t row_stride);

// The direct, seven-loop convolution of one batch: the definition the tests compare every
// fast path against. x [N,C,H,W], w [O,C/groups,kh,kw], bias [O] or null.
void conv2d_reference(const float* x, int64_t batch, const ConvGeometry& g, const float* weight,
                   const float* bias, int64_t out_channels, int64_t groups, float* out);

// The direct convolution of one image with stride 1 and no dilation (conv_direct.cpp):
// out [out_channels, H+2ph-kh+1, W+2pw-kw+1] = bias + w * image, where the weight of
// output channel o, input channel c, tap (i, j) is
// weight[o*out_stride + c*in_stride + i*row_stride + j*col_stride] (strides may be negative,
// so a flipped, transposed weight needs no copy). bias may be null. Uses the threads.
struct DirectConv {
  int64_t channels, height, width;  // the image
  int64_t out_channels, kernel_h, kernel_w, pad_h, pad_w;
  int64_t out_stride, in_stride, row_stride, col_stride;
};
void conv2d_stride1(const float* image, const DirectConv& d, const float* weight, const float* bias, float* out);
// The same convolution for a 3x3 kernel by Winograd's F(2x2, 3x3) (winograd.cpp): 16 gemms
// over transformed tiles, 2.25 times fewer multiply-adds; on large maps F(4x4, 3x3), 4 times
// fewer; equal up to rounding. Uses the threads. winograd_pays says where it beats the
// direct kernel (many channels, large maps).
bool winograd_pays(const DirectConv& d);
void conv3x3_winograd(const float* image, const DirectConv& d, const float* weight, const float* bias, float* out);
// Its weight gradient over a batch: dw (laid out by d's strides) += the sum over the images
// [batch, channels, H, W] and their output gradients grads [batch, out_channels, oh, ow].
// Returns false, doing nothing, where it has no fast path (kernel_w > 7, rows wider than
// 64): the caller then takes im2col + gemm.
bool conv2d_stride1_weight_grad(const float* images, const float* grads, int64_t batch, const DirectConv& d, float* dw);

// The engine's convolution of a batch (conv.cpp): the same result as conv2d_reference,
// by whichever fast path fits (direct kernels for stride 1, im2col + gemm otherwise).
void conv2d_forward(const float* x, int64_t batch, const ConvGeometry& g, const float* weight, const float* bias,
                    int64_t out_channels, int64_t groups, float* out);
// The fast paths of conv2d's backward: dx = the input gradient, written over dx; dW += the
// weight gradient of the batch. Each returns false, doing nothing, where no fast path
// applies, and the caller takes im2col + gemm. The paths: a 1x1 convolution as a gemm;
// depthwise convolution (depthwise.cpp); stride 1 by the direct kernel (dx: dY convolved
// with the flipped, transposed weight; dW: kernels up to 7 wide on rows up to 64 wide);
// dx of one large image with a stride as one gemm the threads share, then col2im.
bool conv2d_backward_input_fast(const float* grad_output, int64_t batch, const ConvGeometry& g,
                                const float* weight, int64_t out_channels, int64_t groups, float* dx);
bool conv2d_backward_weight_fast(const float* x, const float* grad_output, int64_t batch, const ConvGeometry& g,
                                 int64_t out_channels, int64_t groups, float* dw);

// Depthwise convolution (depthwise.cpp): groups = channels, each input channel c convolved
// with `multiplier` kernels into output channels c*m ... c*m+m-1. x [N,C,H,W], weight
// [C*m, 1, kh, kw], out [N, C*m, out_h, out_w]. Padding may differ before and after (pad_top,
// pad_left are the zeros before; the output size fixes the rest), as TensorFlow's SAME
// padding does with a stride of 2. No dilation. The naive and fast versions agree; the
// input gradient is written over dx, the weight gradient added into dw.
struct Depthwise {
  int64_t channels, height, width, multiplier;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w;
};
bool depthwise_supported(const Depthwise& d);  // the fast versions' limits (at most 64 taps)
void depthwise_conv2d_naive(const float* x, int64_t batch, const Depthwise& d, const float* weight, const float* bias,
                            float* out);
void depthwise_conv2d(const float* x, int64_t batch, const Depthwise& d, const float* weight, const float* bias,
                      float* out);
void depthwise_conv2d_backward_input_naive(const float* grad_output, int64_t batch, const Depthwise& d,
                                           const float* weight, float* dx);
void depthwise_conv2d_backward_input(const float* grad_output, int64_t batch, const Depthwise& d, const float* weight,
                                     float* dx);
void depthwise_conv2d_backward_weight_naive(const float* x, const float* grad_output, int64_t batch,
                                            const Depthwise& d, float* dw);
void depthwise_conv2d_backward_weight(const float* x, const float* grad_output, int64_t batch, const Depthwise& d,
                                      float* dw);

// MobileNetV2's inverted-residual block as one kernel (inverted_residual.cpp), for forwards
// that record nothing: e = relu6(We x + be) (no expansion: e = x), d = relu6(depthwise(e)),
// y = Wp d + bp, plus x when `residual`. x [N, in_channels, H, W] with H, W the depthwise's
// height and width; y [N, out_channels, out_h, out_w]. Weights: We [hidden, in_channels],
// the depthwise's [hidden, kh, kw] (multiplier 1), Wp [out_channels, hidden]; biases may be null.
// inverted_residual runs each image in bands of rows whose e and d stay in cache, and agrees to
// the bit with the engine's op-by-op forward where inverted_residual_agrees_to_the_bit says; the
// naive twin is that forward on the textbook kernels.
struct InvertedResidual {
  int64_t in_channels = 0;
  const float* expand_weight = nullptr;  // null: no expansion (depthwise.channels == in_channels)
  const float* expand_bias = nullptr;
  Depthwise depthwise{};  // channels: the hidden width
  const float* depthwise_weight = nullptr;
  const float* depthwise_bias = nullptr;
  int64_t out_channels = 0;
  const float* project_weight = nullptr;
  const float* project_bias = nullptr;
  bool residual = false;
};
bool inverted_residual_supported(const InvertedResidual& b);
// Whether the op-by-op forward sums as the bands do (maps of more than kGemmFewColumns
// positions), so the two agree to the bit: Graph::forward fuses a block only then.
bool inverted_residual_agrees_to_the_bit(const InvertedResidual& b);
void inverted_residual(const float* x, int64_t batch, const InvertedResidual& b, float* out);
void inverted_residual_naive(const float* x, int64_t batch, const InvertedResidual& b, float* out);

// 2x2 max-pooling with stride 2 and no padding (pool.cpp), planes [planes, H, W] ->
// [planes, H/2, W/2]. Backward sends each window's gradient to its first maximum: it
// writes every pixel a window covers and leaves an odd last row or column alone (so dx
// must start zeroed). The naive and fast versions give equal results.
void max_pool2x2_naive(const float* x, int64_t planes, int64_t height, int64_t width, float* out);
void max_pool2x2(const float* x, int64_t planes, int64_t height, int64_t width, float* out);
void max_pool2x2_backward_naive(const float* x, const float* grad_output, int64_t planes, int64_t height, int64_t width,
                                float* dx);
void max_pool2x2_backward(const float* x, const float* grad_output, int64_t planes, int64_t height, int64_t width,
                          float* dx);

// ---- threads ----
// Number of threads parallel_for uses: TG_NUM_THREADS, or all cores.
int num_threads();
void set_num_threads(int n);
// How fn may be cut. Fixed: a call made while the pool is busy, during a busy-machine spell
// or under CallerOnly runs the same chunks one after another on the calling thread (a body
// that sums a partial result per chunk gets the same bits however busy the machine is). Free:
// fn gives the same results however [begin, end) is cut (each output written by one call,
// computed the same way wherever the cut falls), so on the caller alone it runs in one piece
// and each chunk's setup is paid once.
enum class Split { Fixed, Free };
// Runs fn(chunk_begin, chunk_end) over [begin, end) split into at most num_threads()
// chunks of at least `grain` items. The chunks depend only on the range, the grain and
// num_threads(); nested calls run their range in one piece. On the caller alone (see Split)
// a result never depends on timing. Exceptions from fn are rethrown on the caller.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn, Split split = Split::Fixed);
// True inside a chunk of parallel_for (where a nested parallel_for runs serially).
bool in_parallel_region();
// While alive, parallel_for calls made on this thread run on it alone (in the same chunks):
// what a busy machine does, on purpose (tests compare the two).
class CallerOnly {
 public:
  CallerOnly();
  ~CallerOnly();
  CallerOnly(const CallerOnly&) = delete;
  CallerOnly& operator=(const CallerOnly&) = delete;
};

// How parallel_for tells that the machine is busy (thread_pool.cpp says why): fed each
// call's timing and the process's count of preemptions, it answers whether calls run on the
// caller alone for now. Times and counts are passed in, so a test drives it without a clock.
class BusySpells {
 public:
  using Clock = std::chrono::steady_clock;
  // A call whose caller's own share took under kSmallShare and which then waited more than
  // kStall for a worker starts a spell of kSpell of serial calls. (Doubling the spell for
  // stalls in a row was tried: under heavy load batch-1 maps got 1.4-1.8x slower.)
  static constexpr Clock::duration kSmallShare = std::chrono::microseconds(100);
  static constexpr Clock::duration kStall = std::chrono::microseconds(250);
  static constexpr Clock::duration kSpell = std::chrono::milliseconds(5);
  // Contention: the process's threads were preempted (involuntary context switches, which
  // happen only when more threads want the cores than there are) kPreemptions times within
  // kWindow. Until kWindow after the last such count, calls run on the caller alone while the
  // caller's shares have lately been small: the largest of the recent ones, each counting 7/8
  // less per call since, under kSmallShare. For such calls a worker's time slice lost to a
  // neighbour costs more than they can gain; a large call (a training step's convolutions)
  // keeps the next twenty or so sharing. Idle, nothing preempts the process: nothing changes.
  static constexpr int64_t kPreemptions = 2;
  static constexpr Clock::duration kWindow = std::chrono::milliseconds(20);

  // One call: the caller's share of it took `own` (a call run on the caller alone: its time
  // per chunk), then it waited `wait` for the workers' chunks, and it ended at `end`.
  // `preempted`: the process was preempted while it ran, so `own` may hold a neighbour's time
  // slice (milliseconds) and says nothing of the call's size: under contention a small call
  // taken for a large one would share, and a worker stopped in its chunk holds the caller.
  struct Call {
    Clock::duration own{}, wait{};
    Clock::time_point end{};
    bool preempted = false;
  };
  void after_call(const Call& call) {
    if (call.own < kSmallShare && call.wait > kStall) serial_until_ = call.end + kSpell;
    const Clock::duration own = call.preempted ? Clock::duration{} : call.own;
    typical_share_ = std::max<Clock::duration>(own, typical_share_ * 7 / 8);
  }
  // The process's preemptions so far (getrusage's ru_nivcsw), read at `now`; returns how many
  // are new since the last reading.
  int64_t preemptions(int64_t total, Clock::time_point now) {
    if (now - window_start_ > kWindow) {
      window_start_ = now;
      in_window_ = 0;
    }
    const int64_t fresh = seen_ >= 0 ? total - seen_ : 0;
    in_window_ += fresh;
    seen_ = total;
    if (in_window_ >= kPreemptions) contended_until_ = now + kWindow;
    return fresh;
  }
  bool serial(Clock::time_point now) const {
    return now < serial_until_ || (now < contended_until_ && typical_share_ < kSmallShare);
  }

 private:
  Clock::time_point serial_until_{}, contended_until_{}, window_start_{};
  Clock::duration typical_share_ = kSmallShare;  // starts neither small nor large
  int64_t seen_ = -1, in_window_ = 0;
};

}  // namespace tg::kernels
