//! The metrics endpoint end to end: a registrar in-process with `serve_metrics`, PEs and
//! PUs over loopback TCP, scrapes with a plain HTTP GET, and Prometheus' own checker.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{GUARD, Kind, Lab, promtool};
use rserpool::wire::AsapMessage;

/// Sends one raw HTTP request; returns the status line, the headers and the body.
fn http(addr: SocketAddr, request: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).expect("a whole response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

fn scrape_text(addr: SocketAddr) -> String {
    let (status, headers, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    body
}

/// Series (name and labels, as written) → value.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    scrape_text(addr)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series and value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("{series} is not in the scrape"))
}

/// The registrar's figure: `name{shard="N",<rest>}` summed over shards 0 and 1, as a
/// query's `sum()` would (there is no precomputed total).
fn total(m: &BTreeMap<String, f64>, name: &str, rest: &str) -> f64 {
    let series = |shard: &str| {
        if rest.is_empty() {
            format!("{name}{{shard=\"{shard}\"}}")
        } else {
            format!("{name}{{shard=\"{shard}\",{rest}}}")
        }
    };
    assert!(
        !m.contains_key(&series("all")),
        "no precomputed total: {}",
        series("all")
    );
    get(m, &series("0")) + get(m, &series("1"))
}

#[test]
fn scrapes_count_what_was_done_per_shard_and_add_up() {
    let lab = Lab::start(Kind::Tcp);
    let server = lab.serve_metrics();
    let addr = server.addr();
    let before = scrape(addr);
    assert_eq!(get(&before, "rserpool_up"), 1.0);
    assert_eq!(get(&before, "rserpool_shards"), 2.0);
    assert_eq!(total(&before, "rserpool_pools", ""), 0.0);

    let mut pes = common::register_all(&lab, "p", 1..=6);
    pes.extend(common::register_all(&lab, "q", 7..=8));
    let pu = lab.connect();
    for _ in 0..10 {
        assert_eq!(pu.resolve("p", None).len(), 3);
    }
    pu.send(&AsapMessage::HandleResolution {
        subscribe: false,
        handle: "nope".into(),
        items: None,
    });
    assert!(matches!(
        pu.recv(),
        AsapMessage::HandleResolutionResponse { error: Some(_), .. }
    ));

    let m = scrape(addr);
    for shard in ["0", "1"] {
        assert_eq!(
            get(&m, &format!("rserpool_shard_up{{shard=\"{shard}\"}}")),
            1.0
        );
    }
    // Gauges: each shard reports what it owns; together every pool and PE once.
    assert_eq!(total(&m, "rserpool_pools", ""), 2.0);
    assert_eq!(total(&m, "rserpool_pool_elements", ""), 8.0);
    assert_eq!(total(&m, "rserpool_supervised_pool_elements", ""), 8.0);
    assert_eq!(total(&m, "rserpool_associations", ""), 9.0);
    for shard in ["0", "1"] {
        let replica = format!("rserpool_replica_pool_elements{{shard=\"{shard}\"}}");
        assert_eq!(get(&m, &replica), 8.0, "shard {shard} replicates every PE");
    }
    // Counters.
    let received = "rserpool_asap_messages_received_total";
    assert_eq!(total(&m, received, "type=\"registration\""), 8.0);
    assert_eq!(total(&m, received, "type=\"handle_resolution\""), 11.0);
    let sent = "rserpool_asap_messages_sent_total";
    assert_eq!(total(&m, sent, "type=\"registration_response\""), 8.0);
    assert_eq!(total(&m, sent, "type=\"handle_resolution_response\""), 11.0);
    let errors = "rserpool_asap_errors_total";
    assert_eq!(total(&m, errors, "cause=\"unknown_pool_handle\""), 1.0);
    assert_eq!(total(&m, errors, "cause=\"invalid_values\""), 0.0);
    // Histograms: one observation per answer.
    let count = |name: &str| total(&m, &format!("{name}_count"), "");
    assert_eq!(count("rserpool_handle_resolution_seconds"), 11.0);
    assert_eq!(count("rserpool_registration_seconds"), 8.0);
    let inf = "rserpool_registration_seconds_bucket";
    assert_eq!(total(&m, inf, "le=\"+Inf\""), 8.0);

    // A PE whose connection drops is removed; its detection is timed.
    let (_, gone) = pes.pop().expect("PE 8");
    gone.close();
    common::wait_until(&lab, "PE 8 removed", || {
        total(&scrape(addr), "rserpool_pool_elements", "") == 7.0
    });
    let m = scrape(addr);
    let lost = "reason=\"connection_lost\"";
    assert_eq!(total(&m, "rserpool_pe_removals_total", lost), 1.0);
    assert_eq!(
        total(&m, "rserpool_failure_detection_seconds_count", lost),
        1.0
    );
    assert_eq!(
        total(
            &m,
            "rserpool_failure_detection_seconds_count",
            "reason=\"keep_alive_timeout\""
        ),
        0.0
    );
    // Keep-alives go out every 100 ms and the test clients acknowledge them.
    common::wait_until(&lab, "a keep-alive round trip measured", || {
        total(&scrape(addr), "rserpool_keep_alive_rtt_seconds_count", "") >= 1.0
    });
    drop((pes, pu, server));
    lab.finish();
}

#[test]
fn other_paths_and_methods_are_refused_and_head_has_no_body() {
    let lab = Lab::start(Kind::Tcp);
    let server = lab.serve_metrics();
    let addr = server.addr();
    let (status, _, _) = http(addr, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = http(addr, "DELETE /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("Allow: GET, HEAD"), "{headers}");
    let (status, _, _) = http(addr, "\x16\x03\x01 garbage\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let (status, headers, body) = http(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a length")
        .parse()
        .unwrap();
    assert!(length > 1000, "GET's length");
    assert!(body.is_empty());
    // Still serving after all that.
    assert!(scrape_text(addr).contains("rserpool_up 1"));
    drop(server);
    lab.finish();
}

/// After the registrar stopped, a scrape still answers: the shards are reported down and
/// none of their figures is made up.
#[test]
fn a_scrape_of_stopped_shards_reports_them_down() {
    let lab = Lab::start(Kind::Tcp);
    let server = lab.serve_metrics();
    lab.finish();
    let text = scrape_text(server.addr());
    assert!(text.contains("# shard 0 did not answer"), "{text}");
    assert!(text.contains("rserpool_shard_up{shard=\"1\"} 0"), "{text}");
    let samples = text.lines().filter(|l| !l.starts_with('#'));
    assert!(
        samples
            .into_iter()
            .all(|l| l.starts_with("rserpool_shard_up") || !l.contains("shard=")),
        "{text}"
    );
}

/// Runs `promtool check metrics` on a scrape; it must print nothing and succeed.
fn promtool_accepts(promtool: &Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics ({}):\n{}{}\n--- scraped:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scrape_passes_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    let lab = Lab::start(Kind::Tcp);
    let server = lab.serve_metrics();
    // Some of everything: registrations, answers, an error, a removal.
    let mut pes = common::register_all(&lab, "p", 1..=3);
    let pu = lab.connect();
    pu.resolve("p", None);
    pu.send_raw(&[0x4f, 0, 0, 4]);
    assert!(matches!(pu.recv(), AsapMessage::Error { .. }));
    let (_, gone) = pes.pop().expect("PE 3");
    gone.close();
    common::wait_until(&lab, "PE 3 removed", || pu.members("p").len() == 2);
    promtool_accepts(&promtool, &scrape_text(server.addr()));
    drop((pes, pu, server));
    lab.finish();
}

/// RFC 5353 in the figures: two registrars over ENRP on loopback TCP, B told of A. Their
/// presences are counted; each sees the other active; a PE registered at A becomes a
/// handle update sent by A and a peer update applied at B (timed from B's ENRP
/// connection to its pool's writer); the PE's loss at A is a removal by a peer at B.
/// Both scrapes pass promtool.
#[test]
fn enrp_figures_follow_two_peered_registrars() {
    use common::scenarios::enrp_registrar;
    use rserpool::enrp::PeerAddress;
    use rserpool::registrar::Transport;

    let (config, enrp) = enrp_registrar(0x10, Kind::Tcp, Vec::new());
    let lab = Lab::with(Kind::Tcp, config, enrp);
    let a = lab.handle.as_ref().unwrap();
    let peer_a = PeerAddress {
        transport: Transport::Tcp,
        addr: a.enrp_endpoints()[0].addr(),
    };
    let a_metrics = a.serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
    let (config, enrp) = enrp_registrar(0x20, Kind::Tcp, vec![peer_a]);
    let (b, b_asap) = common::start_registrar(Kind::Tcp, config, enrp);
    let b_metrics = b.serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
    let (a_addr, b_addr) = (a_metrics.addr(), b_metrics.addr());

    let peers = |m: &BTreeMap<String, f64>, shard: &str, state: &str| {
        get(
            m,
            &format!("rserpool_enrp_peers{{shard=\"{shard}\",state=\"{state}\"}}"),
        )
    };
    // A PE answering keep-alives at A: the waits below move on with its acknowledgements.
    let ticker = lab.connect();
    common::assert_accepted(&ticker.register(Kind::Tcp, "ticker", 9), 9);
    let active_alone = |addr| {
        let m = scrape(addr);
        let all = |state| peers(&m, "0", state) + peers(&m, "1", state);
        all("active") == 1.0 && all("unidentified") == 0.0
    };
    common::wait_until(&lab, "A and B each see the other active", || {
        active_alone(a_addr) && active_alone(b_addr)
    });
    for addr in [a_addr, b_addr] {
        let m = scrape(addr);
        // Shard 0 runs ENRP; shard 1 knows no peer.
        assert_eq!(peers(&m, "0", "active"), 1.0);
        assert_eq!(peers(&m, "1", "active"), 0.0);
        assert_eq!(peers(&m, "0", "dead") + peers(&m, "1", "dead"), 0.0);
        assert_eq!(get(&m, "rserpool_enrp_synchronised{shard=\"0\"}"), 1.0);
        let presence = "type=\"presence\"";
        let received = "rserpool_enrp_messages_received_total";
        assert!(get(&m, &format!("{received}{{shard=\"0\",{presence}}}")) >= 1.0);
        assert!(total(&m, received, presence) >= 1.0);
        let sent = "rserpool_enrp_messages_sent_total";
        assert!(total(&m, sent, presence) >= 1.0);
        assert_eq!(total(&m, "rserpool_enrp_malformed_messages_total", ""), 0.0);
    }

    // A PE at A: A sends B a handle update, B's writer applies it.
    let updates_sent = "rserpool_enrp_handle_updates_sent_total";
    let applied = "rserpool_enrp_peer_updates_applied_total";
    let timed = "rserpool_enrp_peer_update_apply_seconds_count";
    let sent_before = total(&scrape(a_addr), updates_sent, "");
    let b_before = scrape(b_addr);
    let pe = lab.connect();
    common::assert_accepted(&pe.register(Kind::Tcp, "counted", 1), 1);
    let pu_b = lab.connect_to(b_asap);
    common::wait_until(&lab, "B resolves the PE registered at A", || {
        pu_b.members_if_any("counted").len() == 1
    });
    let m = scrape(a_addr);
    let sent = total(&m, "rserpool_enrp_handle_updates_sent_total", "");
    assert!(
        sent > sent_before,
        "A told B of its PE ({sent_before} → {sent})"
    );
    assert!(
        total(
            &m,
            "rserpool_enrp_messages_sent_total",
            "type=\"handle_update\""
        ) >= 1.0
    );
    let m = scrape(b_addr);
    let all = total(&m, "rserpool_enrp_peer_updates_applied_total", "");
    assert!(all > total(&b_before, applied, ""), "B applied A's PE");
    let all = total(&m, "rserpool_enrp_peer_update_apply_seconds_count", "");
    assert!(all > total(&b_before, timed, ""), "B timed it");
    let refused = "rserpool_enrp_peer_updates_refused_total";
    assert_eq!(total(&m, refused, "reason=\"not_its_home\""), 0.0);
    assert_eq!(total(&m, refused, "reason=\"ours\""), 0.0);

    // The PE's connection to A is lost: A removes it, and B removes it on A's word.
    pe.close();
    common::wait_until(&lab, "B drops the PE lost at A", || {
        pu_b.members_if_any("counted").is_empty()
    });
    let m = scrape(b_addr);
    assert_eq!(
        total(&m, "rserpool_pe_removals_total", "reason=\"peer\""),
        1.0
    );
    let m = scrape(a_addr);
    let lost = "reason=\"connection_lost\"";
    assert_eq!(total(&m, "rserpool_pe_removals_total", lost), 1.0);
    assert_eq!(
        total(&m, "rserpool_pe_removals_total", "reason=\"peer\""),
        0.0
    );

    if let Some(promtool) = promtool() {
        promtool_accepts(&promtool, &scrape_text(a_addr));
        promtool_accepts(&promtool, &scrape_text(b_addr));
    }
    drop((pu_b, ticker, a_metrics, b_metrics));
    b.shutdown().expect("clean shutdown");
    lab.finish();
}
