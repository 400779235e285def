// Included by the build scripts of the crates whose binaries and tests run MLX (`mlx-serve`,
// `mlx-serve-engine`, `mlx-serve-actors`; each depends on mlx-sys directly, as only a direct
// dependent sees DEP_MLX_*). A dependency's link args never reach a binary, so each of these
// crates adds, from what mlx-sys publishes as DEP_MLX_*:
// - an rpath to libmlx, so nothing needs LD_LIBRARY_PATH;
// - the fast BLAS as a direct, always-kept dependency: the dynamic linker binds cblas_sgemm to the
//   first library in load order that defines it, and direct dependencies load before libmlx's own
//   reference BLAS.
fn link_mlx_consumer() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LIB_DIR");
    println!("cargo:rerun-if-env-changed=DEP_MLX_BLAS_DIR");
    println!("cargo:rerun-if-env-changed=DEP_MLX_BLAS_LIB");
    let Ok(lib_dir) = std::env::var("DEP_MLX_LIB_DIR") else {
        return; // built without the `mlx` feature
    };
    let macos = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    if let (Ok(blas_dir), false) = (std::env::var("DEP_MLX_BLAS_DIR"), macos) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{blas_dir}");
        println!("cargo:rustc-link-arg=-L{blas_dir}");
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed");
        let lib = std::env::var("DEP_MLX_BLAS_LIB").unwrap_or_else(|_| "libopenblas.so.0".into());
        println!("cargo:rustc-link-arg=-l:{lib}");
        println!("cargo:rustc-link-arg=-Wl,--pop-state");
    }
}
