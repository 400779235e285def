//! `mlx-serve serve`: load settings, pick the engine, run the server.

use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "testing")]
use std::time::Duration;

use clap::Args;
use mlx_serve_actors::model::actor::EngineFactory;
#[cfg(feature = "testing")]
use mlx_serve_engine::engine::Engine;
#[cfg(feature = "testing")]
use mlx_serve_engine::fake::{FakeConfig, FakeEngine, Script};

use super::CliError;
use crate::config::{ModelEntry, Overrides, Settings};
use crate::state::ModelLoader;

/// Builds the real engine's factory for one model of the table (wired by main.rs).
pub type EngineLoader = fn(&ModelEntry, &Settings) -> EngineFactory;

/// `serve` flags; they override `config.toml` and the environment.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Configuration file (default: ./config.toml if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to bind (`server.host`).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind (`server.port`).
    #[arg(long)]
    pub port: Option<u16>,
    /// Model name or path (`model.name`).
    #[arg(long)]
    pub model: Option<String>,
    /// Serve the deterministic fake engine (echoes the last message) instead of a model.
    #[arg(long)]
    pub fake: bool,
    /// With --fake: milliseconds per generated token.
    #[arg(long, default_value_t = 0)]
    pub fake_token_delay_ms: u64,
    /// With --fake: play the replies of this JSON file in order (an array of strings, or of
    /// `{"match": TEXT, "reply": TEXT}` objects applied only to a prompt containing TEXT), as raw
    /// model text; requests after the last reply are echoed.
    #[arg(long, requires = "fake")]
    pub script: Option<PathBuf>,
}

/// A factory for the fake engine, configured from one model's entry.
#[cfg(feature = "testing")]
pub fn fake_factory(
    entry: &ModelEntry,
    token_delay: Duration,
    script: Option<Script>,
) -> EngineFactory {
    let m = &entry.settings;
    let config = FakeConfig {
        model_id: entry.id.clone(),
        context_length: if m.context_length == 0 {
            2048
        } else {
            m.context_length
        },
        token_delay,
        max_running: 1,
        script,
    };
    Arc::new(move || Ok(Box::new(FakeEngine::new(config.clone())) as Box<dyn Engine>))
}

/// Run the server until SIGTERM/ctrl-c or a fatal engine failure.
pub fn run(args: ServeArgs, real: Option<EngineLoader>) -> Result<(), CliError> {
    let fake = if args.fake {
        Some(fake_loader(&args)?)
    } else {
        None
    };
    let settings = Settings::load(&Overrides {
        config: args.config,
        host: args.host,
        port: args.port,
        model: args.model,
    })?;
    crate::logging::init(&settings.logging);
    let loader: ModelLoader = if let Some(fake) = fake {
        fake
    } else {
        match real {
            Some(load) => Arc::new(load),
            None => return Err(CliError::NoEngine),
        }
    };
    crate::server::run_server_models(settings, loader, Default::default())?;
    Ok(())
}

/// `--fake`: the fake engine for every model, playing `--script` when given.
#[cfg(feature = "testing")]
fn fake_loader(args: &ServeArgs) -> Result<ModelLoader, CliError> {
    let script = match &args.script {
        Some(path) => {
            let json = std::fs::read_to_string(path).map_err(|e| CliError::Script {
                path: path.clone(),
                why: e.to_string(),
            })?;
            Some(Script::from_json(&json).map_err(|e| CliError::Script {
                path: path.clone(),
                why: e.to_string(),
            })?)
        }
        None => None,
    };
    let delay = Duration::from_millis(args.fake_token_delay_ms);
    Ok(Arc::new(move |entry, _| {
        fake_factory(entry, delay, script.clone())
    }))
}

#[cfg(not(feature = "testing"))]
fn fake_loader(_: &ServeArgs) -> Result<ModelLoader, CliError> {
    Err(CliError::NoFake)
}
