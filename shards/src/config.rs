//! Configuration: command line and TOML file (being built).
