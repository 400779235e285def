//! The request trace: one JSON line per finished request, rotated by size
//! (`trace.jsonl` → `trace.jsonl.1` → … → `trace.jsonl.K`, the oldest dropped).
//! Prompt text is written only when asked for.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::events::RequestFinished;

/// `[trace]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceSettings {
    /// JSONL file to append to; no trace when unset.
    pub path: Option<PathBuf>,
    /// Rotate once the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files to keep (`.1` … `.keep`); 0 keeps none.
    pub keep: usize,
    /// Write the prompt text into each line. Off by default: prompts may be private.
    pub include_prompt: bool,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            path: None,
            max_bytes: 64 * 1024 * 1024,
            keep: 5,
            include_prompt: false,
        }
    }
}

/// One line of the trace. Every field but `time` is optional when reading, so older or
/// hand-written traces still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceRecord {
    /// When the request finished, RFC 3339 UTC.
    pub time: String,
    /// Response-cache key of the request (hex), if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// Model id.
    pub model: String,
    /// Route pattern.
    pub route: String,
    /// HTTP status.
    pub status: u16,
    /// Prompt length, tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens reused from the prefix cache.
    pub cached_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// `hit`, `miss`, `bypass` or `uncacheable`.
    pub cache: String,
    /// Seconds waiting for the engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_s: Option<f64>,
    /// Seconds to first token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_s: Option<f64>,
    /// Seconds end to end.
    pub e2e_s: f64,
    /// Names of the tools the model called (`?` where the parser failed before the name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Tool calls that failed to parse.
    #[serde(skip_serializing_if = "is_zero")]
    pub tool_failures: u64,
    /// Finish reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Error type, if the request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Error message, if the request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Prompt text, only with `include_prompt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl TraceRecord {
    /// The line for `ev`, finished at `at`.
    pub fn from_event(ev: &RequestFinished, at: DateTime<Utc>, include_prompt: bool) -> Self {
        TraceRecord {
            time: at.to_rfc3339_opts(SecondsFormat::Micros, true),
            request_hash: ev.request_hash.clone(),
            model: ev.model.clone(),
            route: ev.route.clone(),
            status: ev.status,
            prompt_tokens: ev.prompt_tokens,
            cached_tokens: ev.cached_tokens,
            completion_tokens: ev.completion_tokens,
            cache: ev.cache.as_str().to_string(),
            queue_s: ev.queue_s,
            ttft_s: ev.ttft_s,
            e2e_s: ev.e2e_s,
            tools: ev
                .tool_calls
                .iter()
                .filter(|c| c.ok)
                .map(|c| c.name.clone().unwrap_or_else(|| "?".into()))
                .collect(),
            tool_failures: ev.tool_calls.iter().filter(|c| !c.ok).count() as u64,
            finish_reason: ev.finish_reason.clone(),
            error_type: ev.error_type.clone(),
            error: ev.error_message.clone(),
            prompt: if include_prompt {
                ev.prompt_text.clone()
            } else {
                None
            },
        }
    }
}

/// Writing the trace failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Opening, writing or rotating the file.
    #[error("trace file {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Encoding the record (cannot happen for finite numbers).
    #[error("trace record: {0}")]
    Json(#[from] serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends trace lines to a file and rotates it.
#[derive(Debug)]
pub struct TraceWriter {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    include_prompt: bool,
    file: File,
    size: u64,
}

impl TraceWriter {
    /// Opens (appending) the file the settings name; `Ok(None)` when tracing is off.
    pub fn open(settings: &TraceSettings) -> Result<Option<Self>, TraceError> {
        let Some(path) = settings.path.clone() else {
            return Ok(None);
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let file = open_append(&path)?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        Ok(Some(TraceWriter {
            path,
            max_bytes: settings.max_bytes.max(1),
            keep: settings.keep,
            include_prompt: settings.include_prompt,
            file,
            size,
        }))
    }

    /// Writes the line for `ev`, stamped now.
    pub fn write_event(&mut self, ev: &RequestFinished) -> Result<(), TraceError> {
        let record = TraceRecord::from_event(ev, Utc::now(), self.include_prompt);
        self.write(&record)
    }

    /// Writes one record as one line, rotating first if it would not fit.
    pub fn write(&mut self, record: &TraceRecord) -> Result<(), TraceError> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        // One write call per line so a crash leaves at most one truncated line.
        self.file.write_all(&line).map_err(io_err(&self.path))?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> Result<(), TraceError> {
        if self.keep == 0 {
            fs::remove_file(&self.path).map_err(io_err(&self.path))?;
        } else {
            let oldest = self.rotated(self.keep);
            if oldest.exists() {
                fs::remove_file(&oldest).map_err(io_err(&oldest))?;
            }
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    fs::rename(&from, self.rotated(n + 1)).map_err(io_err(&from))?;
                }
            }
            fs::rename(&self.path, self.rotated(1)).map_err(io_err(&self.path))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, TraceError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::events::{CacheOutcome, ToolCallOutcome};

    fn event() -> RequestFinished {
        RequestFinished {
            route: "/v1/chat/completions".into(),
            model: "qwen".into(),
            status: 200,
            finish_reason: Some("tool_calls".into()),
            cache: CacheOutcome::Miss,
            e2e_s: 1.5,
            ttft_s: Some(0.25),
            queue_s: Some(0.01),
            prompt_tokens: 40,
            cached_tokens: 32,
            completion_tokens: 12,
            tool_calls: vec![
                ToolCallOutcome {
                    format: "hermes".into(),
                    name: Some("get_weather".into()),
                    ok: true,
                },
                ToolCallOutcome {
                    format: "hermes".into(),
                    name: None,
                    ok: false,
                },
            ],
            request_hash: Some("abc123".into()),
            prompt_text: Some("secret prompt".into()),
            ..Default::default()
        }
    }

    fn settings(dir: &Path, max_bytes: u64, keep: usize, include_prompt: bool) -> TraceSettings {
        TraceSettings {
            path: Some(dir.join("trace.jsonl")),
            max_bytes,
            keep,
            include_prompt,
        }
    }

    #[test]
    fn trace_line_has_the_request_fields_and_no_prompt_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TraceWriter::open(&settings(dir.path(), 1 << 20, 2, false))
            .unwrap()
            .unwrap();
        w.write_event(&event()).unwrap();
        let text = fs::read_to_string(dir.path().join("trace.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["request_hash"], "abc123");
        assert_eq!(v["cache"], "miss");
        assert_eq!(v["cached_tokens"], 32);
        assert_eq!(v["tools"], serde_json::json!(["get_weather"]));
        assert_eq!(v["tool_failures"], 1);
        assert_eq!(v["finish_reason"], "tool_calls");
        assert!(v.get("prompt").is_none());
        assert!(!text.contains("secret prompt"));
        assert!(DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn prompt_is_written_only_when_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TraceWriter::open(&settings(dir.path(), 1 << 20, 2, true))
            .unwrap()
            .unwrap();
        w.write_event(&event()).unwrap();
        let text = fs::read_to_string(dir.path().join("trace.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["prompt"], "secret prompt");
    }

    #[test]
    fn rotation_shifts_files_and_keeps_at_most_k() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = {
            let r = TraceRecord::from_event(&event(), Utc::now(), false);
            serde_json::to_vec(&r).unwrap().len() as u64 + 1
        };
        // Room for two lines per file.
        let mut w = TraceWriter::open(&settings(dir.path(), line_len * 2 + 1, 2, false))
            .unwrap()
            .unwrap();
        for i in 0..7 {
            let mut ev = event();
            ev.request_hash = Some(format!("h{i}"));
            w.write_event(&ev).unwrap();
        }
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        // h0..h6, two per file: [h0 h1] dropped, [h2 h3] .2, [h4 h5] .1, [h6] current.
        assert!(read("trace.jsonl").contains("\"h6\""));
        assert_eq!(read("trace.jsonl").lines().count(), 1);
        assert!(
            read("trace.jsonl.1").contains("\"h4\"") && read("trace.jsonl.1").contains("\"h5\"")
        );
        assert!(read("trace.jsonl.2").contains("\"h2\""));
        assert!(!dir.path().join("trace.jsonl.3").exists());
    }

    #[test]
    fn reopening_appends_instead_of_truncating() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 1 << 20, 1, false);
        TraceWriter::open(&s)
            .unwrap()
            .unwrap()
            .write_event(&event())
            .unwrap();
        TraceWriter::open(&s)
            .unwrap()
            .unwrap()
            .write_event(&event())
            .unwrap();
        let text = fs::read_to_string(dir.path().join("trace.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn no_path_means_no_trace() {
        assert!(TraceWriter::open(&TraceSettings::default())
            .unwrap()
            .is_none());
    }
}
