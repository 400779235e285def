//! Builds mlx-c against a prebuilt MLX from PyPI and generates the bindings mlx-rs expects.
//!
//! Everything heavy lands in a cache directory shared by all target dirs (see `cache_root`), so a
//! second checkout or a `cargo clean` does not pay for it again:
//! - the MLX wheel for the chosen backend (`mlx-cpu`, `mlx-cuda-12`/`-13`, or `mlx` on macOS),
//! - cmake and libclang from PyPI when the system lacks them,
//! - the compiled `libmlxc.a`, keyed by MLX version, backend and our compat headers.
//!
//! mlx-c's sources come from the crates.io `mlx-sys` 0.7.0 package, fetched by cargo itself.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// mlx-c 0.7.0 pins this MLX tag; other versions' headers do not compile with it.
const MLX_VERSION: &str = "0.32.2";
const MLX_C_CRATE_VERSION: &str = "0.7.0";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(mlx_serve_openblas)");
    println!("cargo::rustc-check-cfg=cfg(mlx_serve_scipy_openblas)");
    println!("cargo:rerun-if-changed=compat");
    println!("cargo:rerun-if-changed=csrc");
    for var in [
        "MLX_SERVE_BACKEND",
        "MLX_SERVE_BUILD_CACHE",
        "MLX_SERVE_MLX_DIR",
        "MLX_SERVE_BLAS",
        "LIBCLANG_PATH",
        "MLX_SERVE_LIBCLANG",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let backend = Backend::from_env();
    let cache = cache_root();
    fs::create_dir_all(&cache).expect("cannot create the mlx-serve build cache directory");

    let mlx = mlx_prefix(&cache, backend);
    let mlx_c_src = mlx_c_sources();
    let cmake = find_or_fetch_tool(&cache, "cmake", "cmake", "cmake/data/bin/cmake");
    let mlxc_lib_dir = build_mlx_c(&cache, backend, &mlx, &mlx_c_src, &cmake);

    let lib_dir = mlx.join("lib");
    build_gguf_ops(&mlx, &mlx_c_src);
    println!("cargo:rustc-link-search=native={}", mlxc_lib_dir.display());
    println!("cargo:rustc-link-lib=static=mlxc");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    if cfg!(target_os = "macos") {
        println!("cargo:rustc-link-lib=dylib=c++");
    } else {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
    // Dependents read these as DEP_MLX_*: binaries need the rpath (a dependency's link-arg
    // never reaches them), and start-up reports the backend.
    println!("cargo:lib_dir={}", lib_dir.display());
    println!("cargo:backend={}", backend.name());
    println!("cargo:version={MLX_VERSION}");
    println!("cargo:rustc-env=MLX_SERVE_MLX_BACKEND={}", backend.name());
    println!("cargo:rustc-env=MLX_SERVE_MLX_VERSION={MLX_VERSION}");

    let blas = link_blas(backend, &cache);
    println!("cargo:blas={blas}");
    println!("cargo:rustc-env=MLX_SERVE_BLAS={blas}");

    generate_bindings(&cache, &mlx_c_src);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Cpu,
    Cuda12,
    Cuda13,
    Metal,
}

impl Backend {
    fn from_env() -> Self {
        let default = if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
            "metal"
        } else {
            "cpu"
        };
        let value = env::var("MLX_SERVE_BACKEND").unwrap_or_else(|_| default.to_string());
        match value.as_str() {
            "cpu" => Backend::Cpu,
            "cuda" | "cuda12" | "cuda-12" => Backend::Cuda12,
            "cuda13" | "cuda-13" => Backend::Cuda13,
            "metal" => Backend::Metal,
            other => panic!(
                "MLX_SERVE_BACKEND={other} is not a backend; use one of cpu, cuda (12), cuda13, metal"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda12 | Backend::Cuda13 => "cuda",
            Backend::Metal => "metal",
        }
    }

    fn wheel(self) -> &'static str {
        match self {
            Backend::Cpu => "mlx-cpu",
            Backend::Cuda12 => "mlx-cuda-12",
            Backend::Cuda13 => "mlx-cuda-13",
            Backend::Metal => "mlx",
        }
    }
}

fn cache_root() -> PathBuf {
    if let Some(dir) = env::var_os("MLX_SERVE_BUILD_CACHE") {
        return PathBuf::from(dir);
    }
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(env::var("OUT_DIR").unwrap()));
    base.join("mlx-serve").join("build")
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    if !status.success() {
        panic!("{what} failed ({status}): {cmd:?}");
    }
}

fn python() -> String {
    env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// `pip install --no-deps --target` into a cache folder, once; a marker file makes it atomic.
fn pip_target(cache: &Path, requirement: &str, folder: &str) -> PathBuf {
    let dir = cache.join(folder);
    let marker = dir.join(".mlx-serve-complete");
    if marker.exists() {
        return dir;
    }
    let tmp = cache.join(format!("{folder}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    println!(
        "cargo:warning=mlx-sys: fetching {requirement} from PyPI into {}",
        dir.display()
    );
    run(
        Command::new(python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(&tmp)
            .arg(requirement),
        &format!("pip install {requirement}"),
    );
    fs::write(tmp.join(".mlx-serve-complete"), requirement).unwrap();
    let _ = fs::remove_dir_all(&dir);
    if fs::rename(&tmp, &dir).is_err() {
        // Another build won the race; use its copy.
        let _ = fs::remove_dir_all(&tmp);
    }
    dir
}

/// The MLX install prefix (`lib/`, `include/`, `share/cmake/MLX`).
fn mlx_prefix(cache: &Path, backend: Backend) -> PathBuf {
    if let Some(dir) = env::var_os("MLX_SERVE_MLX_DIR") {
        return PathBuf::from(dir);
    }
    let wheel = backend.wheel();
    let site = pip_target(
        cache,
        &format!("{wheel}=={MLX_VERSION}"),
        &format!("{wheel}-{MLX_VERSION}"),
    );
    let prefix = site.join("mlx");
    assert!(
        prefix.join("share/cmake/MLX/MLXConfig.cmake").exists(),
        "{wheel}=={MLX_VERSION} has no share/cmake/MLX; set MLX_SERVE_MLX_DIR to an MLX install prefix"
    );
    prefix
}

/// mlx-c's sources, from the upstream crate, via a throw-away manifest fetched by cargo.
fn mlx_c_sources() -> PathBuf {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("mlx-c-fetch");
    fs::create_dir_all(out.join("src")).unwrap();
    fs::write(
        out.join("Cargo.toml"),
        format!(
            "[package]\nname = \"mlx-c-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [workspace]\n\n[dependencies]\nmlx-sys = \"={MLX_C_CRATE_VERSION}\"\n"
        ),
    )
    .unwrap();
    fs::write(out.join("src/lib.rs"), "").unwrap();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = out.join("Cargo.toml");
    run(
        Command::new(&cargo)
            .args(["fetch", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .env_remove("CARGO_TARGET_DIR"),
        "cargo fetch mlx-sys (for mlx-c sources)",
    );
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    // Find the manifest_path of the mlx-sys package without a JSON dependency.
    let needle = format!("\"name\":\"mlx-sys\",\"version\":\"{MLX_C_CRATE_VERSION}\"");
    let start = text.find(&needle).expect("mlx-sys not in cargo metadata");
    let rest = &text[start..];
    let key = "\"manifest_path\":\"";
    let at = rest.find(key).expect("manifest_path") + key.len();
    let end = rest[at..].find('"').unwrap();
    let manifest_path = PathBuf::from(rest[at..at + end].replace("\\\\", "\\"));
    let src = manifest_path.parent().unwrap().join("src/mlx-c");
    assert!(
        src.join("CMakeLists.txt").exists(),
        "no mlx-c in {}",
        src.display()
    );
    src
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = env::var_os("PATH")?;
    env::split_paths(&paths)
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

/// A build tool from PATH, or from its PyPI wheel in the cache.
fn find_or_fetch_tool(cache: &Path, exe: &str, wheel: &str, rel: &str) -> PathBuf {
    if let Some(path) = on_path(exe) {
        return path;
    }
    let site = pip_target(cache, wheel, &format!("tool-{wheel}"));
    let path = site.join(rel);
    assert!(path.exists(), "{wheel} wheel has no {rel}");
    path
}

fn content_key(parts: &[&[u8]]) -> String {
    // FNV-1a: only needs to tell builds apart, not resist anyone.
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for part in parts {
        for &b in part.iter().chain([0u8].iter()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

fn build_mlx_c(cache: &Path, backend: Backend, mlx: &Path, src: &Path, cmake: &Path) -> PathBuf {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let compat = manifest.join("compat/mlx_c_compat.h");
    let compat_text = fs::read(&compat).unwrap();
    let key = content_key(&[
        MLX_VERSION.as_bytes(),
        backend.wheel().as_bytes(),
        mlx.to_string_lossy().as_bytes(),
        &compat_text,
        src.to_string_lossy().as_bytes(),
    ]);
    let dir = cache.join(format!(
        "mlx-c-{MLX_C_CRATE_VERSION}-{}-{key}",
        backend.wheel()
    ));
    let lib = dir.join("build/libmlxc.a");
    if lib.exists() {
        return lib.parent().unwrap().to_path_buf();
    }
    println!("cargo:warning=mlx-sys: building mlx-c {MLX_C_CRATE_VERSION} against MLX {MLX_VERSION} ({}); cached in {}", backend.name(), dir.display());
    let build = dir.join("build");
    let _ = fs::remove_dir_all(&build);
    fs::create_dir_all(&build).unwrap();
    let include = mlx.join("include");
    // CMake's compiler probe uses the same flags, so the MLX include dir must be on them too.
    let cxx_flags = format!("-include {} -I{}", compat.display(), include.display());
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    run(
        Command::new(cmake)
            .arg("-S")
            .arg(src)
            .arg("-B")
            .arg(&build)
            .args([
                "-DCMAKE_BUILD_TYPE=Release",
                "-DMLX_C_USE_SYSTEM_MLX=ON",
                "-DMLX_C_BUILD_EXAMPLES=OFF",
                "-DBUILD_SHARED_LIBS=OFF",
                "-DCMAKE_POSITION_INDEPENDENT_CODE=ON",
            ])
            .arg(format!(
                "-DMLX_DIR={}",
                mlx.join("share/cmake/MLX").display()
            ))
            .arg(format!("-DCMAKE_CXX_FLAGS={cxx_flags}")),
        "cmake configure mlx-c",
    );
    run(
        Command::new(cmake).arg("--build").arg(&build).args([
            "--target",
            "mlxc",
            "--parallel",
            &jobs,
        ]),
        "cmake build mlx-c",
    );
    assert!(lib.exists(), "mlx-c build produced no {}", lib.display());
    build
}

/// Our own MLX primitives (csrc/), compiled against the same MLX headers and mlx-c's private
/// array/stream accessors; linked statically ahead of libmlx.
fn build_gguf_ops(mlx: &Path, mlx_c_src: &Path) {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .file(manifest.join("csrc/gguf_ops.cpp"))
        .file(manifest.join("csrc/slot_attention.cpp"))
        .file(manifest.join("csrc/host_op.cpp"))
        .include(mlx.join("include"))
        .include(mlx_c_src)
        .flag("-include")
        .flag(
            manifest
                .join("compat/mlx_c_compat.h")
                .to_string_lossy()
                .as_ref(),
        )
        .flag_if_supported("-Wno-unused-parameter")
        // mlx-c's array.h defines a static it never uses.
        .flag_if_supported("-Wno-unused-variable")
        .opt_level(2)
        .pic(true);
    build.compile("mlx_serve_gguf_ops");
}

/// Links a fast BLAS ahead of libmlx so its `cblas_*gemm` symbols win over the reference BLAS
/// bundled with the CPU wheel (the dynamic linker binds to the first definition in load order).
fn link_blas(backend: Backend, cache: &Path) -> String {
    if backend != Backend::Cpu || env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return "backend".into();
    }
    if env::var("MLX_SERVE_BLAS").as_deref() == Ok("reference") {
        println!("cargo:warning=mlx-sys: MLX_SERVE_BLAS=reference: using the wheel's reference BLAS (about 30x slower matmuls)");
        return "reference".into();
    }
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/openblas-pthread",
        "/usr/lib/aarch64-linux-gnu/openblas-pthread",
        "/usr/lib/x86_64-linux-gnu/openblas-openmp",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ];
    let pypi_only = env::var("MLX_SERVE_BLAS").as_deref() == Ok("pypi");
    for dir in candidates.iter().filter(|_| !pypi_only) {
        let lib = Path::new(dir).join("libopenblas.so.0");
        if lib.exists() {
            use_openblas(Path::new(dir), "libopenblas.so.0");
            println!(
                "cargo:warning=mlx-sys: BLAS = system OpenBLAS ({})",
                lib.display()
            );
            return format!("openblas ({})", lib.display());
        }
    }
    // No system OpenBLAS: PyPI's scipy-openblas32 has one with every symbol prefixed `scipy_`,
    // which our cblas_sgemm (src/lib.rs) calls by those names.
    let site = pip_target(cache, SCIPY_OPENBLAS, "blas-scipy-openblas32");
    let dir = site.join("scipy_openblas32/lib");
    if dir.join("libscipy_openblas.so").exists() {
        use_openblas(&dir, "libscipy_openblas.so");
        println!("cargo:rustc-cfg=mlx_serve_scipy_openblas");
        println!("cargo:warning=mlx-sys: BLAS = OpenBLAS from PyPI ({SCIPY_OPENBLAS}); no system OpenBLAS found");
        return format!("openblas ({SCIPY_OPENBLAS})");
    }
    println!("cargo:warning=mlx-sys: no OpenBLAS found (Debian: apt-get install libopenblas0-pthread); MLX will use the wheel's reference BLAS, about 30x slower on CPU");
    "reference".into()
}

/// OpenBLAS with every symbol prefixed `scipy_`, from PyPI.
const SCIPY_OPENBLAS: &str = "scipy-openblas32==0.3.34.481.3";

fn use_openblas(dir: &Path, file: &str) {
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib:+verbatim={file}");
    println!("cargo:rustc-cfg=mlx_serve_openblas");
    println!("cargo:blas_dir={}", dir.display());
    println!("cargo:blas_lib={file}");
}

/// Makes sure bindgen can load a libclang; returns true when it is PyPI's, which comes without
/// clang's own builtin headers (`stddef.h`, …).
fn find_libclang(cache: &Path) -> bool {
    let force_pypi = env::var("MLX_SERVE_LIBCLANG").as_deref() == Ok("pypi");
    if env::var_os("LIBCLANG_PATH").is_some() && !force_pypi {
        return false;
    }
    let mut system: Vec<PathBuf> = fs::read_dir("/usr/lib")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("llvm-"))
                })
                .map(|p| p.join("lib"))
                .filter(|p| p.join("libclang.so").exists() || p.join("libclang.so.1").exists())
                .collect()
        })
        .unwrap_or_default();
    system.sort();
    if !force_pypi && (system.pop().is_some() || cfg!(target_os = "macos")) {
        return false; // bindgen's own search finds these
    }
    let site = pip_target(cache, "libclang==18.1.1", "tool-libclang");
    let dir = site.join("clang/native");
    println!(
        "cargo:warning=mlx-sys: using libclang from PyPI ({})",
        dir.display()
    );
    // bindgen reads LIBCLANG_PATH when it loads libclang, later in this process.
    env::set_var("LIBCLANG_PATH", dir);
    true
}

/// The C compiler's own header directory (`stddef.h`, `stdbool.h`), for a libclang without its
/// resource headers.
fn compiler_builtin_includes() -> Option<String> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .arg("-print-file-name=include")
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    Path::new(&dir).join("stddef.h").exists().then_some(dir)
}

fn generate_bindings(cache: &Path, src: &Path) {
    let pypi_libclang = find_libclang(cache);
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut headers: Vec<PathBuf> = fs::read_dir(src.join("mlx/c"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    headers.sort();
    let mut builder = bindgen::Builder::default()
        .rust_target("1.73.0".parse().expect("rust target"))
        .clang_arg(format!("-I{}", src.display()))
        .clang_arg("-include")
        .clang_arg(
            manifest
                .join("compat/bindgen_compat.h")
                .display()
                .to_string(),
        )
        .blocklist_function("malloc")
        .blocklist_function("realloc");
    if pypi_libclang {
        if let Some(dir) = compiler_builtin_includes() {
            builder = builder.clang_arg(format!("-isystem{dir}"));
        }
    }
    for h in &headers {
        builder = builder.header(h.to_string_lossy());
    }
    let bindings = builder.generate().expect("bindgen failed on mlx-c headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings.write_to_file(out.join("bindings.rs")).unwrap();
}
