use std::cell::RefCell;
use std::io::Write;

use sha2::{Digest, Sha256};

use super::pull::{cached_wheel, pull_model};
use super::*;

fn no_progress(_: &PullProgress) {}

/// Records the phases a pull went through.
#[derive(Default)]
struct Phases(RefCell<Vec<PullPhase>>);

impl Phases {
    fn record(&self, p: &PullProgress) {
        let mut v = self.0.borrow_mut();
        if v.last() != Some(&p.phase) {
            v.push(p.phase.clone());
        }
    }
    fn take(&self) -> Vec<PullPhase> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

fn downloaded(phases: &[PullPhase]) -> bool {
    phases
        .iter()
        .any(|p| matches!(p, PullPhase::Downloading { .. }))
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn catalog_entries_are_consistent() {
    assert!(find(DEFAULT_MODEL).is_some());
    for m in CATALOG {
        assert_eq!(
            m.parts.iter().map(|p| p.size).sum::<u64>(),
            m.size,
            "{}",
            m.name
        );
        assert_eq!(m.sha256.len(), 64);
        assert!(m
            .sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(m.file_name.ends_with(".gguf"));
    }
    assert_eq!(
        find("TINY-Random-Llama").map(|m| m.name),
        Some("tiny-random-llama")
    );
}

#[test]
fn resolve_accepts_a_gguf_file_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("m.gguf");
    std::fs::write(&file, b"GGUF\x03\0\0\0rest").expect("write");
    let arg = file.to_string_lossy().into_owned();
    let got = resolve_model(&arg, dir.path(), &no_progress).expect("resolves");
    assert_eq!(got, ResolvedModel::Gguf(file));
}

#[test]
fn resolve_rejects_a_file_without_gguf_magic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("weights.bin");
    std::fs::write(&file, b"PK\x03\x04").expect("write");
    let err = resolve_model(&file.to_string_lossy(), dir.path(), &no_progress);
    assert!(matches!(err, Err(PullError::NotGguf(p)) if p == file));
}

#[test]
fn resolve_accepts_a_hugging_face_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.json"), "{}").expect("write");
    let got = resolve_model(&dir.path().to_string_lossy(), dir.path(), &no_progress);
    assert_eq!(got.ok(), Some(ResolvedModel::HfDir(dir.path().to_owned())));
}

#[test]
fn resolve_accepts_a_directory_with_exactly_one_gguf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("only.gguf");
    std::fs::write(&file, b"GGUF....").expect("write");
    let arg = dir.path().to_string_lossy().into_owned();
    assert_eq!(
        resolve_model(&arg, dir.path(), &no_progress).ok(),
        Some(ResolvedModel::Gguf(file))
    );
    std::fs::write(dir.path().join("second.gguf"), b"GGUF....").expect("write");
    let err = resolve_model(&arg, dir.path(), &no_progress);
    assert!(matches!(
        err,
        Err(PullError::NotAModelDir { gguf_files: 2, .. })
    ));
}

#[test]
fn resolve_of_an_unknown_name_lists_the_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = resolve_model("gpt-7", dir.path(), &no_progress).expect_err("unknown");
    let msg = err.to_string();
    assert!(matches!(err, PullError::UnknownModel { .. }));
    for m in CATALOG {
        assert!(msg.contains(m.name), "{msg}");
    }
}

#[test]
fn resolve_of_a_missing_path_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.gguf");
    let err = resolve_model(&missing.to_string_lossy(), dir.path(), &no_progress);
    assert!(matches!(err, Err(PullError::PathNotFound(p)) if p == missing));
}

#[test]
fn models_dir_prefers_the_override_then_xdg_then_home() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    };
    assert_eq!(
        models_dir_from(env(&[
            ("MLX_SERVE_MODELS", "/m"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h")
        ])),
        PathBuf::from("/m")
    );
    assert_eq!(
        models_dir_from(env(&[
            ("MLX_SERVE_MODELS", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h")
        ])),
        PathBuf::from("/x/mlx-serve/models")
    );
    assert_eq!(
        models_dir_from(env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")])),
        PathBuf::from("/h/.cache/mlx-serve/models")
    );
}

/// Writes a wheel named as pip would name it, holding `member` = `content`.
fn write_wheel(wheels_dir: &Path, package: &str, version: &str, member: &str, content: &[u8]) {
    std::fs::create_dir_all(wheels_dir).expect("mkdir");
    let name = format!("{}-{version}-py3-none-any.whl", package.replace('-', "_"));
    let file = std::fs::File::create(wheels_dir.join(name)).expect("create wheel");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(member, options).expect("start member");
    zip.write_all(content).expect("write member");
    zip.finish().expect("finish wheel");
}

/// A two-part model whose wheels are already in the cache (no pip involved).
fn fake_model(models_dir: &Path, sha256: Option<&str>) -> (CatalogModel, Vec<u8>) {
    let a: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b: Vec<u8> = (0..123_457u32).map(|i| (i * 13 % 241) as u8).collect();
    let wheels = models_dir.join(".wheels");
    write_wheel(&wheels, "fake-part1", "1.0", "fake_part1/data/a.bin", &a);
    write_wheel(&wheels, "fake-part2", "1.0", "fake_part2/data/b.bin", &b);
    let whole = [a.as_slice(), b.as_slice()].concat();
    let sha = sha256.map_or_else(|| sha_hex(&whole), str::to_owned);
    let parts: &'static [WheelPart] = Box::leak(Box::new([
        WheelPart {
            package: "fake-part1",
            version: "1.0",
            member: "fake_part1/data/a.bin",
            size: a.len() as u64,
        },
        WheelPart {
            package: "fake-part2",
            version: "1.0",
            member: "fake_part2/data/b.bin",
            size: b.len() as u64,
        },
    ]));
    let model = CatalogModel {
        name: "fake",
        description: "test",
        file_name: "fake.gguf",
        size: whole.len() as u64,
        sha256: Box::leak(sha.into_boxed_str()),
        parts,
    };
    (model, whole)
}

#[test]
fn multi_part_pull_concatenates_members_in_order_from_cached_wheels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, whole) = fake_model(dir.path(), None);
    let phases = Phases::default();
    let path = pull_model(&model, dir.path(), &|p| phases.record(p)).expect("pull works");
    assert_eq!(path, dir.path().join("fake").join("fake.gguf"));
    assert_eq!(std::fs::read(&path).expect("read"), whole);
    let seen = phases.take();
    assert!(!downloaded(&seen), "wheels were cached: {seen:?}");
    assert!(seen.contains(&PullPhase::Extracting));
    assert_eq!(
        seen.last(),
        Some(&PullPhase::Done {
            already_present: false
        })
    );
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("fake"))
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn checksum_mismatch_deletes_the_output_and_the_wheels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, _) = fake_model(dir.path(), Some(&"0".repeat(64)));
    let err = pull_model(&model, dir.path(), &no_progress).expect_err("mismatch");
    assert!(matches!(err, PullError::ChecksumMismatch { .. }), "{err}");
    assert!(!dir.path().join("fake").join("fake.gguf").exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join(".wheels"))
            .expect("ls")
            .count(),
        0
    );
    assert!(std::fs::read_dir(dir.path().join("fake"))
        .expect("ls")
        .next()
        .is_none());
}

#[test]
fn damaged_cached_wheel_is_discarded_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, _) = fake_model(dir.path(), None);
    let wheels = dir.path().join(".wheels");
    let wheel = wheels.join("fake_part2-1.0-py3-none-any.whl");
    assert_eq!(
        cached_wheel(&model.parts[1], &wheels).ok().flatten(),
        Some(wheel.clone())
    );
    std::fs::write(&wheel, b"not a zip").expect("damage");
    assert_eq!(cached_wheel(&model.parts[1], &wheels).ok().flatten(), None);
    assert!(!wheel.exists());
    // The intact part is still trusted.
    assert!(cached_wheel(&model.parts[0], &wheels)
        .ok()
        .flatten()
        .is_some());
}

fn modify_in_place(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(path, &bytes).expect("write");
    // Make the change visible to an mtime check even on coarse-grained file systems.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(later).expect("set mtime");
}

#[test]
fn modified_model_file_is_detected_and_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, whole) = fake_model(dir.path(), None);
    let path = pull_model(&model, dir.path(), &no_progress).expect("pull works");
    modify_in_place(&path);
    let phases = Phases::default();
    pull_model(&model, dir.path(), &|p| phases.record(p)).expect("re-pull works");
    let seen = phases.take();
    assert!(
        seen.contains(&PullPhase::Verifying) && seen.contains(&PullPhase::Extracting),
        "{seen:?}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), whole);
}

/// Talks to PyPI through pip: the real catalog entry, end to end.
#[test]
fn pull_tiny_random_llama_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let phases = Phases::default();
    let path = pull("tiny-random-llama", dir.path(), &|p| phases.record(p)).expect("pull works");
    let first = phases.take();
    assert!(downloaded(&first), "{first:?}");
    let bytes = std::fs::read(&path).expect("read");
    let model = find("tiny-random-llama").expect("in catalog");
    assert_eq!(bytes.len() as u64, model.size);
    assert_eq!(sha_hex(&bytes), model.sha256);
    assert_eq!(&bytes[..4], b"GGUF");

    // Second pull: nothing downloaded, extracted or re-hashed.
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let again = pull("tiny-random-llama", dir.path(), &|p| phases.record(p)).expect("no-op pull");
    assert_eq!(again, path);
    assert_eq!(
        phases.take(),
        vec![PullPhase::Done {
            already_present: true
        }]
    );
    assert_eq!(
        std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime"),
        mtime
    );

    // Corrupted: re-verified, found bad, restored from the kept wheel without pip.
    modify_in_place(&path);
    pull("tiny-random-llama", dir.path(), &|p| phases.record(p)).expect("repair pull");
    let repair = phases.take();
    assert!(!downloaded(&repair), "{repair:?}");
    assert!(repair.contains(&PullPhase::Verifying), "{repair:?}");
    assert_eq!(sha_hex(&std::fs::read(&path).expect("read")), model.sha256);

    assert_eq!(
        local_path("tiny-random-llama", dir.path()),
        Some(path.clone())
    );
    assert_eq!(local_path("smollm2-135m-instruct", dir.path()), None);

    // resolve_model on the catalog name finds the same file.
    let resolved = resolve_model("tiny-random-llama", dir.path(), &no_progress).expect("resolves");
    assert_eq!(resolved, ResolvedModel::Gguf(path));
}
