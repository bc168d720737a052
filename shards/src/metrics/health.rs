//! `/healthz` and `/readyz`.
//!
//! Health is the HTTP thread answering at all: `/healthz` is 200 whenever it gets a
//! turn. Readiness asks more: every shard answered a snapshot request within
//! [`READY_TIMEOUT`](super::READY_TIMEOUT) (a stuck or stopped shard cannot serve its
//! connections), and, where ENRP is configured, its start-up is over (RFC 5353 §3.2:
//! the mentor's whole handle table downloaded, or no peer heard within the mentor
//! discovery time, 5 s by default, so the registrar goes on alone; without peers or
//! multicast it is over at once). Until then a registrar would answer resolutions
//! from an incomplete handlespace.

use crate::runtime::{MetricsSource, Snapshot};

/// Whether the registrar is ready; `Err` holds the one-line reason it is not.
pub fn ready(source: &MetricsSource) -> Result<(), String> {
    readiness(&source.collect(super::READY_TIMEOUT))
}

/// Readiness from one round of snapshots (`None`: the shard did not answer in time).
pub fn readiness(snapshots: &[Option<Snapshot>]) -> Result<(), String> {
    let missing: Vec<String> = snapshots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shard(s) {} did not answer within {:?}",
            missing.join(", "),
            super::READY_TIMEOUT
        ));
    }
    if snapshots.is_empty() {
        return Err("no shards".to_owned());
    }
    let syncing = snapshots
        .iter()
        .flatten()
        .any(|s| s.enrp_synchronised == Some(false));
    if syncing {
        return Err("ENRP start-up not over (downloading the mentor's handle table, or waiting for a mentor)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rserpool::registrar::{Gauges, Metrics};

    use super::*;

    fn snapshot(shard: u16, enrp_synchronised: Option<bool>) -> Option<Snapshot> {
        Some(Snapshot {
            shard,
            metrics: Metrics::default(),
            gauges: Gauges::default(),
            mesh_spills: 0,
            mesh_waits: 0,
            enrp_synchronised,
        })
    }

    #[test]
    fn ready_when_every_shard_answered_and_enrp_start_up_is_over() {
        assert_eq!(readiness(&[snapshot(0, None), snapshot(1, None)]), Ok(()));
        assert_eq!(
            readiness(&[snapshot(0, Some(true)), snapshot(1, None)]),
            Ok(())
        );
    }

    #[test]
    fn not_ready_while_a_shard_is_silent_or_enrp_is_starting() {
        let why = readiness(&[snapshot(0, None), None, None]).unwrap_err();
        assert!(why.contains("shard(s) 1, 2 did not answer"), "{why}");
        let why = readiness(&[snapshot(0, Some(false)), snapshot(1, None)]).unwrap_err();
        assert!(why.starts_with("ENRP start-up not over"), "{why}");
        assert!(readiness(&[]).is_err());
        assert!(!why.contains('\n'), "one line");
    }
}
