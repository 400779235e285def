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
