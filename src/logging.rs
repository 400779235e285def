//! `tracing` set-up: `EnvFilter` from `RUST_LOG` or `logging.level`, text or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::config::LoggingSettings;

/// Install the global subscriber (a second call is a no-op, which tests rely on).
pub fn init(settings: &LoggingSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if settings.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
