//! One registered pool element: the registration every replica shares ([`Record`]) and
//! what each replica keeps beside it ([`Element`]).

use std::sync::Arc;
use std::time::Instant;

use super::policy::Policy;
use super::pool::{self, TransportKind};
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::wire::{self, AsapMessage, AsapType, ParamType, TransportUse, Writer};

/// Offsets in a Pool Element TLV (RFC 5354 §3.10): the PE Identifier, the Home ENRP
/// Server Identifier and the Registration Life follow the 4-byte header.
const ID_AT: usize = 4;
const HOME_AT: usize = 8;
const LIFE_AT: usize = 12;

/// A checked registration, encoded once and shared (`Arc`) by every shard's replica:
/// the writer that accepted it hands the same record to the other shards, which neither
/// check nor encode it again.
///
/// It holds the Pool Element parameter as bytes, not as a decoded
/// [`wire::PoolElement`]: the form a handle resolution response carries (without the
/// ASAP transport, padded, reference §4.7), followed by the ASAP transport TLV if there
/// is one, and preceded by a copy of its Policy parameter. The PE's identifier and home
/// are read from those bytes, so what answers carry and what the handlespace believes
/// cannot disagree. Beside them: the parsed policy and the pool attributes the pool
/// rules compare (RFC 5352 §3.1).
///
/// A record never changes; a new home is a new record ([`Record::with_home`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    policy: Policy,
    transport: TransportKind,
    transport_use: TransportUse,
    /// Where the Pool Element parameter starts in `bytes`: after a copy of its Policy
    /// parameter (padded), which answers carry as the overall policy right before the
    /// first PE, so both go in with one copy ([`Record::policy_and_encoded`]). 0 (no
    /// copy) if the Policy parameter is not byte for byte what `policy` encodes to.
    pe_at: u16,
    /// Where the resolution form ends in the Pool Element parameter ([`Record::split`]):
    /// worked out once, since every answer that carries the PE asks for it
    /// ([`Record::encoded`]).
    split: u16,
    bytes: Box<[u8]>,
}

impl Record {
    /// Encodes a registration whose values have been checked and whose policy is
    /// `policy` (parsed from `param.policy`).
    pub(crate) fn new(param: &wire::PoolElement, policy: Policy) -> Self {
        let mut bytes = Vec::with_capacity(64);
        let mut w = Writer::new(&mut bytes);
        param.encode_without_asap_transport(&mut w);
        w.finish();
        if let Some(asap) = &param.asap_transport {
            let mut w = Writer::new(&mut bytes);
            asap.encode(&mut w);
            w.finish();
        }
        // A Pool Element parameter is at most a message long (16-bit lengths).
        let split = u16::try_from(Self::split_of(&bytes)).unwrap_or(u16::MAX);
        let (at, len) = Self::find_policy(&bytes, policy);
        let (pe_at, copy) = match bytes.get(usize::from(at)..usize::from(at) + usize::from(len)) {
            Some(copy) => (len, copy),
            None => (0, &[][..]),
        };
        let mut with_policy = Vec::with_capacity(copy.len() + bytes.len());
        with_policy.extend_from_slice(copy);
        with_policy.extend_from_slice(&bytes);
        Self {
            policy,
            transport: TransportKind::of(&param.user_transport),
            transport_use: pool::transport_use(&param.user_transport),
            pe_at,
            split,
            bytes: with_policy.into_boxed_slice(),
        }
    }

    /// The span of the Policy parameter among the children of the Pool Element
    /// parameter in `bytes`, if it is exactly what `policy` encodes to (padded).
    fn find_policy(bytes: &[u8], policy: Policy) -> (u16, u16) {
        let mut want = Vec::with_capacity(16);
        let mut w = Writer::new(&mut want);
        policy.to_param().encode(&mut w);
        w.finish();
        let Some(&[hi, lo]) = bytes.get(2..4) else {
            return (0, 0);
        };
        let end = usize::from(u16::from_be_bytes([hi, lo])).min(bytes.len());
        let mut at = LIFE_AT + 4;
        while let Some(head) = bytes.get(at..at + 4).filter(|_| at < end) {
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            if len < 4 {
                break;
            }
            let padded = len.next_multiple_of(4);
            if u16::from_be_bytes([head[0], head[1]]) == ParamType::POLICY.0 {
                let found = bytes.get(at..at + padded);
                return match (found, u16::try_from(at), u16::try_from(padded)) {
                    (Some(b), Ok(at), Ok(len)) if b == want => (at, len),
                    _ => (0, 0),
                };
            }
            at += padded;
        }
        (0, 0)
    }

    /// The Policy parameter as registered, padded: what a resolution answer carries as
    /// its overall policy when this PE comes first. `None` if it differs from what the
    /// parsed policy encodes to.
    pub fn policy_tlv(&self) -> Option<&[u8]> {
        let at = usize::from(self.pe_at);
        (at > 0).then(|| self.bytes.get(..at)).flatten()
    }

    /// [`Record::policy_tlv`] followed by [`Record::encoded`], in one slice: how a
    /// resolution answer starts its list of PEs when this PE comes first. `None` where
    /// `policy_tlv` is.
    #[inline]
    pub fn policy_and_encoded(&self) -> Option<&[u8]> {
        let at = usize::from(self.pe_at);
        (at > 0)
            .then(|| self.bytes.get(..at + self.split()))
            .flatten()
    }

    /// The Pool Element parameter, ASAP transport included.
    #[inline]
    fn pe(&self) -> &[u8] {
        self.bytes
            .get(usize::from(self.pe_at)..)
            .unwrap_or_default()
    }

    pub fn id(&self) -> PoolElementId {
        PoolElementId(self.word(ID_AT))
    }

    /// The registrar responsible for this PE (RFC 5353 §1.1 "home ENRP server").
    pub fn home(&self) -> RegistrarId {
        RegistrarId(self.word(HOME_AT))
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    pub fn transport_use(&self) -> TransportUse {
        self.transport_use
    }

    /// Pool Element parameter without the ASAP transport, padded, as RSPLIB puts it in
    /// a handle resolution response (reference §4.7).
    #[inline]
    pub fn encoded(&self) -> &[u8] {
        let at = usize::from(self.pe_at);
        self.bytes.get(at..at + self.split()).unwrap_or_default()
    }

    /// Appends the whole Pool Element parameter, ASAP transport included, as ENRP
    /// carries it: byte for byte what [`wire::PoolElement::encode`] writes.
    pub fn encode(&self, w: &mut Writer<'_>) {
        let pe = self.pe();
        let split = self.split();
        let asap = pe.get(split..).unwrap_or_default();
        // The resolution form's own length excludes its final padding; with an ASAP
        // transport after it, that padding lies between two children and counts.
        let body_end = if asap.is_empty() {
            self.declared_len()
        } else {
            split
        };
        let body = pe.get(4..body_end).unwrap_or_default();
        w.tlv(ParamType::POOL_ELEMENT.0, |w| {
            w.put_bytes(body);
            if let Some(l) = asap.get(2..4) {
                let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
                w.put_bytes(asap.get(..len).unwrap_or(asap));
            }
        });
    }

    /// The parameter decoded, as registered (with the home it has now).
    pub fn param(&self) -> wire::PoolElement {
        // Our own encoding always decodes; it is read back through the codec's public
        // entry point, a registration message around it.
        let mut msg = Vec::with_capacity(self.bytes.len() + 16);
        wire::message(&mut msg, AsapType::REGISTRATION.0, 0, |w| {
            wire::encode_handle(&PoolHandle::new(b"-"), w);
            self.encode(w);
        });
        match AsapMessage::decode(&msg).map(|d| d.message) {
            Ok(AsapMessage::Registration { element, .. }) => element,
            _ => wire::PoolElement {
                id: self.id(),
                home: self.home(),
                registration_life: wire::RegistrationLife(self.word(LIFE_AT)),
                user_transport: wire::UserTransport::Opaque(self.encoded().to_vec()),
                policy: self.policy.to_param(),
                asap_transport: None,
            },
        }
    }

    /// The same registration under another home (a takeover or a peer's update): the
    /// bytes with the home field replaced.
    pub fn with_home(&self, home: RegistrarId) -> Self {
        let mut record = self.clone();
        let at = usize::from(record.pe_at) + HOME_AT;
        if let Some(field) = record.bytes.get_mut(at..at + 4) {
            field.copy_from_slice(&home.0.to_be_bytes());
        }
        record
    }

    /// The length field of the resolution form (its bytes without the final padding).
    fn declared_len(&self) -> usize {
        Self::declared_len_of(self.pe())
    }

    fn declared_len_of(bytes: &[u8]) -> usize {
        bytes
            .get(2..4)
            .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])))
    }

    /// Where the resolution form ends (padded) and the ASAP transport TLV begins, in
    /// [`Record::pe`].
    #[inline]
    fn split(&self) -> usize {
        usize::from(self.split)
    }

    fn split_of(bytes: &[u8]) -> usize {
        (Self::declared_len_of(bytes).saturating_add(3) & !3).min(bytes.len())
    }

    fn word(&self, at: usize) -> u32 {
        self.pe()
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A pool element in one replica: the shared [`Record`] and the state this replica
/// keeps for it (the registration-life deadline and the unreachability reports, which
/// only the pool's writer uses).
#[derive(Clone, Debug)]
pub struct Element {
    record: Arc<Record>,
    pub(crate) expires: Option<Instant>,
    pub(crate) unreachable_reports: u32,
}

impl Element {
    pub(crate) fn new(record: Arc<Record>, expires: Option<Instant>) -> Self {
        Self {
            record,
            expires,
            unreachable_reports: 0,
        }
    }

    /// The shared registration (to hand to another replica).
    pub fn record(&self) -> &Arc<Record> {
        &self.record
    }

    pub fn id(&self) -> PoolElementId {
        self.record.id()
    }

    /// The registrar responsible for this PE (RFC 5353 §1.1 "home ENRP server").
    pub fn home(&self) -> RegistrarId {
        self.record.home()
    }

    /// The parameter as registered, decoded ([`Record::param`]): for ENRP and reports,
    /// not for answers, which copy [`Element::encoded`].
    pub fn param(&self) -> wire::PoolElement {
        self.record.param()
    }

    pub fn policy(&self) -> Policy {
        self.record.policy()
    }

    /// The Policy parameter to copy into answers ([`Record::policy_tlv`]).
    pub fn policy_tlv(&self) -> Option<&[u8]> {
        self.record.policy_tlv()
    }

    /// Pool Element parameter without the ASAP transport, as RSPLIB puts it in a handle
    /// resolution response (reference §4.7).
    pub fn encoded(&self) -> &[u8] {
        self.record.encoded()
    }

    /// The overall policy and the PE, as an answer carries them when the PE comes
    /// first ([`Record::policy_and_encoded`]).
    pub fn policy_and_encoded(&self) -> Option<&[u8]> {
        self.record.policy_and_encoded()
    }

    pub fn expires(&self) -> Option<Instant> {
        self.expires
    }

    pub fn unreachable_reports(&self) -> u32 {
        self.unreachable_reports
    }

    /// Moves the PE to another home: a new record (answers name the home PR).
    pub(crate) fn set_home(&mut self, home: RegistrarId) {
        if self.home() != home {
            self.record = Arc::new(self.record.with_home(home));
        }
    }
}
