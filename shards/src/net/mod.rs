//! Socket code: the only place with `unsafe`, each block with a `// SAFETY:` line.
//!
//! - [`ring`]: io_uring whose operations own their buffers until they complete.
//! - [`socket`]: SO_REUSEPORT TCP listeners, accepted and outbound connections, eventfds.
//! - [`sctp`]: the one-to-many SCTP socket, its message buffers and notifications, and a
//!   blocking client for tests and tools.
//! - [`udp`]: multicast senders and receivers, and the buffer of a received datagram.
//! - [`signals`]: waiting for SIGTERM/SIGINT.
//! - [`ifaddrs`]: this host's interface addresses.
//! - [`process`]: child processes that die with us, and timer slack (for the tools).
//! - [`alloc`]: returning freed memory to the system.
//! - [`syscall`]: the system calls of every loop turn, issued directly.

mod addr;
pub mod alloc;
pub mod ifaddrs;
pub mod process;
pub mod ring;
pub mod sctp;
pub mod signals;
pub mod socket;
pub mod syscall;
pub mod udp;
