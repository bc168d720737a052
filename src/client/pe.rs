//! A pool element's side of ASAP (RFC 5352 §3.1–3.4, reference §6.1 R1–R7).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ids::{PoolElementId, PoolHandle};
use crate::wire::{AsapMessage, CauseCode, PoolElement};

/// Where a pool element stands with its registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeState {
    Unregistered,
    /// A registration is out; `since` is when it was sent.
    Registering {
        since: Instant,
    },
    Registered,
    /// The registrar refused it (R=1 or an ASAP_ERROR).
    Rejected(Option<CauseCode>),
    Deregistering,
}

/// What the registrar's messages meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeEvent {
    /// Registered (first time or again); `latency` from sending to the answer.
    Registered {
        latency: Duration,
    },
    Rejected(Option<CauseCode>),
    /// A keep-alive was answered (or, when hung, ignored).
    KeepAlive {
        answered: bool,
    },
    /// The registrar ended the registration without being asked (its registration
    /// life ran out there, RFC 5352 §3.2); the PE, alive, has registered again.
    Dropped,
    /// A keep-alive with the home flag was answered: `registrar` took this PE over (RFC
    /// 5352 §3.4, RFC 5353 §3.5.2). The connection it came on is the PE's registrar
    /// connection from now on: send the acknowledgement and later registrations there.
    Adopted {
        registrar: crate::ids::RegistrarId,
    },
    Deregistered,
}

/// One pool element. Feed it the ASAP messages that arrive on its connection; send what
/// [`PoolElementClient::poll_transmit`] returns.
#[derive(Debug)]
pub struct PoolElementClient {
    handle: PoolHandle,
    element: PoolElement,
    reregister_every: Duration,
    state: PeState,
    next_registration: Option<Instant>,
    hung: bool,
    out: VecDeque<Vec<u8>>,
}

impl PoolElementClient {
    /// `reregister_every`: how often to re-register (RSPLIB's tools: 30 s, with a
    /// registration life three times that).
    pub fn new(handle: PoolHandle, element: PoolElement, reregister_every: Duration) -> Self {
        Self {
            handle,
            element,
            reregister_every,
            state: PeState::Unregistered,
            next_registration: None,
            hung: false,
            out: VecDeque::new(),
        }
    }

    pub fn id(&self) -> PoolElementId {
        self.element.id
    }

    pub fn handle(&self) -> &PoolHandle {
        &self.handle
    }

    pub fn state(&self) -> PeState {
        self.state
    }

    /// Sends the registration now.
    pub fn register(&mut self, now: Instant) {
        let msg = AsapMessage::Registration {
            handle: self.handle.clone(),
            element: self.element.clone(),
        };
        self.send(&msg);
        self.state = PeState::Registering { since: now };
        self.next_registration = None;
    }

    /// Sends a deregistration.
    pub fn deregister(&mut self) {
        let msg = AsapMessage::Deregistration {
            handle: self.handle.clone(),
            id: self.element.id,
        };
        self.send(&msg);
        self.state = PeState::Deregistering;
        self.next_registration = None;
    }

    /// Simulates a hung server: while `hung` it neither answers keep-alives nor
    /// re-registers (a hung process does neither).
    pub fn set_hung(&mut self, hung: bool) {
        self.hung = hung;
    }

    /// Changes the policy values (e.g. a new load) and re-registers at once (RFC 5352
    /// §3.1 R7).
    pub fn update_policy(&mut self, now: Instant, policy: crate::wire::PolicyParam) {
        self.element.policy = policy;
        self.register(now);
    }

    /// Handles a message from the registrar; `None` if it was not for this PE.
    pub fn handle_message(&mut self, now: Instant, msg: &AsapMessage) -> Option<PeEvent> {
        match msg {
            AsapMessage::RegistrationResponse {
                rejected,
                handle,
                id,
                error,
            } if *handle == self.handle && *id == self.element.id => {
                if *rejected {
                    let cause = error.as_ref().and_then(|e| e.code());
                    self.state = PeState::Rejected(cause);
                    return Some(PeEvent::Rejected(cause));
                }
                let latency = match self.state {
                    PeState::Registering { since } => now.saturating_duration_since(since),
                    _ => Duration::ZERO,
                };
                self.state = PeState::Registered;
                self.next_registration = Some(now + self.reregister_every);
                Some(PeEvent::Registered { latency })
            }
            // RSPLIB's registrar answers what it cannot take with ASAP_ERROR (§4.9).
            AsapMessage::Error { error } if matches!(self.state, PeState::Registering { .. }) => {
                let cause = error.code();
                self.state = PeState::Rejected(cause);
                Some(PeEvent::Rejected(cause))
            }
            // RFC 5352 §3.4 KA1–KA2: answer for this PE, whatever H says. Without a PE
            // Identifier (RFC form) the keep-alive is for every PE of the handle.
            AsapMessage::EndpointKeepAlive {
                handle,
                id,
                home,
                server_id,
            } if *handle == self.handle && id.is_none_or(|i| i == self.element.id) => {
                if self.hung {
                    return Some(PeEvent::KeepAlive { answered: false });
                }
                let ack = AsapMessage::EndpointKeepAliveAck {
                    handle: self.handle.clone(),
                    id: self.element.id,
                };
                self.send(&ack);
                if *home {
                    self.element.home = *server_id;
                    return Some(PeEvent::Adopted {
                        registrar: *server_id,
                    });
                }
                Some(PeEvent::KeepAlive { answered: true })
            }
            AsapMessage::DeregistrationResponse { handle, id, .. }
                if *handle == self.handle && *id == self.element.id =>
            {
                if self.state == PeState::Deregistering {
                    self.state = PeState::Unregistered;
                    self.next_registration = None;
                    return Some(PeEvent::Deregistered);
                }
                // Unasked: the registration lapsed at the registrar. Still alive, the
                // PE registers again at once.
                if self.hung {
                    return None;
                }
                self.register(now);
                Some(PeEvent::Dropped)
            }
            _ => None,
        }
    }

    /// Re-registers when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.hung && self.next_registration.is_some_and(|t| t <= now) {
            self.register(now);
        }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_registration
    }

    /// The next encoded message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    fn send(&mut self, msg: &AsapMessage) {
        let mut b = Vec::with_capacity(64);
        msg.encode(&mut b);
        self.out.push_back(b);
    }
}
