//! ENRP scenarios on a virtual network: whole registrars (two shards each) with pool
//! elements, on a virtual clock, with seeded delay and loss, partitions, crashes and
//! restarts. After quiescence every registrar must hold the same handlespace with equal
//! checksums, and no live PE may be lost.

mod net;
mod props;
mod rogue;

use std::time::Duration;

use super::{EnrpEvent, TakeoverWinner};
use crate::ids::RegistrarId;
use net::{Scope, config};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Three registrars, PEs registered at each.
fn three(seed: u64) -> Scope {
    let mut s = Scope::new(&[0x10, 0x20, 0x30], 2, config(), seed);
    // Start-up: mentors found, tables downloaded.
    s.run(secs(1));
    for i in 0..9u32 {
        s.add_pe(
            if i % 2 == 0 { "even" } else { "odd" },
            100 + i,
            (i % 3) as usize,
        );
    }
    s
}

#[test]
fn rfc5353_s3_2_registrars_find_each_other_and_synchronise_at_once() {
    let mut s = Scope::new(&[0x10, 0x20, 0x30], 2, config(), 1);
    s.run(Duration::from_millis(100));
    for n in 0..3 {
        let e = s.nodes[n].enrp();
        assert!(e.is_synchronised(), "node {n} still starting");
        let known: Vec<_> = e.peers().iter().map(|p| p.id).collect();
        assert_eq!(known.len(), 2, "node {n} knows {known:?}");
    }
}

#[test]
fn rfc5353_s3_3_registrations_at_each_registrar_resolve_at_all() {
    let mut s = three(2);
    s.run(secs(1));
    s.check_converged().unwrap();
    for n in 0..3 {
        for shard in 0..2 {
            assert_eq!(s.resolve(n, shard, "even"), vec![100, 102, 104, 106, 108]);
            assert_eq!(s.resolve(n, shard, "odd"), vec![101, 103, 105, 107]);
        }
    }
    // Each PE's home is where it registered.
    let v = s.view(1, 1);
    assert_eq!(v[&("odd".into(), 101)], RegistrarId(0x20));
    assert_eq!(v[&("even".into(), 100)], RegistrarId(0x10));
}

#[test]
fn rfc5353_s3_3_removals_propagate_and_checksums_follow() {
    let mut s = three(3);
    s.run(secs(1));
    s.kill_pe(4); // "even" 104 at node 1
    s.run(secs(1));
    s.check_converged().unwrap();
    assert_eq!(s.resolve(2, 0, "even"), vec![100, 102, 106, 108]);
}

#[test]
fn rfc5353_s3_6_lost_updates_are_repaired_by_the_audit() {
    let mut s = three(4);
    s.run(secs(1));
    // Half of all ENRP messages lost while PEs come and go.
    s.loss_per_mille = 500;
    for i in 0..6u32 {
        s.add_pe("lossy", 200 + i, (i % 3) as usize);
    }
    s.kill_pe(0);
    s.kill_pe(5);
    s.run(secs(2));
    s.loss_per_mille = 0;
    // Heartbeats carry the checksums; mismatches start audits that repair the rest.
    s.run(secs(30));
    s.check_converged().unwrap();
    let audits: usize = (0..3)
        .map(|n| {
            s.enrp_events(n)
                .iter()
                .filter(|e| matches!(e, EnrpEvent::AuditDone { .. }))
                .count()
        })
        .sum();
    assert!(audits > 0, "the loss was repaired by audits");
}

#[test]
fn rfc5353_s3_5_a_crashed_registrars_pes_are_adopted_and_answer_their_new_home() {
    let mut s = three(5);
    s.run(secs(2));
    let victims: Vec<usize> = (0..9).filter(|i| i % 3 == 0).collect();
    s.kill(0);
    // 5 s without a presence, 5 s probe, then takeover with acknowledgement.
    s.run(secs(20));
    s.check_converged().unwrap();
    for &pe in &victims {
        assert_eq!(s.pes[pe].adopted, 1, "PE {pe} got one home-flag keep-alive");
        let (_, node) = s.pes[pe].conn.expect("connected to its new home");
        assert_ne!(node, 0);
    }
    // Exactly one survivor completed the takeover.
    let completed: Vec<usize> = (1..3)
        .filter(|&n| {
            s.enrp_events(n)
                .iter()
                .any(|e| matches!(e, EnrpEvent::TakeoverCompleted { .. }))
        })
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    // And the adopted PEs keep answering keep-alives there.
    s.run(secs(10));
    s.check_converged().unwrap();
}

/// Both survivors detect the crash at the same moment; the tie-break picks one.
fn simultaneous(winner: TakeoverWinner) -> (Scope, usize) {
    let mut c = config();
    c.enrp.as_mut().unwrap().takeover_winner = winner;
    let mut s = Scope::new(&[0x10, 0x20, 0x30], 2, c, 6);
    s.run(secs(1));
    for i in 0..6u32 {
        s.add_pe("p", 300 + i, 2);
    }
    s.run(secs(2));
    // Vanish without closing anything: both survivors heard its last presence at the
    // same instant and time out together.
    s.partition(&[2], &[0, 1]);
    s.run(secs(25));
    let completed: Vec<usize> = (0..2)
        .filter(|&n| {
            s.enrp_events(n)
                .iter()
                .any(|e| matches!(e, EnrpEvent::TakeoverCompleted { target, .. } if *target == RegistrarId(0x30)))
        })
        .collect();
    assert_eq!(
        completed.len(),
        1,
        "exactly one takeover completes: {completed:?}"
    );
    let started = (0..2)
        .filter(|&n| {
            s.enrp_events(n)
                .iter()
                .any(|e| matches!(e, EnrpEvent::TakeoverStarted { .. }))
        })
        .count();
    assert_eq!(started, 2, "both started one");
    (s, completed[0])
}

#[test]
fn rfc5353_s3_5_1_simultaneous_takeovers_lowest_id_wins_as_rsplib() {
    let (mut s, winner) = simultaneous(TakeoverWinner::Lowest);
    assert_eq!(s.nodes[winner].id, RegistrarId(0x10));
    s.kill(2);
    s.run(secs(5));
    s.check_converged().unwrap();
    let homes: Vec<RegistrarId> = s.view(1, 0).values().copied().collect();
    assert!(homes.iter().all(|h| *h == RegistrarId(0x10)), "{homes:?}");
}

#[test]
fn rfc5353_s3_5_1_simultaneous_takeovers_highest_id_wins_when_configured() {
    let (_, winner) = simultaneous(TakeoverWinner::Highest);
    assert_eq!(winner, 1, "0x20 beats 0x10");
}

#[test]
fn a_takeover_completes_at_once_when_no_live_peer_has_to_acknowledge() {
    let mut s = Scope::new(&[0x10, 0x20], 1, config(), 7);
    s.run(secs(1));
    for i in 0..4u32 {
        s.add_pe("pair", 400 + i, 1);
    }
    s.run(secs(1));
    s.kill(1);
    s.run(secs(15));
    s.check_converged().unwrap();
    assert!(s.pes.iter().all(|p| p.adopted == 1));
    let completed = s.enrp_events(0).into_iter().find_map(|e| match e {
        EnrpEvent::TakeoverCompleted {
            adopted,
            unanswered,
            ..
        } => Some((*adopted, *unanswered)),
        _ => None,
    });
    assert_eq!(completed, Some((4, 0)));
}

#[test]
fn rfc5353_s3_6_partitioned_halves_converge_after_the_heal() {
    let mut s = three(8);
    s.run(secs(2));
    s.partition(&[0], &[1, 2]);
    // Both sides change their PEs while apart (and take each other's over).
    s.add_pe("even", 500, 0);
    s.add_pe("odd", 501, 2);
    s.kill_pe(1); // "odd" 101 at node 1
    s.kill_pe(3); // "odd" 103 at node 0
    s.run(secs(30));
    s.heal();
    s.run(secs(60));
    s.check_converged().unwrap();
}

#[test]
fn a_restarted_registrar_rejoins_with_a_new_id_and_synchronises_from_its_mentor() {
    let mut s = three(9);
    s.run(secs(2));
    s.kill(2);
    s.run(secs(20));
    s.restart(2, 0x40);
    s.run(secs(2));
    assert!(s.nodes[2].enrp().is_synchronised());
    s.check_converged().unwrap();
    // It answers for every pool, and PEs registered there reach the others.
    s.add_pe("late", 600, 2);
    s.run(secs(1));
    s.check_converged().unwrap();
    assert_eq!(s.resolve(0, 1, "late"), vec![600]);
}

#[test]
fn a_pe_that_registers_at_another_registrar_changes_home_cleanly() {
    let mut s = three(10);
    s.run(secs(1));
    // PE 0 ("even" 100, home 0x10) re-registers at node 2: one PE, home 0x30, no ghost.
    s.move_pe(0, 2);
    s.run(secs(3));
    s.check_converged().unwrap();
    assert_eq!(s.view(0, 0)[&("even".into(), 100)], RegistrarId(0x30));
    let supervised0: usize = s.nodes[0]
        .shards
        .iter()
        .map(|x| x.gauges().supervised)
        .sum();
    assert_eq!(supervised0, 2, "node 0 lets it go (PEs 3 and 6 stay)");
}

#[test]
fn a_registrar_restarted_with_its_id_reclaims_its_pes_before_anyone_takes_them_over() {
    let mut s = three(11);
    s.run(secs(2));
    let own: Vec<usize> = (0..9).filter(|i| i % 3 == 2).collect();
    s.kill(2);
    s.run(secs(2));
    s.restart(2, 0x30);
    s.run(secs(10));
    s.check_converged().unwrap();
    for &pe in &own {
        assert_eq!(
            s.pes[pe].adopted, 1,
            "PE {pe} reached again by its restarted home"
        );
        assert_eq!(s.pes[pe].conn.map(|c| c.1), Some(2));
    }
    assert!(
        (0..3).all(|n| !s
            .enrp_events(n)
            .iter()
            .any(|e| matches!(e, EnrpEvent::TakeoverStarted { .. }))),
        "nobody had to take them over"
    );
}

/// A PE that registers while its registrar is still downloading its mentor's table can
/// come back in that table with its home set to us. That is our PE of this life, not
/// one of a previous life to reclaim: reaching it again would take its supervision off
/// the connection it registered on.
#[test]
fn a_pe_of_ours_listed_back_by_the_mentor_stays_supervised_where_it_registered() {
    for seed in 0..24 {
        let mut s = Scope::new(&[0x10, 0x20], 2, config(), 100 + seed);
        // Before anyone is synchronised: the first shard, which runs ENRP.
        let pe = s.add_pe("early", 7, 0);
        s.run(Duration::from_millis(20));
        let pe2 = s.add_pe("early", 8, 0);
        s.run(secs(5));
        s.check_converged().unwrap();
        for p in [pe, pe2] {
            assert_eq!(s.pes[p].adopted, 0, "seed {seed}: PE {p} was reclaimed");
        }
        let supervised: usize = s.nodes[0]
            .shards
            .iter()
            .map(|x| x.gauges().supervised)
            .sum();
        assert_eq!(
            supervised, 2,
            "seed {seed}: both PEs still supervised at their home"
        );
    }
}
