//! `[metrics]` settings and the checks on them and on `[trace]`.

use std::time::Duration;

use mlx_serve_actors::metrics::{TraceSettings, WindowSettings};
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Run the metrics actor and serve `GET /metrics` and `GET /v1/stats`.
    pub enabled: bool,
    /// Latency percentiles in `/health` and `/v1/stats` cover at most this many recent requests.
    pub window_max_requests: usize,
    /// … finished at most this many seconds ago.
    pub window_max_age_s: u64,
    /// Milliseconds between publications of the queue, running and prefix-cache gauges.
    pub publish_interval_ms: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        let w = WindowSettings::default();
        Self {
            enabled: true,
            window_max_requests: w.max_requests,
            window_max_age_s: w.max_age_secs,
            publish_interval_ms: 1000,
        }
    }
}

impl MetricsSettings {
    /// The latency window these settings describe.
    pub fn window(&self) -> WindowSettings {
        WindowSettings {
            max_requests: self.window_max_requests,
            max_age_secs: self.window_max_age_s,
        }
    }

    /// How often the engine gauges are published.
    pub fn publish_interval(&self) -> Duration {
        Duration::from_millis(self.publish_interval_ms)
    }
}

fn invalid(key: &'static str, value: impl ToString, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        expected,
    }
}

/// Reject `[metrics]` and `[trace]` values outside their ranges, naming the key.
pub fn validate(metrics: &MetricsSettings, trace: &TraceSettings) -> Result<(), ConfigError> {
    if !(1..=1_000_000).contains(&metrics.window_max_requests) {
        return Err(invalid(
            "metrics.window_max_requests",
            metrics.window_max_requests,
            "1 ..= 1000000",
        ));
    }
    if !(1..=86_400 * 7).contains(&metrics.window_max_age_s) {
        return Err(invalid(
            "metrics.window_max_age_s",
            metrics.window_max_age_s,
            "1 ..= 604800 seconds",
        ));
    }
    if !(10..=60_000).contains(&metrics.publish_interval_ms) {
        return Err(invalid(
            "metrics.publish_interval_ms",
            metrics.publish_interval_ms,
            "10 ..= 60000 milliseconds",
        ));
    }
    if let Some(path) = &trace.path {
        if path.as_os_str().is_empty() || path.is_dir() {
            return Err(invalid(
                "trace.path",
                path.display(),
                "a file path (unset for no trace)",
            ));
        }
    }
    if trace.max_bytes < 4096 {
        return Err(invalid(
            "trace.max_bytes",
            trace.max_bytes,
            "at least 4096 bytes",
        ));
    }
    if trace.keep > 1000 {
        return Err(invalid("trace.keep", trace.keep, "0 ..= 1000"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(validate(&MetricsSettings::default(), &TraceSettings::default()).is_ok());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let m = MetricsSettings {
            window_max_requests: 0,
            ..MetricsSettings::default()
        };
        let e = validate(&m, &TraceSettings::default())
            .err()
            .map(|e| e.to_string());
        assert!(e
            .unwrap_or_default()
            .contains("metrics.window_max_requests"));
        let t = TraceSettings {
            max_bytes: 10,
            ..TraceSettings::default()
        };
        let e = validate(&MetricsSettings::default(), &t)
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("trace.max_bytes"));
        let t = TraceSettings {
            path: Some(std::env::temp_dir()),
            ..TraceSettings::default()
        };
        let e = validate(&MetricsSettings::default(), &t)
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("trace.path"));
    }
}
