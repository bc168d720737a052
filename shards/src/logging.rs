//! The registrar binary's log output: stderr, colours only on a terminal (and without
//! NO_COLOR), text or JSON lines, and a level filter that SIGHUP can change
//! ([`Logging::set_level`]).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::{LogFormat, check_log_level};

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    Level(#[from] crate::config::ConfigError),
    #[error("invalid log level {level:?}: {message}")]
    Filter { level: String, message: String },
    #[error("cannot change the log level: {0}")]
    Reload(String),
    #[error("cannot set up logging: {0}")]
    Init(String),
}

/// The installed subscriber's level filter.
#[derive(Debug)]
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
}

/// Installs the process's subscriber: `format` lines on stderr, filtered by `level`
/// (checked by [`check_log_level`]).
pub fn init(level: &str, format: LogFormat) -> Result<Logging, LogError> {
    let (filter, handle) = reload::Layer::new(filter(level)?);
    // https://no-color.org: a non-empty NO_COLOR turns colours off on a terminal too.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi)
                    .with_target(false),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .with_target(false),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .map_err(|e| LogError::Init(e.to_string()))?;
    Ok(Logging { filter: handle })
}

impl Logging {
    /// Replaces the level filter; on an error the old one stays.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let f = filter(level)?;
        self.filter
            .reload(f)
            .map_err(|e| LogError::Reload(e.to_string()))
    }
}

fn filter(level: &str) -> Result<EnvFilter, LogError> {
    check_log_level(level)?;
    EnvFilter::try_new(level).map_err(|e| LogError::Filter {
        level: level.to_owned(),
        message: e.to_string(),
    })
}
