//! What a reload reports: applied changes, changes waiting for a restart, flags that win.

use std::path::Path;

use clap::Parser;

use super::*;

fn at(text: &str, cli: &Cli) -> Settings {
    let file = FileConfig::parse(text, Path::new("test.toml")).unwrap();
    settings(cli, &file, 2, 7).unwrap()
}

fn shown(changes: &[Change], effect: Effect) -> Vec<String> {
    changes
        .iter()
        .filter(|c| c.effect == effect)
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_same_file_changes_nothing() {
    let text = "[limits]\nmax_connections_per_source = 10\n[[access.rule]]\naction = \"deny\"\nops = [\"resolve\"]\n";
    let cli = Cli::default();
    assert_eq!(diff(&at(text, &cli), &at(text, &cli)), vec![]);
    // Also with the defaults drawn at random at start (ID, seed).
    assert_eq!(diff(&at("", &cli), &at("", &cli)), vec![]);
}

#[test]
fn reloadable_settings_are_applied_one_line_each() {
    let cli = Cli::default();
    let old = at("[registrar]\nlog_level = \"info\"\n", &cli);
    let new = at(
        "[registrar]\nlog_level = \"debug\"\n[limits]\nmax_connections_per_source = 10\nmax_resolution_rate = 20\n",
        &cli,
    );
    let changes = diff(&old, &new);
    assert_eq!(
        shown(&changes, Effect::Applied),
        [
            "registrar.log_level info -> debug",
            "limits.max_resolution_rate 0 -> 20",
            "limits.resolution_burst none -> 100",
            "limits.max_connections_per_source 1000 -> 10",
        ]
    );
    assert!(shown(&changes, Effect::Restart).is_empty());
    assert!(needs_runtime_reload(&changes));
    let only_level = diff(&old, &at("[registrar]\nlog_level = \"warn\"\n", &cli));
    assert!(!needs_runtime_reload(&only_level));
}

#[test]
fn access_rules_are_named_when_added_changed_or_removed() {
    let cli = Cli::default();
    let old = at(
        "[[access.rule]]\nname = \"pu\"\naction = \"allow\"\nops = [\"resolve\"]\nfrom = [\"10.0.0.0/8\"]\n",
        &cli,
    );
    let new = at(
        "[access]\ndefault = \"deny\"\n[[access.rule]]\nname = \"pe\"\naction = \"allow\"\nops = [\"register\"]\npools = [\"app-*\"]\n",
        &cli,
    );
    assert_eq!(
        shown(&diff(&old, &new), Effect::Applied),
        [
            "access.default allow -> deny",
            "access.rule pu: allow resolve from 10.0.0.0/8 -> none",
            "access.rule pe: none -> allow register pools app-*",
        ]
    );
}

#[test]
fn a_reordering_of_the_rules_is_named() {
    let cli = Cli::default();
    let a = "[[access.rule]]\nname = \"a\"\naction = \"deny\"\nops = [\"resolve\"]\n";
    let b = "[[access.rule]]\nname = \"b\"\naction = \"allow\"\nops = [\"all\"]\n";
    let old = at(&format!("{a}{b}"), &cli);
    let new = at(&format!("{b}{a}"), &cli);
    assert_eq!(
        shown(&diff(&old, &new), Effect::Applied),
        ["access.order a b -> b a"]
    );
}

#[test]
fn what_needs_a_restart_is_named_and_not_merged() {
    let cli = Cli::default();
    let old = at(
        "[registrar]\nshards = 2\nid = 5\n[asap]\nlisten = [\"tcp://127.0.0.1:3863\"]\n",
        &cli,
    );
    let new = at(
        "[registrar]\nshards = 4\nid = 6\n[asap]\nlisten = [\"tcp://127.0.0.1:3864\"]\n[metrics]\nlisten = \"127.0.0.1:9464\"\n[limits]\nmax_connections = 5\n",
        &cli,
    );
    let changes = diff(&old, &new);
    assert_eq!(
        shown(&changes, Effect::Restart),
        [
            "registrar.id 0x00000005 -> 0x00000006",
            "registrar.shards 2 -> 4",
            "asap.listen tcp://127.0.0.1:3863 -> tcp://127.0.0.1:3864",
            "metrics.listen none -> 127.0.0.1:9464",
        ]
    );
    let merged = merge(&old, &new);
    assert_eq!(merged.runtime.shards, 2);
    assert_eq!(merged.metrics, None);
    assert_eq!(merged.conn_limits.max_connections, 5);
    // After the merge only what waits for a restart still differs.
    assert_eq!(
        diff(&merged, &new)
            .iter()
            .filter(|c| c.effect == Effect::Applied)
            .count(),
        0
    );
}

#[test]
fn flags_keep_winning_and_say_so() {
    let cli = Cli::parse_from([
        "x",
        "--log-level",
        "debug",
        "--max-connections-per-source",
        "10",
    ]);
    let text = "[registrar]\nlog_level = \"warn\"\n[limits]\nmax_connections_per_source = 5\nmax_connections = 7\n";
    let file = FileConfig::parse(text, Path::new("test.toml")).unwrap();
    let changes = diff(&at("", &cli), &settings(&cli, &file, 2, 7).unwrap());
    assert_eq!(
        shown(&changes, Effect::Applied),
        ["limits.max_connections 100000 -> 7"]
    );
    let p: Vec<String> = pinned(&cli, &file)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        p,
        [
            "registrar.log_level stays debug (given on the command line; the file says warn)",
            "limits.max_connections_per_source stays 10 (given on the command line; the file says 5)",
        ]
    );
}
