//! The two mlx-c slicing calls mlx-rs keeps crate-private, wrapped once.

use mlx_rs::error::Exception;
use mlx_rs::{Array, Stream};

fn out_of(status: i32, what: &str, res: mlx_sys::mlx_array) -> Result<Array, Exception> {
    if status == 0 {
        // SAFETY: on success mlx-c initialized `res`, and the new Array takes ownership of it.
        Ok(unsafe { Array::from_ptr(res) })
    } else {
        unsafe { mlx_sys::mlx_array_free(res) };
        Err(Exception::custom(format!("mlx {what} failed")))
    }
}

/// `a[start:stop]` over every axis (unit strides).
pub fn slice(a: &Array, start: &[i32], stop: &[i32]) -> Result<Array, Exception> {
    let strides = vec![1i32; start.len()];
    let stream = Stream::thread_local_or_default();
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        let status = mlx_sys::mlx_slice(
            &mut res,
            a.as_ptr(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            stream.as_ptr(),
        );
        out_of(status, "slice", res)
    }
}

/// A copy of `dst` with `dst[start:stop] = update` (the buffer is reused when `dst` is not shared).
pub fn slice_update(dst: &Array, update: &Array, start: &[i32], stop: &[i32]) -> Result<Array, Exception> {
    let strides = vec![1i32; start.len()];
    let stream = Stream::thread_local_or_default();
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        let status = mlx_sys::mlx_slice_update(
            &mut res,
            dst.as_ptr(),
            update.as_ptr(),
            start.as_ptr(),
            start.len(),
            stop.as_ptr(),
            stop.len(),
            strides.as_ptr(),
            strides.len(),
            stream.as_ptr(),
        );
        out_of(status, "slice_update", res)
    }
}
