/*
 * Given to bindgen only. On aarch64 mlx-c's half.h defines these from the ARM half types;
 * elsewhere these give the same Rust bindings (float16_t = a u16 newtype, bfloat16_t = u16),
 * which is what mlx-rs expects.
 */
#if !defined(__aarch64__)
typedef __fp16 float16_t;
typedef unsigned short bfloat16_t;
#define HAS_FLOAT16
#define HAS_BFLOAT16
#endif
