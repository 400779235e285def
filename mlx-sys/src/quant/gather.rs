//! Embedding lookups on quantized weights: the kernel of the `GgufGather` primitive
//! (csrc/gguf_ops.cpp). It reads each wanted row where it lies, in the file's layout or spread
//! over its group of 16 in the interleaved one, so a tied embedding can be repacked for the
//! output head's product and still be gathered by token.

use super::{block_bytes, block_elems, dequant, repack};

/// `out[count × k]` = rows `ids` of the `n`-row weight `w`, as float32; an id past `n` gives
/// a row of zeros (callers validate token ids; this only keeps a bad one from reading out of
/// bounds).
///
/// # Safety
/// `w` holds `n` rows of `k` elements of `ggml_type` (in the interleaved layout if the type is
/// marked repacked), `ids` `count` ids and `out` room for `count × k` floats.
pub unsafe extern "C" fn gather_kernel(
    w: *const u8,
    n: i64,
    k: i64,
    ggml_type: u32,
    ids: *const u32,
    count: i64,
    out: *mut f32,
) {
    let (n, k, count) = (n as usize, k as usize, count as usize);
    let base = repack::base_type(ggml_type);
    let (Some(row_bytes), Some(plain_block)) = (block_bytes(ggml_type), block_bytes(base)) else {
        return;
    };
    let blocks = k / block_elems(base);
    let row_bytes = row_bytes * blocks;
    let mut plain = vec![0u8; blocks * plain_block];
    for i in 0..count {
        let id = *ids.add(i) as usize;
        let dst = out.add(i * k);
        if id >= n {
            std::ptr::write_bytes(dst, 0, k);
        } else if repack::is_repacked(ggml_type) {
            let group = id / repack::GROUP;
            let src = std::slice::from_raw_parts(
                w.add(group * repack::GROUP * row_bytes),
                repack::GROUP * row_bytes,
            );
            repack::unrepack_row(base, src, blocks, id % repack::GROUP, &mut plain);
            dequant(base, plain.as_ptr(), blocks, dst);
        } else {
            dequant(base, w.add(id * row_bytes), blocks, dst);
        }
    }
}

/// The kernel as the C function pointer csrc/gguf_ops.cpp takes.
pub type GatherFn = unsafe extern "C" fn(*const u8, i64, i64, u32, *const u32, i64, *mut f32);

extern "C" {
    /// Builds a lazy gather of rows `ids` of `w` to float32 `[..ids, k]`; 0 on success.
    pub fn mlx_serve_gguf_gather(
        res: *mut crate::mlx_array,
        w: crate::mlx_array,
        ids: crate::mlx_array,
        ggml_type: u32,
        k: i64,
        kernel: GatherFn,
        stream: crate::mlx_stream,
    ) -> i32;
}
