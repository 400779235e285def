// A decode step's attention for a batch of sequences in their KV slots, as one MLX primitive:
// each sequence's single new query attends over its own keys `0..=position` only. Computing each
// sequence from its own length (rather than over the batch's longest, with a mask) makes its
// result independent of which other sequences share the step, bit for bit: a request decodes the
// same tokens alone or in any batch, which int8-activation kernels would otherwise not keep (they
// turn the last-bit differences of a padded product into different roundings).
//
// PrefillAttention is a prefill chunk's causal attention over its sequence's keys, computed a
// block of keys at a time (mlx-sys/src/prefill_attention.rs) so that no score matrix is
// materialised: at long contexts MLX's composed attention spends most of a prefill writing one.
//
// The arithmetic lives in Rust (mlx-sys/src/attention.rs, prefill_attention.rs), passed as a function pointer like
// gguf_ops.cpp's kernels. CPU only: eval_gpu throws; GPU builds keep MLX's fused attention.

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
// out[b, h, :] = softmax(scale · q[b, h] · keys[b, h / group, 0..=pos[b]]ᵀ) · values[...].
typedef void (*mlx_serve_slot_attention_fn)(
    const float* q,
    const float* keys,
    const float* values,
    const int32_t* positions,
    int64_t batch,
    int64_t heads,
    int64_t kv_heads,
    int64_t capacity,
    int64_t head_dim,
    float scale,
    int32_t window,
    float* out);

// Element [head, position, i] of one batch row at ptr[head·head_stride + position·pos_stride + i].
typedef struct {
  const float* ptr;
  int64_t head_stride;
  int64_t pos_stride;
} mlx_serve_strided;

// out[p, h, :] over keys 0..=keys-len+p (the last `window` of them when window > 0).
typedef void (*mlx_serve_prefill_attention_fn)(
    mlx_serve_strided q,
    mlx_serve_strided k,
    mlx_serve_strided v,
    int64_t len,
    int64_t keys,
    int64_t heads,
    int64_t kv_heads,
    int64_t head_dim,
    float scale,
    int32_t window,
    float* out);
}

namespace {

thread_local std::string last_error;

class SlotAttention : public mx::Primitive {
 public:
  SlotAttention(mx::Stream s, float scale, int32_t window, mlx_serve_slot_attention_fn kernel)
      : mx::Primitive(s), scale_(scale), window_(window), kernel_(kernel) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs)
      override {
    const auto& q = inputs[0];
    const auto& k = inputs[1];
    const auto& v = inputs[2];
    const auto& pos = inputs[3];
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& a : inputs) {
      encoder.set_input_array(a);
    }
    encoder.set_output_array(out);
    encoder.dispatch([qp = q.data<float>(),
                      kp = k.data<float>(),
                      vp = v.data<float>(),
                      pp = pos.data<int32_t>(),
                      op = out.data<float>(),
                      batch = static_cast<int64_t>(q.shape(0)),
                      heads = static_cast<int64_t>(q.shape(1)),
                      kv_heads = static_cast<int64_t>(k.shape(1)),
                      capacity = static_cast<int64_t>(k.shape(2)),
                      dim = static_cast<int64_t>(q.shape(2)),
                      scale = scale_,
                      window = window_,
                      f = kernel_]() {
      f(qp, kp, vp, pp, batch, heads, kv_heads, capacity, dim, scale, window, op);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("SlotAttention has no GPU kernel; GPU builds use MLX's own");
  }

  const char* name() const override {
    return "SlotAttention";
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const SlotAttention*>(&other);
    return o && o->scale_ == scale_ && o->window_ == window_ && o->kernel_ == kernel_;
  }

 private:
  float scale_;
  int32_t window_;
  mlx_serve_slot_attention_fn kernel_;
};

// A [1, H, N, d] float32 input as the kernel reads it: in place when its last axis is
// contiguous, else copied into `tmp` (row-major).
mlx_serve_strided strided_view(const mx::array& a, std::vector<float>& tmp) {
  const auto& st = a.strides();
  const float* p = a.data<float>();
  if (st[3] == 1) {
    return {p, static_cast<int64_t>(st[1]), static_cast<int64_t>(st[2])};
  }
  const int64_t h = a.shape(1), n = a.shape(2), d = a.shape(3);
  tmp.resize(static_cast<size_t>(h * n * d));
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t x = 0; x < d; ++x) {
        tmp[(i * n + j) * d + x] = p[i * st[1] + j * st[2] + x * st[3]];
      }
    }
  }
  return {tmp.data(), n * d, d};
}

class PrefillAttention : public mx::Primitive {
 public:
  PrefillAttention(
      mx::Stream s,
      float scale,
      int32_t window,
      mlx_serve_prefill_attention_fn kernel)
      : mx::Primitive(s), scale_(scale), window_(window), kernel_(kernel) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs)
      override {
    const auto& q = inputs[0];
    const auto& k = inputs[1];
    const auto& v = inputs[2];
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& a : inputs) {
      encoder.set_input_array(a);
    }
    encoder.set_output_array(out);
    encoder.dispatch([q, k, v,
                      op = out.data<float>(),
                      scale = scale_,
                      window = window_,
                      f = kernel_]() {
      std::vector<float> tq, tk, tv;
      f(strided_view(q, tq),
        strided_view(k, tk),
        strided_view(v, tv),
        q.shape(2),
        k.shape(2),
        q.shape(1),
        k.shape(1),
        q.shape(3),
        scale,
        window,
        op);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("PrefillAttention has no GPU kernel; GPU builds use MLX's own");
  }

  const char* name() const override {
    return "PrefillAttention";
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const PrefillAttention*>(&other);
    return o && o->scale_ == scale_ && o->window_ == window_ && o->kernel_ == kernel_;
  }

 private:
  float scale_;
  int32_t window_;
  mlx_serve_prefill_attention_fn kernel_;
};

} // namespace

extern "C" {

// q [1, heads, len, d]; keys and values [1, kv_heads, keys ≥ len, d], the chunk's own keys last;
// returns [1, len, heads·d]. window 0 for full attention, else the sliding window's length.
int mlx_serve_prefill_attention(
    mlx_array* res,
    const mlx_array q,
    const mlx_array keys,
    const mlx_array values,
    float scale,
    int32_t window,
    mlx_serve_prefill_attention_fn kernel,
    const mlx_stream stream) {
  try {
    auto s = mlx_stream_get_(stream);
    const auto& qa = mlx_array_get_(q);
    const auto& ka = mlx_array_get_(keys);
    const auto& va = mlx_array_get_(values);
    if (qa.ndim() != 4 || ka.ndim() != 4 || va.shape() != ka.shape() || qa.shape(0) != 1 ||
        ka.shape(0) != 1) {
      throw std::invalid_argument(
          "prefill_attention: q [1, heads, len, d], keys/values [1, kv_heads, keys, d]");
    }
    if (ka.shape(3) != qa.shape(3) || ka.shape(2) < qa.shape(2) || ka.shape(1) == 0 ||
        qa.shape(1) % ka.shape(1) != 0) {
      throw std::invalid_argument("prefill_attention: shapes do not agree");
    }
    auto f32 = [&](const mx::array& a) { return mx::astype(a, mx::float32, s); };
    auto out = mx::array(
        {1, qa.shape(2), qa.shape(1) * qa.shape(3)},
        mx::float32,
        std::make_shared<PrefillAttention>(s, scale, window, kernel),
        {f32(qa), f32(ka), f32(va)});
    mlx_array_set_(*res, std::move(out));
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}


const char* mlx_serve_slot_attention_last_error() {
  return last_error.c_str();
}

// q [B, heads, d]; keys and values [slots ≥ B, kv_heads, capacity, d] (batch row i is slot i);
// positions int32 [B], each sequence's new position (its keys 0..=position are valid); window 0
// for full attention, else the sliding window's length.
int mlx_serve_slot_attention(
    mlx_array* res,
    const mlx_array q,
    const mlx_array keys,
    const mlx_array values,
    const mlx_array positions,
    float scale,
    int32_t window,
    mlx_serve_slot_attention_fn kernel,
    const mlx_stream stream) {
  try {
    auto s = mlx_stream_get_(stream);
    const auto& qa = mlx_array_get_(q);
    const auto& ka = mlx_array_get_(keys);
    const auto& va = mlx_array_get_(values);
    const auto& pa = mlx_array_get_(positions);
    if (qa.ndim() != 3 || ka.ndim() != 4 || va.shape() != ka.shape() || pa.ndim() != 1) {
      throw std::invalid_argument(
          "slot_attention: q [B, heads, d], keys/values [slots, kv_heads, capacity, d], "
          "positions [B]");
    }
    if (ka.shape(0) < qa.shape(0) || ka.shape(3) != qa.shape(2) || pa.shape(0) != qa.shape(0) ||
        ka.shape(1) == 0 || qa.shape(1) % ka.shape(1) != 0) {
      throw std::invalid_argument("slot_attention: shapes do not agree");
    }
    auto f32 = [&](const mx::array& a) {
      return mx::contiguous(mx::astype(a, mx::float32, s), false, s);
    };
    auto pc = mx::contiguous(mx::astype(pa, mx::int32, s), false, s);
    auto out = mx::array(
        qa.shape(),
        mx::float32,
        std::make_shared<SlotAttention>(s, scale, window, kernel),
        {f32(qa), f32(ka), f32(va), pc});
    mlx_array_set_(*res, std::move(out));
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}
}
