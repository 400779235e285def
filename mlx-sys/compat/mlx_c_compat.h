/*
 * Force-included into every mlx-c translation unit (C++ and the CMake compiler probe).
 * It bridges two portability gaps between mlx-c 0.7.0 and Linux toolchains:
 *  - mlx-c only declares float16_t/bfloat16_t on aarch64, so the mlx_array_*_float16/bfloat16
 *    functions that mlx-rs calls would not exist on x86_64. MLX's own half types fill in.
 *  - gcc 12's libstdc++ has no std::format; mlx-c only uses it with plain "{}" placeholders.
 */
#ifndef MLX_SERVE_MLX_C_COMPAT_H
#define MLX_SERVE_MLX_C_COMPAT_H

#ifdef __cplusplus
#if !defined(__aarch64__)
#include "mlx/types/half_types.h"
using float16_t = mlx::core::float16_t;
using bfloat16_t = mlx::core::bfloat16_t;
#define HAS_FLOAT16
#define HAS_BFLOAT16
#endif

#include <version>
#if !defined(__cpp_lib_format)
#include <sstream>
#include <string>
#include <string_view>
namespace std {
namespace mlx_serve_compat {
inline void format_into(std::ostringstream& out, std::string_view fmt) { out << fmt; }
template <typename T, typename... Rest>
void format_into(std::ostringstream& out, std::string_view fmt, const T& first, const Rest&... rest) {
  auto pos = fmt.find("{}");
  if (pos == std::string_view::npos) {
    out << fmt;
    return;
  }
  out << fmt.substr(0, pos) << first;
  format_into(out, fmt.substr(pos + 2), rest...);
}
} // namespace mlx_serve_compat
template <typename... Args>
std::string format(std::string_view fmt, const Args&... args) {
  std::ostringstream out;
  mlx_serve_compat::format_into(out, fmt, args...);
  return out.str();
}
} // namespace std
#endif
#endif /* __cplusplus */

#endif
