//! Simulated pool elements: real registrations that answer keep-alives, several PEs per
//! connection (ASAP allows it; a connection thread then sleeps in `read` and costs no
//! CPU between keep-alives).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rserpool::client::{PeEvent, PoolElementClient};
use rserpool::wire::{
    PolicyParam, PoolElement, RegistrationLife, SctpTransport, TransportUse, UserTransport,
};
use rserpool::{PoolElementId, PoolHandle, RegistrarId};

use crate::conn::{Conn, Target};

/// Running simulated PEs; dropping it closes their connections.
#[derive(Debug)]
pub struct PeGroup {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Registration latency of each PE, in registration order.
    pub registration: Vec<Duration>,
}

impl PeGroup {
    /// Registers `n` PEs (IDs `first_id..`) in `pool` over `conns` connections and keeps
    /// them alive. Returns once every PE is registered.
    pub fn start(
        registrar: Target,
        pool: &PoolHandle,
        n: u32,
        conns: u32,
        first_id: u32,
        policy: PolicyParam,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut registration = Vec::with_capacity(n as usize);
        let conns = conns.clamp(1, n.max(1));
        for c in 0..conns {
            let ids: Vec<u32> = (0..n)
                .filter(|i| i % conns == c)
                .map(|i| first_id + i)
                .collect();
            let mut conn = Conn::connect(registrar)?;
            // Only addresses of the registering connection are accepted (RFC 5352 §2.2.1).
            let local = conn.local_addr()?.ip();
            let mut pes: Vec<PoolElementClient> = ids
                .iter()
                .map(|&id| {
                    PoolElementClient::new(
                        pool.clone(),
                        element(id, local, policy),
                        Duration::from_secs(30),
                    )
                })
                .collect();
            // Register this connection's PEs before starting the next (sequential, so the
            // latencies are not queueing behind each other).
            conn.set_read_timeout(Some(Duration::from_secs(10)))?;
            for pe in &mut pes {
                pe.register(Instant::now());
                while let Some(b) = pe.poll_transmit() {
                    conn.send_bytes(&b)?;
                }
                loop {
                    let m = conn.recv()?;
                    match pe.handle_message(Instant::now(), &m) {
                        Some(PeEvent::Registered { latency }) => {
                            registration.push(latency);
                            break;
                        }
                        Some(PeEvent::Rejected(cause)) => {
                            return Err(io::Error::other(format!(
                                "PE {} rejected: {cause:?}",
                                pe.id()
                            )));
                        }
                        _ => {}
                    }
                }
            }
            conn.set_read_timeout(Some(Duration::from_millis(200)))?;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || serve(conn, pes, &stop)));
        }
        Ok(Self {
            stop,
            threads,
            registration,
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for PeGroup {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Answers keep-alives and re-registers until told to stop.
fn serve(mut conn: Conn, mut pes: Vec<PoolElementClient>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for pe in &mut pes {
            pe.handle_timeout(now);
        }
        match conn.recv() {
            Ok(m) => {
                for pe in &mut pes {
                    if pe.handle_message(Instant::now(), &m).is_some() {
                        break;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        for pe in &mut pes {
            while let Some(b) = pe.poll_transmit() {
                if conn.send_bytes(&b).is_err() {
                    return;
                }
            }
        }
    }
}

/// A PE offering an SCTP transport on the connection's address (the registrar accepts
/// only addresses of the registering connection).
pub fn element(id: u32, addr: IpAddr, policy: PolicyParam) -> PoolElement {
    PoolElement {
        id: PoolElementId(id),
        home: RegistrarId(0),
        registration_life: RegistrationLife(90_000),
        user_transport: UserTransport::Sctp(SctpTransport {
            port: 9000 + (id % 1000) as u16,
            transport_use: TransportUse::DATA_ONLY,
            addresses: vec![addr],
        }),
        policy,
        asap_transport: None,
    }
}
