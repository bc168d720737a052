//! The PE farm's side of a takeover, against a scripted registrar: a connection to a
//! PE connection's own port, a keep-alive with the home flag on it, and where the PE's
//! messages go afterwards (RFC 5353 §3.5.2).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crossbeam::channel::{self, Receiver};
use rserpool::wire::AsapMessage;
use rserpool::{PoolElementId, PoolHandle, RegistrarId};
use rserpool_loadgen::conn::{Target, read_frame};
use rserpool_loadgen::farm::{Command, Farm, FarmConfig, Notice};

const WAIT: Duration = Duration::from_secs(10);

fn send(s: &mut TcpStream, m: &AsapMessage) {
    let mut b = Vec::new();
    m.encode(&mut b);
    s.write_all(&b).unwrap();
}

fn recv(s: &mut TcpStream) -> AsapMessage {
    let mut b = Vec::new();
    read_frame(s, &mut b).unwrap();
    AsapMessage::decode(&b).unwrap().message
}

/// The registrar the PEs registered at: accepts one connection, answers every
/// registration, and reports every message it reads. Returns the PE connection's
/// address as it sees it (the PEs' ASAP transport).
fn home_registrar(
    listener: TcpListener,
) -> (Receiver<AsapMessage>, Receiver<std::net::SocketAddr>) {
    let (tx, rx) = channel::unbounded();
    let (addr_tx, addr_rx) = channel::bounded(1);
    std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        addr_tx.send(peer).unwrap();
        loop {
            let mut b = Vec::new();
            if read_frame(&mut s, &mut b).is_err() {
                return;
            }
            let m = AsapMessage::decode(&b).unwrap().message;
            if let AsapMessage::Registration { handle, element } = &m {
                let answer = AsapMessage::RegistrationResponse {
                    rejected: false,
                    handle: handle.clone(),
                    id: element.id,
                    error: None,
                };
                send(&mut s, &answer);
            }
            if tx.send(m).is_err() {
                return;
            }
        }
    });
    (rx, addr_rx)
}

fn registered_id(m: &AsapMessage) -> Option<u32> {
    match m {
        AsapMessage::Registration { element, .. } => Some(element.id.0),
        _ => None,
    }
}

/// Three PEs on one connection; the taker's connection to its port.
fn farm_and_taker() -> (Farm, Receiver<AsapMessage>, TcpStream, PoolHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::tcp(listener.local_addr().unwrap());
    let (old, addr) = home_registrar(listener);
    let pool = PoolHandle::from("Adopt");
    let farm = Farm::start(FarmConfig {
        links: 1,
        ..FarmConfig::new(target, pool.clone(), 3)
    })
    .unwrap();
    assert!(farm.listening);
    // The registrations at start.
    let mut start: Vec<u32> = (0..3)
        .map(|_| registered_id(&old.recv_timeout(WAIT).unwrap()).unwrap())
        .collect();
    start.sort_unstable();
    assert_eq!(start, vec![1, 2, 3]);
    let pe_port = addr.recv_timeout(WAIT).unwrap();
    let taker = TcpStream::connect(pe_port).unwrap();
    taker.set_read_timeout(Some(WAIT)).unwrap();
    (farm, old, taker, pool)
}

fn adoptions(farm: &Farm, n: usize) -> Vec<(usize, RegistrarId)> {
    let mut got = Vec::new();
    while got.len() < n {
        match farm.notices().recv_timeout(WAIT).unwrap() {
            Notice::Adopted { pe, registrar, .. } => got.push((pe, registrar)),
            Notice::LinkLost { pe } => panic!("PE {pe} lost its link"),
            _ => {}
        }
    }
    got.sort_unstable();
    got
}

/// Waits on the old connection for PE `marker`'s registration and returns every
/// registration seen there before it.
fn registrations_until(old: &Receiver<AsapMessage>, marker: u32) -> Vec<u32> {
    let mut seen = Vec::new();
    loop {
        let m = old.recv_timeout(WAIT).unwrap();
        match registered_id(&m) {
            Some(id) if id == marker => return seen,
            Some(id) => seen.push(id),
            None => {}
        }
    }
}

#[test]
fn a_home_keep_alive_naming_a_pe_moves_that_pe_alone() {
    let (farm, old, mut taker, pool) = farm_and_taker();
    let (moved, stays) = (farm.ids[1], farm.ids[2]);
    send(
        &mut taker,
        &AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: RegistrarId(7),
            handle: pool.clone(),
            id: Some(moved),
        },
    );
    assert_eq!(
        recv(&mut taker),
        AsapMessage::EndpointKeepAliveAck {
            handle: pool.clone(),
            id: moved
        }
    );
    assert_eq!(adoptions(&farm, 1), vec![(1, RegistrarId(7))]);

    // Its registrations now go to the taker, the others' still home.
    farm.send(Command::Register(1));
    farm.send(Command::Register(2));
    assert_eq!(registered_id(&recv(&mut taker)), Some(moved.0));
    let before = registrations_until(&old, stays.0);
    assert!(!before.contains(&moved.0), "{before:?}");

    // And the taker's plain keep-alives are answered there.
    send(
        &mut taker,
        &AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: RegistrarId(7),
            handle: pool.clone(),
            id: Some(moved),
        },
    );
    assert_eq!(
        recv(&mut taker),
        AsapMessage::EndpointKeepAliveAck {
            handle: pool,
            id: moved
        }
    );
    let stats = farm.stop().unwrap();
    assert_eq!((stats.accepted, stats.adopted), (1, 1));
}

#[test]
fn a_home_keep_alive_without_a_pe_identifier_moves_every_pe_of_the_handle() {
    let (farm, old, mut taker, pool) = farm_and_taker();
    // RFC 5352's form: no PE Identifier.
    send(
        &mut taker,
        &AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: RegistrarId(9),
            handle: pool.clone(),
            id: None,
        },
    );
    let mut acked: Vec<PoolElementId> = (0..3)
        .map(|_| match recv(&mut taker) {
            AsapMessage::EndpointKeepAliveAck { handle, id } if handle == pool => id,
            other => panic!("{other:?}"),
        })
        .collect();
    acked.sort_unstable_by_key(|id| id.0);
    assert_eq!(acked, farm.ids);
    assert_eq!(
        adoptions(&farm, 3),
        vec![
            (0, RegistrarId(9)),
            (1, RegistrarId(9)),
            (2, RegistrarId(9))
        ]
    );
    for pe in 0..3 {
        farm.send(Command::Register(pe));
    }
    let mut ids: Vec<u32> = (0..3)
        .map(|_| registered_id(&recv(&mut taker)).unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(old.try_iter().all(|m| registered_id(&m).is_none()));
    farm.stop().unwrap();
}
