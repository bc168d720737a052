//! The settings as operators give them: defaults, the file, flags and their errors.

use super::*;

fn file(text: &str) -> Result<FileConfig, ConfigError> {
    FileConfig::parse(text, Path::new("test.toml"))
}

#[test]
fn defaults_with_no_arguments() {
    let s = settings(&Cli::default(), &FileConfig::default(), 2, 77).unwrap();
    assert_eq!(s.runtime.shards, 2);
    assert_eq!(
        s.runtime.asap,
        vec![
            parse_endpoint("sctp://0.0.0.0:3863").unwrap(),
            parse_endpoint("tcp://0.0.0.0:3863").unwrap()
        ]
    );
    assert_eq!(s.runtime.registrar.id, RegistrarId(77));
    assert_eq!(
        s.runtime.registrar.keep_alive_interval,
        Duration::from_secs(5)
    );
    assert_eq!(s.runtime.registrar.max_resolution_items, 3);
    assert_eq!(s.runtime.registrar.resolution_items_limit, 128);
    assert!(!s.runtime.registrar.allow_loopback);
    assert!(s.runtime.pin_cores);
    assert_eq!(s.metrics, None);
    assert_eq!(s.log_level, "info");
}

#[test]
fn unknown_keys_are_named() {
    let err = file("[asap]\nkeep_alive_intervall_ms = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("keep_alive_intervall_ms"), "{err}");
    assert!(err.contains("test.toml"), "{err}");
    let err = file("[nonsense]\n").unwrap_err().to_string();
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn flags_override_the_file() {
    let f = file("[asap]\nlisten = [\"tcp://127.0.0.1:4000\"]\nkeep_alive_interval_ms = 900\n")
        .unwrap();
    let cli = Cli::parse_from(["x", "--keep-alive-interval", "100", "--shards", "1"]);
    let s = settings(&cli, &f, 8, 1).unwrap();
    assert_eq!(
        s.runtime.registrar.keep_alive_interval,
        Duration::from_millis(100)
    );
    assert_eq!(
        s.runtime.asap,
        vec![Endpoint::Tcp("127.0.0.1:4000".parse().unwrap())]
    );
    assert_eq!(s.runtime.shards, 1);
}

#[test]
fn bad_values_get_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--asap", "udp://1.2.3.4:5"], "unknown scheme"),
        (&["--asap", "udp://x"], "unknown scheme"),
        (&["--asap", "tcp://nowhere"], "not an address"),
        (&["--asap", "3863"], "no scheme"),
        (&["--keep-alive-timeout", "0"], "keep-alive timeout"),
        (&["--max-resolution-items", "129"], "max resolution items"),
        (
            &["--resolution-items-limit", "1025"],
            "resolution items limit",
        ),
        (&["--resolution-items-limit", "0"], "resolution items limit"),
        (&["--registrar-id", "0"], "must not be 0"),
        (&["--registrar-id", "0xzz"], "invalid registrar ID"),
        (&["--id", "0"], "must not be 0"),
        (&["--id", "4294967296"], "invalid registrar ID"),
        (&["--shards", "0"], "shards"),
        (&["--announce-group", "10.0.0.1:3863"], "not a multicast"),
    ];
    for (args, want) in cases {
        let cli = Cli::parse_from(std::iter::once("x").chain(args.iter().copied()));
        let err = settings(&cli, &FileConfig::default(), 2, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let f = file("[asap]\nregistration_life_unit = \"minutes\"\n").unwrap();
    let err = settings(&Cli::default(), &f, 2, 1).unwrap_err().to_string();
    assert!(err.contains("registration_life_unit"), "{err}");
    assert!(file("[asap]\nkeep_alive_interval_ms = \"fast\"\n").is_err());
}

#[test]
fn hex_ids_and_ipv6_endpoints() {
    let cli = Cli::parse_from([
        "x",
        "--registrar-id",
        "0x0A0B0C0D",
        "--asap",
        "sctp://[::1]:3863",
    ]);
    let s = settings(&cli, &FileConfig::default(), 1, 1).unwrap();
    assert_eq!(s.runtime.registrar.id, RegistrarId(0x0a0b_0c0d));
    assert_eq!(
        s.runtime.asap,
        vec![Endpoint::Sctp("[::1]:3863".parse().unwrap())]
    );
}

#[test]
fn the_example_config_in_deploy_parses_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/registrar.toml");
    let f = FileConfig::load(&path).unwrap();
    // With ENRP on too, so that its section's values are compared as well.
    for cli in [
        Cli::default(),
        Cli::parse_from(["x", "--enrp", "sctp://0.0.0.0:9901"]),
    ] {
        let from_file = settings(&cli, &f, 2, 1).unwrap();
        let defaults = settings(&cli, &FileConfig::default(), 2, 1).unwrap();
        // The example spells out every default (except the ID and seed, random by
        // default).
        let mut a = from_file.runtime.clone();
        let b = defaults.runtime;
        a.registrar.id = b.registrar.id;
        a.seed = b.seed;
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(from_file.enrp, defaults.enrp);
        assert_eq!(from_file.log_level, defaults.log_level);
    }
}

#[test]
fn rate_limits_and_the_answer_cap_default_and_parse() {
    let s = settings(&Cli::default(), &FileConfig::default(), 1, 1).unwrap();
    let r = &s.runtime.registrar;
    assert_eq!(r.resolution_rate, None, "unlimited, as RSPLIB's -maxhrrate");
    assert_eq!(
        r.unreachable_rate,
        Some(registrar::RateLimit {
            per_second: 10,
            burst: 50
        })
    );
    assert_eq!(r.resolution_answer_bytes, 65_535);

    let f = file(
        "[limits]\nmax_resolution_rate = 100\nmax_unreachable_rate = 0\nmax_answer_bytes = 4096\n",
    )
    .unwrap();
    let s = settings(&Cli::default(), &f, 1, 1).unwrap();
    let r = &s.runtime.registrar;
    assert_eq!(
        r.resolution_rate,
        Some(registrar::RateLimit {
            per_second: 100,
            burst: 500
        })
    );
    assert_eq!(r.unreachable_rate, None, "0 is unlimited");
    assert_eq!(r.resolution_answer_bytes, 4096);

    let cli = Cli::parse_from(["x", "--max-resolution-rate", "7"]);
    let s = settings(&cli, &f, 1, 1).unwrap();
    assert_eq!(
        s.runtime.registrar.resolution_rate.map(|r| r.per_second),
        Some(7)
    );

    let f = file("[limits]\nmax_answer_bytes = 100\n").unwrap();
    let err = settings(&Cli::default(), &f, 1, 1).unwrap_err().to_string();
    assert!(err.contains("max_answer_bytes"), "{err}");
}

#[test]
fn per_association_limits_from_the_file_and_flags() {
    let s = settings(&Cli::default(), &FileConfig::default(), 1, 1).unwrap();
    assert_eq!(s.runtime.registrar.max_pes_per_association, 10_000);
    assert_eq!(s.runtime.registrar.max_pools_per_association, 1_000);
    let f = file("[limits]\nmax_pes_per_association = 7\nmax_pools_per_association = 3\n").unwrap();
    let s = settings(&Cli::default(), &f, 1, 1).unwrap();
    assert_eq!(s.runtime.registrar.max_pes_per_association, 7);
    assert_eq!(s.runtime.registrar.max_pools_per_association, 3);
    let cli = Cli::parse_from(["x", "--max-pes-per-association", "1000000"]);
    let s = settings(&cli, &f, 1, 1).unwrap();
    assert_eq!(s.runtime.registrar.max_pes_per_association, 1_000_000);
    let f = file("[limits]\nmax_pools_per_association = 0\n").unwrap();
    let err = settings(&Cli::default(), &f, 1, 1).unwrap_err().to_string();
    assert!(err.contains("limits.max_pools_per_association"), "{err}");
}

#[test]
fn connection_limits_from_file_and_flags() {
    let d = settings(&Cli::default(), &FileConfig::default(), 1, 1).unwrap();
    assert_eq!(d.conn_limits, ConnLimits::default());
    let f = file(
        "[limits]\nmessage_timeout_ms = 500\nidle_timeout_ms = 0\nmax_connections = 10\n\
         max_connections_per_source = 3\nmax_unsent_per_connection = 100000\n\
         max_unsent_per_shard = 200000\n",
    )
    .unwrap();
    let cli = Cli::parse_from(["x", "--max-connections-per-source", "2"]);
    let l = settings(&cli, &f, 1, 1).unwrap().conn_limits;
    assert_eq!(l.message_timeout, Duration::from_millis(500));
    assert_eq!(l.idle_timeout, None);
    assert_eq!(l.max_connections, 10);
    assert_eq!(l.max_connections_per_source, 2);
    assert_eq!(l.max_unsent_per_connection, 100_000);
    assert_eq!(l.max_unsent_per_shard, 200_000);
    for bad in [
        "[limits]\nmax_connections = 0\n",
        "[limits]\nmax_unsent_per_shard = 1000\n",
        "[limits]\nmessage_timeout_ms = 0\n",
    ] {
        let err = settings(&Cli::default(), &file(bad).unwrap(), 1, 1).unwrap_err();
        assert!(err.to_string().contains("limits."), "{err}");
    }
}

#[test]
fn log_format_and_level_from_file_and_flags() {
    let f =
        file("[registrar]\nlog_format = \"json\"\nlog_level = \"warn,rserpool=debug\"\n").unwrap();
    let s = settings(&Cli::default(), &f, 1, 1).unwrap();
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.log_level, "warn,rserpool=debug");
    let cli = Cli::parse_from(["x", "--log-format", "text"]);
    assert_eq!(
        settings(&cli, &f, 1, 1).unwrap().log_format,
        LogFormat::Text
    );
    assert_eq!(
        settings(&Cli::default(), &FileConfig::default(), 1, 1)
            .unwrap()
            .log_format,
        LogFormat::Text
    );

    let bad = file("[registrar]\nlog_level = \"inf\"\n").unwrap();
    let err = settings(&Cli::default(), &bad, 1, 1)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("unknown log level \"inf\""), "{err}");
    let bad = file("[registrar]\nlog_format = \"yaml\"\n").unwrap();
    let err = settings(&Cli::default(), &bad, 1, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"yaml\""), "{err}");
    // A flag overriding the file does not hide the file's mistake.
    let bad = file("[registrar]\nlog_level = \"inf\"\nlog_format = \"text\"\n").unwrap();
    let cli = Cli {
        log_level: Some("debug".into()),
        ..Cli::default()
    };
    let err = settings(&cli, &bad, 1, 1).unwrap_err().to_string();
    assert!(err.starts_with("unknown log level \"inf\""), "{err}");
    let bad = file("[registrar]\nlog_format = \"yaml\"\n").unwrap();
    let cli = Cli {
        log_format: Some("json".into()),
        ..Cli::default()
    };
    let err = settings(&cli, &bad, 1, 1).unwrap_err().to_string();
    assert!(err.contains("\"yaml\""), "{err}");
    assert!(Cli::try_parse_from(["x", "--log-format", "yaml"]).is_err());
}
