// One generic MLX primitive for small CPU kernels written in Rust (mlx-sys/src/host_op.rs): the
// node hands its inputs (any strides, innermost axis contiguous) and a few float parameters to a
// function pointer that fills a contiguous float32 output. MLX's CPU backend has no kernel for
// its "fast" RMSNorm and RoPE and runs them as their composed fallbacks, ~10 and ~25 graph nodes
// each; as one node each they cut a SmolLM2 decode step from ~3,500 nodes to ~1,500, and every
// node costs graph and scheduling work whatever its size.
//
// CPU only: eval_gpu throws, and GPU builds keep MLX's fused kernels.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

#include "mlx/c/array.h"
#include "mlx/c/private/array.h"
#include "mlx/c/private/stream.h"

namespace mx = mlx::core;

extern "C" {
// An input as the kernel sees it: element (i0, i1, …) at ptr[Σ ik · strides[k]] (in elements).
typedef struct {
  const void* ptr;
  int32_t ndim;
  const int32_t* shape;
  const int64_t* strides;
} mlx_serve_host_in;

typedef void (*mlx_serve_host_fn)(
    const mlx_serve_host_in* inputs,
    int32_t n_inputs,
    float* out,
    int64_t out_size,
    const float* params,
    int32_t n_params);
}

namespace {

thread_local std::string last_error;

class HostOp : public mx::Primitive {
 public:
  HostOp(mx::Stream s, mlx_serve_host_fn kernel, std::vector<float> params, std::string name)
      : mx::Primitive(s), kernel_(kernel), params_(std::move(params)), name_(std::move(name)) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs)
      override {
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    std::vector<const void*> ptrs;
    std::vector<mx::Shape> shapes;
    std::vector<mx::Strides> strides;
    for (const auto& a : inputs) {
      encoder.set_input_array(a);
      ptrs.push_back(a.data<char>());
      shapes.push_back(a.shape());
      strides.push_back(a.strides());
    }
    encoder.set_output_array(out);
    // The buffers outlive the task: MLX holds every input of a scheduled node until it ran.
    encoder.dispatch([ptrs = std::move(ptrs),
                      shapes = std::move(shapes),
                      strides = std::move(strides),
                      op = out.data<float>(),
                      size = static_cast<int64_t>(out.size()),
                      params = params_,
                      f = kernel_]() {
      std::vector<mlx_serve_host_in> in(ptrs.size());
      for (size_t i = 0; i < ptrs.size(); i++) {
        in[i] = {ptrs[i], static_cast<int32_t>(shapes[i].size()), shapes[i].data(),
                 strides[i].data()};
      }
      f(in.data(), static_cast<int32_t>(in.size()), op, size, params.data(),
        static_cast<int32_t>(params.size()));
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error(name_ + " has no GPU kernel; GPU builds use MLX's own");
  }

  const char* name() const override {
    return name_.c_str();
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const HostOp*>(&other);
    return o && o->kernel_ == kernel_ && o->params_ == params_;
  }

 private:
  mlx_serve_host_fn kernel_;
  std::vector<float> params_;
  std::string name_;
};

} // namespace

extern "C" {

const char* mlx_serve_host_op_last_error() {
  return last_error.c_str();
}

// A node computing float32 `out_shape` from `inputs` with `kernel`. Floating inputs are read as
// float32 and integer ones as int32; an input whose innermost axis is strided is copied first.
int mlx_serve_host_op(
    mlx_array* res,
    const mlx_array* inputs,
    int32_t n_inputs,
    const int32_t* out_shape,
    int32_t out_ndim,
    mlx_serve_host_fn kernel,
    const float* params,
    int32_t n_params,
    const char* name,
    const mlx_stream stream) {
  try {
    auto s = mlx_stream_get_(stream);
    std::vector<mx::array> in;
    for (int32_t i = 0; i < n_inputs; i++) {
      auto a = mlx_array_get_(inputs[i]);
      auto want = mx::issubdtype(a.dtype(), mx::floating) ? mx::float32 : mx::int32;
      if (a.dtype() != want) {
        a = mx::astype(a, want, s);
      }
      if (a.ndim() > 0 && a.shape(-1) > 1 && a.strides().back() != 1) {
        a = mx::contiguous(a, false, s);
      }
      in.push_back(std::move(a));
    }
    mx::Shape shape(out_shape, out_shape + out_ndim);
    auto out = mx::array(
        std::move(shape),
        mx::float32,
        std::make_shared<HostOp>(
            s, kernel, std::vector<float>(params, params + n_params), std::string(name)),
        std::move(in));
    mlx_array_set_(*res, std::move(out));
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

} // extern "C"
