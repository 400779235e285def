//! `mlx-serve ps`: what a running server has loaded (like `ollama ps`), read from its `/health`.

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

/// `ps` flags.
#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "MLX_SERVE_URL")]
    pub url: String,
    /// Also list configured models that are not loaded.
    #[arg(long, short)]
    pub all: bool,
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "-".to_owned(),
        Some(s) => humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string(),
    }
}

/// The table for a `/health` body: one row per loaded model (all with `all`).
pub fn render(health: &Value, all: bool) -> String {
    let mut out = format!(
        "{:<32} {:<9} {:>8} {:>7} {:>12} {:>12}\n",
        "NAME", "STATE", "SIZE", "ACTIVE", "IDLE", "UNLOADS IN"
    );
    let rows = health["models"].as_array().cloned().unwrap_or_default();
    for m in rows {
        let state = m["state"].as_str().unwrap_or("?");
        if !all && !matches!(state, "ready" | "loading") {
            continue;
        }
        let until = match (state, m["keep_alive_s"].as_f64()) {
            ("ready", None) => "forever".to_owned(),
            _ => seconds(m["expires_in_s"].as_f64()),
        };
        let _ = writeln!(
            out,
            "{:<32} {:<9} {:>8} {:>7} {:>12} {:>12}",
            m["id"].as_str().unwrap_or("?"),
            state,
            bytes(m["resident_bytes"].as_u64().unwrap_or(0)),
            m["active_requests"].as_u64().unwrap_or(0),
            seconds(m["idle_s"].as_f64()),
            until,
        );
        if let Some(e) = m["error"].as_str() {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    out
}

/// Ask the server and print the table.
pub fn run(args: PsArgs) -> anyhow::Result<()> {
    let url = format!("{}/health", args.url.trim_end_matches('/'));
    // A 503 (a model still loading or failed) carries the same JSON.
    let response = match ureq::get(&url).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e).with_context(|| format!("no mlx-serve answers at {url}")),
    };
    let body = response
        .into_string()
        .with_context(|| format!("reading {url}"))?;
    let health: Value =
        serde_json::from_str(&body).with_context(|| format!("{url} did not answer with JSON"))?;
    print!("{}", render(&health, args.all));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_loaded_models_with_size_and_idle_time() {
        let health = json!({"models": [
            {"id": "smollm2-135m-instruct", "state": "ready", "resident_bytes": 1_074_000_000u64,
             "active_requests": 0, "idle_s": 65.0, "keep_alive_s": 300.0, "expires_in_s": 235.0},
            {"id": "coder", "state": "unloaded", "resident_bytes": 0, "active_requests": 0,
             "keep_alive_s": null},
            {"id": "broken", "state": "failed", "resident_bytes": 0, "active_requests": 0,
             "error": "bad magic"}
        ]});
        let t = render(&health, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[1].starts_with("smollm2-135m-instruct"), "{t}");
        assert!(
            lines[1].contains("1 GB") && lines[1].contains("1m 5s"),
            "{t}"
        );
        assert!(lines[1].contains("3m 55s"), "{t}");
        let t = render(&health, true);
        assert!(t.contains("coder") && t.contains("error: bad magic"), "{t}");
    }
}
