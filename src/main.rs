use std::process::ExitCode;

use clap::Parser;
use mlx_serve::cli::{self, Cli, Engines};

/// The real engine's loader: MLX when built with it (the default).
fn engines() -> Engines {
    #[cfg(feature = "mlx")]
    let real = Some(cli::engine_loader::mlx_factory as cli::serve::EngineLoader);
    #[cfg(not(feature = "mlx"))]
    let real = None;
    Engines { real }
}

/// OpenBLAS picks its kernels when it loads, before `main`; one that does not know this CPU falls
/// back to a generic kernel. Then the process starts itself again with `OPENBLAS_CORETYPE` set
/// (once: the variable is then set), so no one serves on a slow kernel silently.
#[cfg(all(feature = "mlx", unix))]
fn ensure_fast_blas() {
    use std::os::unix::process::CommandExt;
    let Some(core) = mlx_sys::blas_core() else {
        return;
    };
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
        return;
    }
    if let Some(better) = mlx_sys::better_blas_core(&core) {
        eprintln!(
            "mlx-serve: OpenBLAS chose the {core} kernels on a CPU that runs {better}; \
             restarting with OPENBLAS_CORETYPE={better}"
        );
        if let Ok(exe) = std::env::current_exe() {
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("OPENBLAS_CORETYPE", better)
                .exec();
            eprintln!("mlx-serve: restart failed ({err}); going on with {core}");
        }
    }
}

fn main() -> ExitCode {
    #[cfg(all(feature = "mlx", unix))]
    ensure_fast_blas();
    match cli::run(Cli::parse(), engines()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlx-serve: {e}");
            ExitCode::FAILURE
        }
    }
}
