//! The Prometheus endpoint. For now it reports only that the registrar is up; the
//! histograms and counters arrive with the load generator (issue 4).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

/// A running metrics listener.
#[derive(Debug)]
pub struct Metrics {
    addr: SocketAddr,
}

impl Metrics {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Serves `GET /metrics` on `addr` from a background thread.
pub fn serve(addr: SocketAddr) -> std::io::Result<Metrics> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut req = [0u8; 1024];
            let _ = stream.read(&mut req);
            let body = "# HELP rserpool_up Whether the registrar is running.\n# TYPE rserpool_up gauge\nrserpool_up 1\n";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(Metrics { addr })
}
