//! The log settings: the level filter (`--log-level`, `registrar.log_level`) checked
//! by name, and the line format (`--log-format`, `registrar.log_format`).

use super::ConfigError;

/// The level names a filter directive may end in.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(ConfigError::Invalid(format!(
                "unknown log format {other:?}: expected text or json"
            ))),
        }
    }
}

/// Checks a log filter: a level name, or comma-separated directives each a level or
/// `target=level`. `EnvFilter` alone takes a misspelt level (`inf`) for a target and
/// then logs nothing, so every level is checked by name here first.
pub fn check_log_level(filter: &str) -> Result<(), ConfigError> {
    let unknown = |level: &str, directive: &str| {
        let within = if directive == filter {
            String::new()
        } else {
            format!(" in directive {directive:?}")
        };
        ConfigError::Invalid(format!(
            "unknown log level {level:?}{within}: expected one of {}, or target=level directives",
            LEVELS.join(", ")
        ))
    };
    if filter.trim().is_empty() {
        return Err(unknown(filter, filter));
    }
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        // A span filter (`target[span{field=value}]=level`) holds `=` too: the level
        // is after the last one.
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            _ => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level.trim())) {
            return Err(unknown(level, directive));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_accepted() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "warn,rserpool_shards=debug",
            "rserpool::registrar=trace, info",
            "rserpool[shard{id=0}]=debug",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_misspelt_level_is_named() {
        let e = check_log_level("inf").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown log level \"inf\": expected one of error, warn, info, debug, trace, off, or target=level directives"
        );
        let e = check_log_level("warn,rserpool=dbug")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown log level \"dbug\" in directive \"rserpool=dbug\""),
            "{e}"
        );
        assert!(check_log_level("").is_err());
        assert!(check_log_level("rserpool=").is_err());
        assert!(check_log_level("=info").is_err());
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
