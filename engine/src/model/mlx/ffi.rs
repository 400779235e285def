//! mlx-c calls that mlx-rs keeps crate-private (slicing), and in-place access to an array's data.

use mlx_rs::error::Exception;
use mlx_rs::{Array, Stream};

type SliceArgs = (
    *const i32,
    usize,
    *const i32,
    usize,
    *const i32,
    usize,
    mlx_sys::mlx_stream,
);

/// Runs one mlx-c slicing call over `start..stop` with unit strides and wraps its result.
fn sliced(
    what: &str,
    start: &[i32],
    stop: &[i32],
    call: impl FnOnce(*mut mlx_sys::mlx_array, SliceArgs) -> i32,
) -> Result<Array, Exception> {
    let strides = vec![1i32; start.len()];
    let stream = Stream::thread_local_or_default();
    // SAFETY: the pointers and lengths describe live slices for the duration of the call, and
    // on success mlx-c initialized `res`, whose ownership the new Array takes.
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        let args = (
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            stream.as_ptr(),
        );
        if call(&mut res, args) == 0 {
            Ok(Array::from_ptr(res))
        } else {
            mlx_sys::mlx_array_free(res);
            Err(Exception::custom(format!("mlx {what} failed")))
        }
    }
}

/// `a[start:stop]` over every axis (unit strides).
pub fn slice(a: &Array, start: &[i32], stop: &[i32]) -> Result<Array, Exception> {
    sliced(
        "slice",
        start,
        stop,
        |res, (s, sn, e, en, st, stn, stream)| unsafe {
            mlx_sys::mlx_slice(res, a.as_ptr(), s, sn, e, en, st, stn, stream)
        },
    )
}

/// A copy of `dst` with `dst[start:stop] = update` (the buffer is reused when `dst` is not shared).
pub fn slice_update(
    dst: &Array,
    update: &Array,
    start: &[i32],
    stop: &[i32],
) -> Result<Array, Exception> {
    sliced(
        "slice_update",
        start,
        stop,
        |res, (s, sn, e, en, st, stn, stream)| unsafe {
            mlx_sys::mlx_slice_update(
                res,
                dst.as_ptr(),
                update.as_ptr(),
                s,
                sn,
                e,
                en,
                st,
                stn,
                stream,
            )
        },
    )
}

/// The evaluated, row-contiguous float32 data of `a`, writable in place.
///
/// # Safety
/// `a` must be the sole owner of a buffer it just computed (a matmul output that nothing else
/// references): MLX shares buffers between views and donates them between operations, so
/// writing into any other array could change arrays that alias it.
pub unsafe fn data_mut_unshared(a: &mut Array) -> Result<&mut [f32], Exception> {
    let data = a
        .try_as_slice::<f32>()
        .map_err(|e| Exception::custom(format!("in-place host kernel input: {e}")))?;
    let (ptr, len) = (data.as_ptr().cast_mut(), data.len());
    // SAFETY: the buffer is heap memory MLX allocated for `a` alone (caller's contract), fully
    // evaluated, `len` floats long, and `&mut a` keeps it alive and un-aliased on our side.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Wraps an mlx-c call that fills `res`.
fn call(what: &str, f: impl FnOnce(*mut mlx_sys::mlx_array) -> i32) -> Result<Array, Exception> {
    // SAFETY: on success mlx-c initialized `res`, whose ownership the new Array takes.
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        if f(&mut res) == 0 {
            Ok(Array::from_ptr(res))
        } else {
            mlx_sys::mlx_array_free(res);
            Err(Exception::custom(format!("mlx {what} failed")))
        }
    }
}

/// A copy of `dst` with `dst[i0[b], :, i2[b], ...] = updates[b]` for every `b` (axes 0 and 2):
/// one operation for a whole batch of positions. `updates` has shape
/// `[B, 1, dst.shape[1], 1, dst.shape[3..]]`. The buffer is reused when `dst` is not shared.
pub fn scatter_axes02(
    dst: &Array,
    i0: &Array,
    i2: &Array,
    updates: &Array,
) -> Result<Array, Exception> {
    let stream = Stream::thread_local_or_default();
    let axes = [0i32, 2];
    call("scatter", |res| unsafe {
        let indices = mlx_sys::mlx_vector_array_new();
        mlx_sys::mlx_vector_array_append_value(indices, i0.as_ptr());
        mlx_sys::mlx_vector_array_append_value(indices, i2.as_ptr());
        let status = mlx_sys::mlx_scatter(
            res,
            dst.as_ptr(),
            indices,
            updates.as_ptr(),
            axes.as_ptr(),
            axes.len(),
            stream.as_ptr(),
        );
        mlx_sys::mlx_vector_array_free(indices);
        status
    })
}

/// Rotary embedding with a position per batch row (`offsets: [B]` int32, `x: [B, heads, L, d]`).
pub fn rope_per_row(
    x: &Array,
    dims: i32,
    base: Option<f32>,
    scale: f32,
    offsets: &Array,
    freqs: Option<&Array>,
) -> Result<Array, Exception> {
    let stream = Stream::thread_local_or_default();
    call("rope", |res| unsafe {
        let base = mlx_sys::mlx_optional_float {
            value: base.unwrap_or(0.0),
            has_value: base.is_some(),
        };
        let none = mlx_sys::mlx_array_new();
        let freqs_ptr = freqs.map_or(none, |f| f.as_ptr());
        let status = mlx_sys::mlx_fast_rope_dynamic(
            res,
            x.as_ptr(),
            dims,
            false,
            base,
            scale,
            offsets.as_ptr(),
            freqs_ptr,
            stream.as_ptr(),
        );
        mlx_sys::mlx_array_free(none);
        status
    })
}

/// A copy of `a` in a buffer of its own (never a view of `a`'s buffer).
///
/// Not MLX's `copy`: its `Copy` primitive shares the input's buffer, so a "copy" of one slot of
/// a decode buffer kept the whole buffer (every slot, at its capacity) alive for as long as the
/// copy lived — in the prefix cache, far beyond what its byte count said. An elementwise
/// product with one writes a new buffer of `a`'s size whenever `a`'s buffer has other owners
/// (a view of a buffer still in use always does), and is exact, negative zeros included.
pub fn copy(a: &Array) -> Result<Array, Exception> {
    let one = Array::from_f32(1.0).as_dtype(a.dtype())?;
    a.multiply(&one)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_range(a: &Array) -> std::ops::Range<usize> {
        let s = a.as_slice::<f32>();
        let start = s.as_ptr() as usize;
        start..start + std::mem::size_of_val(s)
    }

    #[test]
    fn a_copy_of_a_slot_owns_its_buffer_and_keeps_the_values() {
        let values: Vec<f32> = (0..4 * 3 * 8 * 2).map(|i| i as f32 - 40.0).collect();
        let buffer = Array::from_slice(&values, &[4, 3, 8, 2]);
        buffer.eval().unwrap();
        // A whole slot is a contiguous block: the case MLX's own copy shares outright.
        let slot = slice(&buffer, &[1, 0, 0, 0], &[2, 3, 8, 2]).unwrap();
        let copied = copy(&slot).unwrap();
        copied.eval().unwrap();
        let held = data_range(&buffer);
        let own = data_range(&copied);
        assert!(
            own.end <= held.start || own.start >= held.end,
            "the copy points into the slot buffer"
        );
        assert_eq!(copied.shape(), &[1, 3, 8, 2]);
        assert_eq!(copied.as_slice::<f32>(), &values[48..96]);
    }
}
