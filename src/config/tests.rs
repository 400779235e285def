//! Loading, precedence and validation of `Settings`.
use super::*;
use std::io::Write;

fn load(path: &Path, o: &Overrides) -> Result<Settings, ConfigError> {
    Settings::load_with_env(path, true, o, Some(config::Map::new()))
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

#[test]
fn shipped_config_toml_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let s = load(&path, &Overrides::default()).expect("loads");
    assert_eq!(s, Settings::default());
}

#[test]
fn file_values_and_cli_overrides_apply_in_order() {
    let f = file("[server]\nport = 9001\nhost = \"0.0.0.0\"\n[model]\nname = \"a\"\n");
    let o = Overrides {
        port: Some(9002),
        ..Overrides::default()
    };
    let s = load(f.path(), &o).expect("loads");
    assert_eq!(s.server.port, 9002);
    assert_eq!(s.server.host, "0.0.0.0");
    assert_eq!(s.model.name, "a");
}

#[test]
fn environment_overrides_file_and_cli_overrides_environment() {
    let f = file("[server]\nport = 9001\nqueue_size = 5\n");
    let env: config::Map<String, String> = [
        ("MLX_SERVE__SERVER__PORT", "9100"),
        ("MLX_SERVE__SERVER__QUEUE_SIZE", "7"),
        ("MLX_SERVE__SERVER__API_KEYS", "k1,k2"),
        ("MLX_SERVE__LOGGING__JSON", "true"),
        ("MLX_SERVE__MODEL__SAMPLING__TEMPERATURE", "0.5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let o = Overrides {
        port: Some(9200),
        ..Overrides::default()
    };
    let s = Settings::load_with_env(f.path(), true, &o, Some(env)).expect("loads");
    assert_eq!(s.server.port, 9200);
    assert_eq!(s.server.queue_size, 7);
    assert_eq!(s.server.api_keys, vec!["k1", "k2"]);
    assert!(s.logging.json);
    assert_eq!(s.model.sampling.temperature, 0.5);
}

#[test]
fn out_of_range_value_names_key_and_range() {
    let f = file("[server]\nqueue_size = 0\n");
    let err = load(f.path(), &Overrides::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("server.queue_size"), "{msg}");
    assert!(msg.contains("1 ..= 100000"), "{msg}");
}

#[test]
fn wrong_type_names_the_key() {
    let f = file("[server]\nport = \"many\"\n");
    let err = load(f.path(), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("port"), "{err}");
}

#[test]
fn unknown_key_is_rejected() {
    let f = file("[server]\nprot = 1\n");
    let err = load(f.path(), &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("prot"), "{err}");
}

#[test]
fn cache_section_loads_from_file_and_environment_and_is_validated() {
    let f = file("[cache]\npolicy = \"always\"\n[cache.disk]\nenabled = true\n");
    let env: config::Map<String, String> = [
        ("MLX_SERVE__CACHE__MAX_ENTRIES", "7"),
        ("MLX_SERVE__CACHE__DISK__PATH", "/tmp/x.redb"),
        ("MLX_SERVE__CACHE__REDIS__URL", "redis://127.0.0.1:6379"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let s =
        Settings::load_with_env(f.path(), true, &Overrides::default(), Some(env)).expect("loads");
    assert_eq!(s.cache.policy, mlx_serve_actors::cache::CachePolicy::Always);
    assert_eq!(s.cache.max_entries, 7);
    assert!(s.cache.disk.enabled);
    assert_eq!(s.cache.disk.path, PathBuf::from("/tmp/x.redb"));
    assert_eq!(s.cache.redis.url.as_deref(), Some("redis://127.0.0.1:6379"));

    let mut bad = Settings::default();
    bad.cache.redis.url = Some("http://x".into());
    let msg = bad.validate().unwrap_err().to_string();
    assert!(msg.contains("cache.redis.url"), "{msg}");
    let mut bad = Settings::default();
    bad.cache.max_entries = 0;
    let msg = bad.validate().unwrap_err().to_string();
    assert!(msg.contains("cache.max_entries"), "{msg}");
}

#[test]
fn alias_table_replaces_the_claude_default() {
    assert_eq!(
        Settings::default()
            .aliases
            .0
            .get("claude-*")
            .map(String::as_str),
        Some("")
    );
    let f = file("[aliases]\n\"gpt-*\" = \"m\"\n\"claude-3-*\" = \"\"\n");
    let s = load(f.path(), &Overrides::default()).expect("loads");
    let pairs: Vec<_> = s.aliases.0.into_iter().collect();
    assert_eq!(
        pairs,
        vec![
            ("claude-3-*".to_owned(), String::new()),
            ("gpt-*".to_owned(), "m".to_owned())
        ]
    );
}

#[test]
fn bad_dtype_lists_accepted_values() {
    let mut s = Settings::default();
    s.model.dtype = "int3".into();
    let msg = s.validate().unwrap_err().to_string();
    assert!(
        msg.contains("model.dtype") && msg.contains("bfloat16"),
        "{msg}"
    );
}

#[test]
fn the_single_model_section_is_a_preloaded_one_entry_table() {
    let f = file("[model]\nname = \"/m/tiny.gguf\"\naliases = [\"t\"]\n");
    let s = load(f.path(), &Overrides::default()).expect("loads");
    let table = s.model_table();
    assert_eq!(table.len(), 1);
    assert_eq!(table[0].id, "tiny");
    assert!(table[0].preload && table[0].legacy);
    assert_eq!(table[0].keep_alive, None);
    assert!(table[0].accepts("t") && table[0].accepts("/m/tiny.gguf"));
}

#[test]
fn models_entries_form_the_table_with_their_own_settings() {
    let f = file(
        "[server]\nmax_loaded_models = 1\nmax_loaded_bytes = 1000000\n\
         [[models]]\nname = \"smollm2-135m-instruct\"\npreload = true\n\
         [[models]]\nname = \"/m/coder.gguf\"\nid = \"coder\"\nkeep_alive = 0\n\
         prefill_chunk = 64\n[models.sampling]\ntemperature = 0.2\n",
    );
    let s = load(f.path(), &Overrides::default()).expect("loads");
    assert_eq!(
        (s.server.max_loaded_models, s.server.max_loaded_bytes),
        (1, 1_000_000)
    );
    let t = s.model_table();
    let ids: Vec<&str> = t.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["smollm2-135m-instruct", "coder"]);
    assert!(t[0].preload && !t[1].preload && !t[0].legacy);
    assert_eq!(t[1].keep_alive, Some(std::time::Duration::ZERO));
    assert_eq!(t[1].settings.prefill_chunk, 64);
    assert_eq!(t[1].settings.sampling.temperature, 0.2);
    // `--model` serves that one model instead of the table.
    let o = Overrides {
        model: Some("x.gguf".into()),
        ..Overrides::default()
    };
    let s = load(f.path(), &o).expect("loads");
    assert_eq!(s.model_table().len(), 1);
    assert_eq!(s.model_table()[0].id, "x");
}

#[test]
fn model_entries_are_validated_by_index_and_ids_must_be_unique() {
    let f = file("[[models]]\nname = \"a\"\n[[models]]\nname = \"b\"\ndtype = \"int3\"\n");
    let msg = load(f.path(), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("models[1].dtype"), "{msg}");
    let f = file("[[models]]\nname = \"a\"\n[[models]]\nname = \"b\"\naliases = [\"a\"]\n");
    let msg = load(f.path(), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("models[1].id") && msg.contains("\"a\""),
        "{msg}"
    );
    let f = file("[[models]]\nname = \"\"\n");
    let msg = load(f.path(), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("models[0].name"), "{msg}");
}
