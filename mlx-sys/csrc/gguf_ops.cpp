// Two MLX primitives over GGUF-quantized weights (one row of blocks per output feature, as
// uint8, in the file's layout or mlx-sys's interleaved one): a product `x · Wᵀ` and a gather of
// dequantized rows (embedding lookups). They are graph nodes like any MLX operation, so a decode step stays one
// lazy graph evaluated once. The arithmetic lives in Rust (src/quant): the primitive receives it
// as a function pointer, which spares the static library a link-order dependency on the crate.
//
// CPU only: eval_gpu throws, and GPU builds keep MLX's own quantized path instead.

#include <cstdint>
#include <stdexcept>
#include <string>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

#include "mlx/c/array.h"
#include "mlx/c/private/array.h"
#include "mlx/c/private/stream.h"

namespace mx = mlx::core;

extern "C" {
// out[m × n] = x[m × k] · Wᵀ, W being n rows of quantized blocks.
typedef void (*mlx_serve_qmm_fn)(
    const float* x,
    int64_t m,
    int64_t k,
    const uint8_t* w,
    int64_t n,
    uint32_t ggml_type,
    float* out);
// out[count × k] = rows ids[0..count] of the n-row weight w, dequantized to float32.
typedef void (*mlx_serve_gather_fn)(
    const uint8_t* w,
    int64_t n,
    int64_t k,
    uint32_t ggml_type,
    const uint32_t* ids,
    int64_t count,
    float* out);
}

namespace {

thread_local std::string last_error;

class GgufMatmul : public mx::Primitive {
 public:
  GgufMatmul(mx::Stream s, uint32_t ggml_type, mlx_serve_qmm_fn kernel)
      : mx::Primitive(s), ggml_type_(ggml_type), kernel_(kernel) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs)
      override {
    const auto& x = inputs[0];
    const auto& w = inputs[1];
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    int64_t k = x.shape(-1);
    int64_t m = k == 0 ? 0 : static_cast<int64_t>(x.size()) / k;
    int64_t n = w.shape(0);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(x);
    encoder.set_input_array(w);
    encoder.set_output_array(out);
    // The buffers outlive the task: MLX holds every input of a scheduled node until it ran.
    encoder.dispatch([xp = x.data<float>(),
                      wp = w.data<uint8_t>(),
                      op = out.data<float>(),
                      m,
                      k,
                      n,
                      t = ggml_type_,
                      f = kernel_]() { f(xp, m, k, wp, n, t, op); });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("GgufMatmul has no GPU kernel; GPU builds use MLX's own");
  }

  const char* name() const override {
    return "GgufMatmul";
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const GgufMatmul*>(&other);
    return o && o->ggml_type_ == ggml_type_ && o->kernel_ == kernel_;
  }

 private:
  uint32_t ggml_type_;
  mlx_serve_qmm_fn kernel_;
};

// Embedding rows read straight from the weight, in the file's layout or the interleaved one
// (a row's blocks are spread over its group of 16 there, so a plain gather of rows cannot work).
class GgufGather : public mx::Primitive {
 public:
  GgufGather(mx::Stream s, uint32_t ggml_type, int64_t k, mlx_serve_gather_fn kernel)
      : mx::Primitive(s), ggml_type_(ggml_type), k_(k), kernel_(kernel) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs)
      override {
    const auto& w = inputs[0];
    const auto& ids = inputs[1];
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(w);
    encoder.set_input_array(ids);
    encoder.set_output_array(out);
    encoder.dispatch([wp = w.data<uint8_t>(),
                      n = static_cast<int64_t>(w.shape(0)),
                      ip = ids.data<uint32_t>(),
                      count = static_cast<int64_t>(ids.size()),
                      op = out.data<float>(),
                      k = k_,
                      t = ggml_type_,
                      f = kernel_]() { f(wp, n, k, t, ip, count, op); });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("GgufGather has no GPU kernel");
  }

  const char* name() const override {
    return "GgufGather";
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const GgufGather*>(&other);
    return o && o->ggml_type_ == ggml_type_ && o->k_ == k_ && o->kernel_ == kernel_;
  }

 private:
  uint32_t ggml_type_;
  int64_t k_;
  mlx_serve_gather_fn kernel_;
};

template <class F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

} // namespace

extern "C" {

// The message of the last failure of a call below on this thread.
const char* mlx_serve_gguf_last_error() {
  return last_error.c_str();
}

// `x · Wᵀ` for float x [..., k] and W [n, row_bytes] (uint8 rows of ggml blocks).
int mlx_serve_gguf_matmul(
    mlx_array* res,
    const mlx_array x,
    const mlx_array w,
    uint32_t ggml_type,
    mlx_serve_qmm_fn kernel,
    const mlx_stream stream) {
  return guarded([&] {
    auto s = mlx_stream_get_(stream);
    const auto& wa = mlx_array_get_(w);
    if (wa.ndim() != 2 || wa.dtype() != mx::uint8) {
      throw std::invalid_argument("gguf_matmul: weight must be uint8 [n, row_bytes]");
    }
    auto xa = mx::contiguous(mx::astype(mlx_array_get_(x), mx::float32, s), false, s);
    auto wc = mx::contiguous(wa, false, s);
    auto shape = xa.shape();
    if (shape.empty()) {
      throw std::invalid_argument("gguf_matmul: x must have at least one axis");
    }
    shape.back() = wa.shape(0);
    auto out = mx::array(
        std::move(shape),
        mx::float32,
        std::make_shared<GgufMatmul>(s, ggml_type, kernel),
        {xa, wc});
    mlx_array_set_(*res, std::move(out));
  });
}

// Rows `ids` (any shape) of W [n, row_bytes] (uint8 ggml blocks) as float32 [..ids, k].
int mlx_serve_gguf_gather(
    mlx_array* res,
    const mlx_array w,
    const mlx_array ids,
    uint32_t ggml_type,
    int64_t k,
    mlx_serve_gather_fn kernel,
    const mlx_stream stream) {
  return guarded([&] {
    auto s = mlx_stream_get_(stream);
    const auto& wa = mlx_array_get_(w);
    if (wa.ndim() != 2 || wa.dtype() != mx::uint8) {
      throw std::invalid_argument("gguf_gather: weight must be uint8 [n, row_bytes]");
    }
    auto wc = mx::contiguous(wa, false, s);
    auto ic = mx::contiguous(mx::astype(mlx_array_get_(ids), mx::uint32, s), false, s);
    auto shape = ic.shape();
    shape.push_back(static_cast<int32_t>(k));
    auto out = mx::array(
        std::move(shape),
        mx::float32,
        std::make_shared<GgufGather>(s, ggml_type, k, kernel),
        {wc, ic});
    mlx_array_set_(*res, std::move(out));
  });
}

} // extern "C"
