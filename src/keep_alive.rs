//! `keep_alive` in a request body, with Ollama's meaning: how long the model stays resident
//! after this request. A number is seconds, a string is a duration (`"5m"`, `"1h30m"`, `"0"`);
//! negative keeps it for ever, 0 unloads it as soon as the request ends.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ApiError;

/// The field as sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum KeepAlive {
    /// Seconds.
    Seconds(f64),
    /// A duration text, or a number in a string.
    Text(String),
}

impl KeepAlive {
    /// The residency it asks for: `None` for ever, `Some(d)` for `d`. Bad text is a 400.
    pub fn residency(&self) -> Result<Option<Duration>, ApiError> {
        let bad = || {
            ApiError::invalid(
                "keep_alive",
                "keep_alive must be seconds (a number; negative keeps the model loaded, 0 \
                 unloads it after the request) or a duration such as \"5m\"",
            )
        };
        let seconds = match self {
            Self::Seconds(s) => *s,
            Self::Text(t) => {
                let t = t.trim();
                match t.parse::<f64>() {
                    Ok(s) => s,
                    Err(_) if t.starts_with('-') => -1.0,
                    Err(_) => humantime::parse_duration(t)
                        .map_err(|_| bad())?
                        .as_secs_f64(),
                }
            }
        };
        if !seconds.is_finite() {
            return Err(bad());
        }
        Ok(crate::config::keep_alive_of(seconds))
    }
}

/// A request's optional field as the pipeline takes it.
pub fn residency(field: &Option<KeepAlive>) -> Result<Option<Option<Duration>>, ApiError> {
    field.as_ref().map(KeepAlive::residency).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<Option<Duration>, ApiError> {
        serde_json::from_value::<KeepAlive>(v).unwrap().residency()
    }

    #[test]
    fn numbers_and_durations_follow_ollama() {
        use serde_json::json;
        assert_eq!(parse(json!(0)).unwrap(), Some(Duration::ZERO));
        assert_eq!(parse(json!(30)).unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(parse(json!(-1)).unwrap(), None);
        assert_eq!(parse(json!("5m")).unwrap(), Some(Duration::from_secs(300)));
        assert_eq!(parse(json!("0")).unwrap(), Some(Duration::ZERO));
        assert_eq!(parse(json!("-1m")).unwrap(), None);
        assert!(parse(json!("soon")).is_err());
    }
}
