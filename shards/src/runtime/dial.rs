//! Outbound connections being opened ([`Transmit::Connect`]): which transport and
//! address is being tried, what is left to try, and the messages waiting for the
//! connection to come up.
//!
//! The shard starts each attempt ([`Dials::next_attempt`] says which); the TCP or SCTP
//! side reports its outcome: [`Dials::up`] hands the waiting messages over, in order,
//! and [`Dials::failed`] queues the connection for its next attempt.
//!
//! [`Transmit::Connect`]: rserpool::registrar::Transmit::Connect

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use rserpool::registrar::{ConnId, Protocol, Transport};

use super::tcp::MAX_UNSENT;

/// A message transmitted on a connection before it was up.
#[derive(Debug)]
pub(super) struct Waiting {
    /// ASAP or ENRP: the message's kind, which decides its SCTP PPID.
    pub(super) protocol: Protocol,
    pub(super) payload: Vec<u8>,
}

#[derive(Debug)]
struct Dial {
    protocol: Protocol,
    /// Not tried yet, in the registrar's order.
    transports: VecDeque<Transport>,
    addrs: Vec<IpAddr>,
    port: u16,
    /// TCP tries one address after the other: the next one.
    next_addr: usize,
    /// The transport being tried (`None` between attempts).
    trying: Option<Transport>,
    waiting: Vec<Waiting>,
    waiting_bytes: usize,
}

/// What to try next for a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    Tcp(SocketAddr),
    /// One association to every address of the peer.
    Sctp(Vec<SocketAddr>),
    /// Nothing left: the connection could not be opened.
    Exhausted,
}

/// What [`Dials::queue`] did with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Queued {
    /// Not a connection being opened: the message is handed back.
    NotDialing(Vec<u8>),
    Waiting,
    /// More than the slow-consumer limit would wait: give the connection up.
    Overflow,
}

/// The shard's connections being opened.
#[derive(Debug, Default)]
pub(super) struct Dials {
    dials: HashMap<ConnId, Dial>,
    /// Attempts that failed since the shard last looked.
    failed: Vec<ConnId>,
}

impl Dials {
    pub(super) fn contains(&self, conn: ConnId) -> bool {
        self.dials.contains_key(&conn)
    }

    pub(super) fn protocol(&self, conn: ConnId) -> Option<Protocol> {
        self.dials.get(&conn).map(|d| d.protocol)
    }

    /// The transport being tried for `conn`.
    pub(super) fn trying(&self, conn: ConnId) -> Option<Transport> {
        self.dials.get(&conn).and_then(|d| d.trying)
    }

    pub(super) fn insert(
        &mut self,
        conn: ConnId,
        protocol: Protocol,
        transports: Vec<Transport>,
        addrs: Vec<IpAddr>,
        port: u16,
    ) {
        self.dials.insert(
            conn,
            Dial {
                protocol,
                transports: transports.into(),
                addrs,
                port,
                next_addr: 0,
                trying: None,
                waiting: Vec::new(),
                waiting_bytes: 0,
            },
        );
    }

    /// The next attempt for `conn` (`None`: not being opened). An attempt the runtime
    /// cannot make is reported as failed at once, and the caller asks again.
    pub(super) fn next_attempt(&mut self, conn: ConnId) -> Option<Attempt> {
        let d = self.dials.get_mut(&conn)?;
        loop {
            match d.trying {
                Some(Transport::Tcp) if d.next_addr < d.addrs.len() => {
                    d.next_addr += 1;
                    let ip = d.addrs[d.next_addr - 1];
                    return Some(Attempt::Tcp(SocketAddr::new(ip, d.port)));
                }
                // SCTP tried every address at once; TCP has none left.
                Some(_) => d.trying = None,
                None => match d.transports.pop_front() {
                    None => return Some(Attempt::Exhausted),
                    Some(Transport::Tcp) => {
                        d.trying = Some(Transport::Tcp);
                        d.next_addr = 0;
                    }
                    Some(Transport::Sctp) => {
                        d.trying = Some(Transport::Sctp);
                        let addrs = d.addrs.iter().map(|ip| SocketAddr::new(*ip, d.port));
                        return Some(Attempt::Sctp(addrs.collect()));
                    }
                },
            }
        }
    }

    /// Holds a message for `conn` until it is up.
    pub(super) fn queue(&mut self, conn: ConnId, protocol: Protocol, payload: Vec<u8>) -> Queued {
        // Only the registrar's own connections are ever dialled: the others skip the
        // lookup.
        let dial = conn
            .is_outbound()
            .then(|| self.dials.get_mut(&conn))
            .flatten();
        let Some(d) = dial else {
            return Queued::NotDialing(payload);
        };
        d.waiting_bytes += payload.len();
        if d.waiting_bytes > MAX_UNSENT {
            return Queued::Overflow;
        }
        d.waiting.push(Waiting { protocol, payload });
        Queued::Waiting
    }

    /// `conn` is up: it is no longer being opened, and these messages go first.
    pub(super) fn up(&mut self, conn: ConnId) -> Vec<Waiting> {
        self.dials
            .remove(&conn)
            .map(|d| d.waiting)
            .unwrap_or_default()
    }

    /// The attempt in progress for `conn` failed; the shard starts the next one.
    pub(super) fn failed(&mut self, conn: ConnId) {
        if self.dials.contains_key(&conn) {
            self.failed.push(conn);
        }
    }

    /// Whether an attempt failed since the last [`Dials::take_failed`].
    pub(super) fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Takes the connections whose attempt failed.
    pub(super) fn take_failed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.failed)
    }

    /// Gives `conn` up (closed, or every attempt failed); returns whether it was being
    /// opened.
    pub(super) fn remove(&mut self, conn: ConnId) -> bool {
        self.dials.remove(&conn).is_some()
    }

    /// Every connection being opened (for shutdown).
    pub(super) fn clear(&mut self) {
        self.dials.clear();
        self.failed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ConnId = ConnId(ConnId::OUTBOUND);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn transports_are_tried_in_order_tcp_one_address_at_a_time() {
        let mut d = Dials::default();
        d.insert(
            C,
            Protocol::Enrp,
            vec![Transport::Sctp, Transport::Tcp],
            vec![ip("10.0.0.1"), ip("::1")],
            9901,
        );
        assert_eq!(
            d.next_attempt(C),
            Some(Attempt::Sctp(vec![
                "10.0.0.1:9901".parse().unwrap(),
                "[::1]:9901".parse().unwrap()
            ]))
        );
        assert_eq!(d.trying(C), Some(Transport::Sctp));
        assert_eq!(
            d.next_attempt(C),
            Some(Attempt::Tcp("10.0.0.1:9901".parse().unwrap()))
        );
        assert_eq!(d.trying(C), Some(Transport::Tcp));
        assert_eq!(
            d.next_attempt(C),
            Some(Attempt::Tcp("[::1]:9901".parse().unwrap()))
        );
        assert_eq!(d.next_attempt(C), Some(Attempt::Exhausted));
        assert!(d.remove(C));
        assert_eq!(d.next_attempt(C), None);
    }

    #[test]
    fn no_transport_or_no_address_is_exhausted_at_once() {
        let mut d = Dials::default();
        d.insert(C, Protocol::Asap, vec![], vec![ip("10.0.0.1")], 1);
        assert_eq!(d.next_attempt(C), Some(Attempt::Exhausted));
        d.insert(C, Protocol::Asap, vec![Transport::Tcp], vec![], 1);
        assert_eq!(d.next_attempt(C), Some(Attempt::Exhausted));
    }

    #[test]
    fn messages_wait_in_order_until_up_and_overflow_at_the_slow_consumer_limit() {
        let mut d = Dials::default();
        assert_eq!(
            d.queue(C, Protocol::Enrp, vec![1]),
            Queued::NotDialing(vec![1])
        );
        d.insert(
            C,
            Protocol::Enrp,
            vec![Transport::Tcp],
            vec![ip("10.0.0.1")],
            1,
        );
        assert_eq!(d.queue(C, Protocol::Enrp, vec![1]), Queued::Waiting);
        assert_eq!(d.queue(C, Protocol::Asap, vec![2, 2]), Queued::Waiting);
        let w = d.up(C);
        assert_eq!(
            w.iter()
                .map(|w| (w.protocol, w.payload.clone()))
                .collect::<Vec<_>>(),
            vec![(Protocol::Enrp, vec![1]), (Protocol::Asap, vec![2, 2])]
        );
        assert!(!d.contains(C));

        d.insert(
            C,
            Protocol::Enrp,
            vec![Transport::Tcp],
            vec![ip("10.0.0.1")],
            1,
        );
        assert_eq!(
            d.queue(C, Protocol::Enrp, vec![0; MAX_UNSENT]),
            Queued::Waiting
        );
        assert_eq!(d.queue(C, Protocol::Enrp, vec![0]), Queued::Overflow);
    }

    #[test]
    fn a_failure_is_reported_once_per_attempt_and_only_while_dialing() {
        let mut d = Dials::default();
        d.failed(C);
        assert!(d.take_failed().is_empty());
        d.insert(
            C,
            Protocol::Enrp,
            vec![Transport::Tcp],
            vec![ip("10.0.0.1")],
            1,
        );
        d.failed(C);
        assert_eq!(d.take_failed(), vec![C]);
        assert!(d.take_failed().is_empty());
    }
}
