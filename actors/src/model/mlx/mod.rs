//! MLX tensor code (work in progress)

#[cfg(test)]
mod tests {
    use mlx_rs::Array;

    #[test]
    fn smoke_matmul() {
        let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
        let b = a.matmul(&a).unwrap();
        b.eval().unwrap();
        assert_eq!(b.as_slice::<f32>(), &[7.0, 10.0, 15.0, 22.0]);
        eprintln!("blas: {}", mlx_sys::blas_info());
    }
}
