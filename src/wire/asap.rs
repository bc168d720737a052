//! ASAP messages (RFC 5352 §2.2), one enum variant per message type.

use super::Decoded;
use super::codes::CauseCode;
use super::codes::{AsapType, ParamType};
use super::element::{take_element, take_elements};
use super::error::{DecodeError, DecodeErrorKind, Span};
use super::param::{
    OperationError, PolicyParam, PoolElement, ServerInformation, ServerTransport, decode_cookie,
    decode_items, encode_cookie, encode_handle, encode_items, encode_pe_id, take_error,
    take_handle, take_opt_error, take_opt_pe_id, take_opt_policy, take_pe_id,
};
use super::reader::{Header, Params, Reader, fixed_u32};
use super::writer::{TooLong, Writer, message, try_message};
use crate::ids::{PoolElementId, PoolHandle, RegistrarId};

/// The one flag bit every flagged ASAP message uses (R, S, A, H: RFC 5352 §2.2).
const FLAG: u8 = 0x01;

/// An ASAP message. Flags are named booleans; unused flag bits are dropped on decode
/// and sent as zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsapMessage {
    /// 0x01, PE → PR: Pool Handle, Pool Element (no ASAP transport).
    Registration {
        handle: PoolHandle,
        element: PoolElement,
    },
    /// 0x02, PE → PR.
    Deregistration {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// 0x03, PR → PE. `rejected` is flag R; `error` is the cause (R=1) or a warning (R=0).
    RegistrationResponse {
        rejected: bool,
        handle: PoolHandle,
        id: PoolElementId,
        error: Option<OperationError>,
    },
    /// 0x04, PR → PE.
    DeregistrationResponse {
        handle: PoolHandle,
        id: PoolElementId,
        error: Option<OperationError>,
    },
    /// 0x05, PU/PE → PR. `subscribe` is flag S; `items` is RSPLIB's Handle Resolution
    /// Option (0x803f) when present.
    HandleResolution {
        subscribe: bool,
        handle: PoolHandle,
        items: Option<u32>,
    },
    /// 0x06, PR → PU/PE. `accepted` is flag A. Positive: `error` is `None` and
    /// `elements` non-empty; negative: `error` set, no policy, no elements.
    HandleResolutionResponse {
        accepted: bool,
        handle: PoolHandle,
        policy: Option<PolicyParam>,
        elements: Vec<PoolElement>,
        error: Option<OperationError>,
    },
    /// 0x07, PR → PE. `home` is flag H; `id` is RSPLIB's extra PE Identifier.
    EndpointKeepAlive {
        home: bool,
        server_id: RegistrarId,
        handle: PoolHandle,
        id: Option<PoolElementId>,
    },
    /// 0x08, PE → PR.
    EndpointKeepAliveAck {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// 0x09, PU/PE → PR.
    EndpointUnreachable {
        handle: PoolHandle,
        id: PoolElementId,
    },
    /// 0x0a, PR → multicast: Server ID, then SCTP/TCP transports (RSPLIB: none, plus an
    /// optional Server Information).
    ServerAnnounce {
        server_id: RegistrarId,
        transports: Vec<ServerTransport>,
        info: Option<ServerInformation>,
    },
    /// 0x0b, PE → PU (control channel).
    Cookie { cookie: Vec<u8> },
    /// 0x0c, PU → PE (control channel).
    CookieEcho { cookie: Vec<u8> },
    /// 0x0d: Pool Handle, [Policy — RSPLIB inserts one], PE 1..n.
    BusinessCard {
        handle: PoolHandle,
        policy: Option<PolicyParam>,
        elements: Vec<PoolElement>,
    },
    /// 0x0e.
    Error { error: OperationError },
}

impl AsapMessage {
    pub fn kind(&self) -> AsapType {
        match self {
            Self::Registration { .. } => AsapType::REGISTRATION,
            Self::Deregistration { .. } => AsapType::DEREGISTRATION,
            Self::RegistrationResponse { .. } => AsapType::REGISTRATION_RESPONSE,
            Self::DeregistrationResponse { .. } => AsapType::DEREGISTRATION_RESPONSE,
            Self::HandleResolution { .. } => AsapType::HANDLE_RESOLUTION,
            Self::HandleResolutionResponse { .. } => AsapType::HANDLE_RESOLUTION_RESPONSE,
            Self::EndpointKeepAlive { .. } => AsapType::ENDPOINT_KEEP_ALIVE,
            Self::EndpointKeepAliveAck { .. } => AsapType::ENDPOINT_KEEP_ALIVE_ACK,
            Self::EndpointUnreachable { .. } => AsapType::ENDPOINT_UNREACHABLE,
            Self::ServerAnnounce { .. } => AsapType::SERVER_ANNOUNCE,
            Self::Cookie { .. } => AsapType::COOKIE,
            Self::CookieEcho { .. } => AsapType::COOKIE_ECHO,
            Self::BusinessCard { .. } => AsapType::BUSINESS_CARD,
            Self::Error { .. } => AsapType::ERROR,
        }
    }
}

impl AsapMessage {
    /// Decodes one whole ASAP message (RFC 5352 §2.2), padded or not.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, DecodeError> {
        let h = Header::decode(buf)?;
        let mut unrecognized = Vec::new();
        let message = Self::decode_body(AsapType(h.kind), h.flags, h.body, &mut unrecognized)?;
        Ok(Decoded {
            message,
            unrecognized,
        })
    }

    fn decode_body(
        kind: AsapType,
        flags: u8,
        mut r: Reader<'_>,
        unrec: &mut Vec<Span>,
    ) -> Result<Self, DecodeError> {
        // RFC 5352 §2.2: unused flag bits are ignored on receipt.
        let flag = flags & FLAG != 0;
        // RFC 5352 §2.2.7, §2.2.10: the server ID is a fixed field at offset 4.
        let server_id = match kind {
            AsapType::ENDPOINT_KEEP_ALIVE | AsapType::SERVER_ANNOUNCE => {
                RegistrarId(fixed_u32(&mut r)?)
            }
            _ => RegistrarId::NONE,
        };
        let mut p = Params::new(r, None, unrec);
        let p = &mut p;
        let m = match kind {
            AsapType::REGISTRATION => Self::Registration {
                handle: take_handle(p)?,
                element: take_element(p)?,
            },
            AsapType::DEREGISTRATION => Self::Deregistration {
                handle: take_handle(p)?,
                id: take_pe_id(p)?,
            },
            AsapType::REGISTRATION_RESPONSE => Self::RegistrationResponse {
                rejected: flag,
                handle: take_handle(p)?,
                id: take_pe_id(p)?,
                error: take_opt_error(p)?,
            },
            AsapType::DEREGISTRATION_RESPONSE => Self::DeregistrationResponse {
                handle: take_handle(p)?,
                id: take_pe_id(p)?,
                error: take_opt_error(p)?,
            },
            AsapType::HANDLE_RESOLUTION => Self::HandleResolution {
                subscribe: flag,
                handle: take_handle(p)?,
                items: p
                    .take_if(ParamType::HANDLE_RESOLUTION_OPTION)?
                    .map(|t| decode_items(&t))
                    .transpose()?,
            },
            AsapType::HANDLE_RESOLUTION_RESPONSE => Self::decode_resolution_response(flag, p)?,
            AsapType::ENDPOINT_KEEP_ALIVE => Self::EndpointKeepAlive {
                home: flag,
                server_id,
                handle: take_handle(p)?,
                // RSPLIB adds the PE Identifier (reference §10 D8).
                id: take_opt_pe_id(p)?,
            },
            AsapType::ENDPOINT_KEEP_ALIVE_ACK => Self::EndpointKeepAliveAck {
                handle: take_handle(p)?,
                id: take_pe_id(p)?,
            },
            AsapType::ENDPOINT_UNREACHABLE => Self::EndpointUnreachable {
                handle: take_handle(p)?,
                id: take_pe_id(p)?,
            },
            AsapType::SERVER_ANNOUNCE => Self::decode_server_announce(server_id, p)?,
            AsapType::COOKIE => Self::Cookie {
                cookie: decode_cookie(&p.expect(ParamType::COOKIE)?),
            },
            AsapType::COOKIE_ECHO => Self::CookieEcho {
                cookie: decode_cookie(&p.expect(ParamType::COOKIE)?),
            },
            AsapType::BUSINESS_CARD => Self::BusinessCard {
                handle: take_handle(p)?,
                // RSPLIB inserts a Policy after the Pool Handle (reference §10 D16).
                policy: take_opt_policy(p)?,
                elements: take_elements(p)?,
            },
            AsapType::ERROR => Self::Error {
                error: take_error(p)?,
            },
            _ => {
                let e = DecodeErrorKind::UnrecognizedMessage(kind.0);
                return Err(DecodeError::new(e, None));
            }
        };
        p.finish()?;
        Ok(m)
    }

    /// RFC 5352 §2.2.6: Pool Handle, then either an Operation Error or ([Policy], PE 1..n).
    /// The Policy is optional on receipt although RSPLIB always sends it.
    fn decode_resolution_response(
        accepted: bool,
        p: &mut Params<'_, '_>,
    ) -> Result<Self, DecodeError> {
        let handle = take_handle(p)?;
        let error = take_opt_error(p)?;
        let (policy, elements) = match error {
            Some(_) => (None, Vec::new()),
            None => (take_opt_policy(p)?, take_elements(p)?),
        };
        Ok(Self::HandleResolutionResponse {
            accepted,
            handle,
            policy,
            elements,
            error,
        })
    }

    /// RFC 5352 §2.2.10: zero or more SCTP/TCP transports; RSPLIB may add a Server
    /// Information (reference §3.4).
    fn decode_server_announce(
        server_id: RegistrarId,
        p: &mut Params<'_, '_>,
    ) -> Result<Self, DecodeError> {
        let is_transport = |k| k == ParamType::SCTP_TRANSPORT || k == ParamType::TCP_TRANSPORT;
        let mut transports = Vec::new();
        while let Some(t) = p.take_where(is_transport)? {
            transports.push(ServerTransport::decode(&t, p.unrec())?);
        }
        let info = match p.take_if(ParamType::SERVER_INFORMATION)? {
            Some(t) => Some(ServerInformation::decode(&t, p.unrec())?),
            None => None,
        };
        Ok(Self::ServerAnnounce {
            server_id,
            transports,
            info,
        })
    }

    /// The flags byte: the named flag as bit 0x01, every other bit 0.
    fn flags(&self) -> u8 {
        let set = match self {
            Self::RegistrationResponse { rejected: f, .. }
            | Self::HandleResolution { subscribe: f, .. }
            | Self::HandleResolutionResponse { accepted: f, .. }
            | Self::EndpointKeepAlive { home: f, .. } => *f,
            _ => false,
        };
        if set { FLAG } else { 0 }
    }

    /// Appends the whole message, padded to a multiple of 4, to `out`. A message longer
    /// than its length field is not written (and fails a debug assertion); use
    /// [`AsapMessage::try_encode`] or [`AsapMessage::encode_answer`] when its size
    /// depends on what was received.
    pub fn encode(&self, out: &mut Vec<u8>) {
        message(out, self.kind().0, self.flags(), |w| self.encode_body(w));
    }

    /// Appends the whole message, padded to a multiple of 4, to `out`, unless it would
    /// be longer than its 16-bit Message Length (RFC 5354 §4): then `out` is unchanged.
    pub fn try_encode(&self, out: &mut Vec<u8>) -> Result<(), TooLong> {
        try_message(out, self.kind().0, self.flags(), |w| self.encode_body(w))
    }

    /// Appends this answer to `out`, made to fit the 16-bit Message Length: as it is if
    /// it fits; else with its causes' quoted information dropped (at most
    /// [`super::MAX_CAUSES`] kept); else, when even that is too long (an echoed Pool
    /// Handle near 64 KiB), an ASAP_ERROR with an "Invalid Values" cause instead. A
    /// requester must take an ERROR as a negative answer (reference §4.9).
    pub fn encode_answer(&self, out: &mut Vec<u8>) -> Fit {
        if self.try_encode(out).is_ok() {
            return Fit::Whole;
        }
        let mut unquoted = self.clone();
        if let Some(error) = unquoted.error_mut() {
            error.causes.truncate(super::MAX_CAUSES);
            error.causes.iter_mut().for_each(|c| c.info.clear());
            if unquoted.try_encode(out).is_ok() {
                return Fit::Unquoted;
            }
        }
        let error = OperationError::single(CauseCode::INVALID_VALUES, Vec::new());
        Self::Error { error }.encode(out);
        Fit::Replaced
    }

    /// The Operation Error this message carries, if any.
    pub fn error(&self) -> Option<&OperationError> {
        match self {
            Self::RegistrationResponse { error, .. }
            | Self::DeregistrationResponse { error, .. }
            | Self::HandleResolutionResponse { error, .. } => error.as_ref(),
            Self::Error { error } => Some(error),
            _ => None,
        }
    }

    fn error_mut(&mut self) -> Option<&mut OperationError> {
        match self {
            Self::RegistrationResponse { error, .. }
            | Self::DeregistrationResponse { error, .. }
            | Self::HandleResolutionResponse { error, .. } => error.as_mut(),
            Self::Error { error } => Some(error),
            _ => None,
        }
    }

    fn encode_body(&self, w: &mut Writer<'_>) {
        match self {
            Self::Registration { handle, element } => {
                encode_handle(handle, w);
                element.encode(w);
            }
            Self::Deregistration { handle, id }
            | Self::EndpointKeepAliveAck { handle, id }
            | Self::EndpointUnreachable { handle, id } => {
                encode_handle(handle, w);
                encode_pe_id(*id, w);
            }
            Self::RegistrationResponse {
                handle, id, error, ..
            }
            | Self::DeregistrationResponse { handle, id, error } => {
                encode_handle(handle, w);
                encode_pe_id(*id, w);
                if let Some(e) = error {
                    e.encode(w);
                }
            }
            Self::HandleResolution { handle, items, .. } => {
                encode_handle(handle, w);
                if let Some(n) = items {
                    encode_items(*n, w);
                }
            }
            Self::HandleResolutionResponse {
                handle,
                policy,
                elements,
                error,
                ..
            } => {
                encode_handle(handle, w);
                if let Some(e) = error {
                    e.encode(w);
                }
                if let Some(pol) = policy {
                    pol.encode(w);
                }
                elements.iter().for_each(|e| e.encode(w));
            }
            Self::EndpointKeepAlive {
                server_id,
                handle,
                id,
                ..
            } => {
                w.put_u32(server_id.0);
                encode_handle(handle, w);
                if let Some(id) = id {
                    encode_pe_id(*id, w);
                }
            }
            Self::ServerAnnounce {
                server_id,
                transports,
                info,
            } => {
                w.put_u32(server_id.0);
                transports.iter().for_each(|t| t.encode(w));
                if let Some(i) = info {
                    i.encode(w);
                }
            }
            Self::Cookie { cookie } | Self::CookieEcho { cookie } => encode_cookie(cookie, w),
            Self::BusinessCard {
                handle,
                policy,
                elements,
            } => {
                encode_handle(handle, w);
                if let Some(pol) = policy {
                    pol.encode(w);
                }
                elements.iter().for_each(|e| e.encode(w));
            }
            Self::Error { error } => error.encode(w),
        }
    }
}

/// How [`AsapMessage::encode_answer`] made an answer fit its length field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Encoded as it was.
    Whole,
    /// Encoded without the information its causes quoted.
    Unquoted,
    /// Too long even so: an ASAP_ERROR ("Invalid Values") was encoded instead.
    Replaced,
}

/// A handle resolution in its plain form, read without building an [`AsapMessage`]:
/// the Pool Handle and RSPLIB's Handle Resolution Option (the item count), if any, in
/// that order and nothing else. `None` for anything else (another type, other or more
/// parameters, any irregularity), which [`AsapMessage::decode`] then reads and judges;
/// what this accepts, `decode` decodes to the same `HandleResolution`.
#[inline]
pub fn plain_resolution(buf: &[u8]) -> Option<(&[u8], Option<u32>)> {
    let [kind, _flags, l0, l1, ref params @ ..] = *buf else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if kind != AsapType::HANDLE_RESOLUTION.0
        || len < 4
        || (buf.len() != len && buf.len() != len.next_multiple_of(4))
    {
        return None;
    }
    // The parameters, padding after the message left out.
    let params = params.get(..len - 4)?;
    let [t0, t1, p0, p1, ref after @ ..] = *params else {
        return None;
    };
    // A Pool Handle of at least one byte, whole within the message.
    let plen = usize::from(u16::from_be_bytes([p0, p1]));
    if u16::from_be_bytes([t0, t1]) != ParamType::POOL_HANDLE.0 || plen <= 4 {
        return None;
    }
    let handle = after.get(..plen - 4)?;
    // Nothing after its padding: no option.
    let Some(option) = after
        .get((plen - 4).next_multiple_of(4)..)
        .filter(|o| !o.is_empty())
    else {
        return Some((handle, None));
    };
    // Else the option, exactly: its 4-byte value ends the message.
    let [o0, o1, 0, 8, a, b, c, d] = *option else {
        return None;
    };
    (u16::from_be_bytes([o0, o1]) == ParamType::HANDLE_RESOLUTION_OPTION.0)
        .then_some((handle, Some(u32::from_be_bytes([a, b, c, d]))))
}

#[cfg(test)]
mod plain_resolution_tests {
    use proptest::prelude::*;

    use super::*;

    fn encoded(handle: &[u8], items: Option<u32>) -> Vec<u8> {
        let mut b = Vec::new();
        AsapMessage::HandleResolution {
            subscribe: false,
            handle: PoolHandle::new(handle),
            items,
        }
        .encode(&mut b);
        b
    }

    /// The first form of [`plain_resolution`], parameter by parameter: the one that
    /// reads the bytes in fixed patterns must answer alike for every input.
    fn reference(buf: &[u8]) -> Option<(&[u8], Option<u32>)> {
        let [kind, _flags, l0, l1, ..] = *buf else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if kind != AsapType::HANDLE_RESOLUTION.0
            || len < 4
            || (buf.len() != len && buf.len() != len.next_multiple_of(4))
        {
            return None;
        }
        let msg = &buf[..len];
        let param = |at: usize| -> Option<(u16, &[u8], usize)> {
            let head = msg.get(at..at + 4)?;
            let kind = u16::from_be_bytes([head[0], head[1]]);
            let plen = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let value = msg.get(at + 4..at.checked_add(plen)?)?;
            (plen >= 4).then_some((kind, value, at + plen.next_multiple_of(4)))
        };
        let (k, handle, next) = param(4)?;
        if k != ParamType::POOL_HANDLE.0 || handle.is_empty() {
            return None;
        }
        if next >= len {
            return Some((handle, None));
        }
        let (k, items, end) = param(next)?;
        if k != ParamType::HANDLE_RESOLUTION_OPTION.0 || end < len {
            return None;
        }
        let items: [u8; 4] = items.try_into().ok()?;
        Some((handle, Some(u32::from_be_bytes(items))))
    }

    /// Messages near the plain form: a type, a handle parameter and an option whose
    /// lengths are right or a little off, padded or not, the length field right or short.
    fn near_plain() -> impl Strategy<Value = Vec<u8>> {
        let off = || prop::sample::select(vec![0i32, 0, 0, 0, 0, 0, -1, 1, -4, 4, -5]);
        (
            prop::sample::select(vec![
                AsapType::HANDLE_RESOLUTION.0,
                AsapType::HANDLE_RESOLUTION.0,
                0x0b,
            ]),
            0usize..24,
            off(),
            prop::option::of((
                prop::sample::select(vec![
                    ParamType::HANDLE_RESOLUTION_OPTION.0,
                    ParamType::HANDLE_RESOLUTION_OPTION.0,
                    ParamType::POOL_HANDLE.0,
                ]),
                prop::sample::select(vec![4usize, 4, 4, 0, 3, 5, 8]),
                off(),
            )),
            prop::sample::select(vec![0u16, 0, 0, 1, 4]),
            prop::sample::select(vec![0usize, 0, 0, 1, 3]),
        )
            .prop_map(|(kind, handle, plen_off, option, short, pad)| {
                let field = |n: usize, off: i32| (n as i32 + off).clamp(0, 0xffff) as u16;
                let mut b = vec![kind, 0, 0, 0];
                b.extend_from_slice(&ParamType::POOL_HANDLE.0.to_be_bytes());
                b.extend_from_slice(&field(4 + handle, plen_off).to_be_bytes());
                b.extend(std::iter::repeat_n(b'h', handle));
                b.resize(b.len().next_multiple_of(4), 0);
                if let Some((t, value, off)) = option {
                    b.extend_from_slice(&t.to_be_bytes());
                    b.extend_from_slice(&field(4 + value, off).to_be_bytes());
                    b.extend(std::iter::repeat_n(7, value));
                }
                // The length field counts all of it, or falls `short` bytes short.
                let len = (b.len() as u16).saturating_sub(short);
                b[2..4].copy_from_slice(&len.to_be_bytes());
                b.extend(std::iter::repeat_n(0, pad));
                b
            })
    }

    proptest! {
        /// Whatever the fast path accepts, the full decoder decodes alike; and it
        /// accepts every plain resolution the encoder writes.
        #[test]
        fn agrees_with_the_decoder(
            handle in proptest::collection::vec(any::<u8>(), 1..40),
            items in proptest::option::of(any::<u32>()),
            flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..3),
            cut in 0usize..8,
        ) {
            let good = encoded(&handle, items);
            prop_assert_eq!(plain_resolution(&good), Some((&handle[..], items)));
            let mut b = good;
            for (at, x) in flips {
                if let Some(byte) = b.get_mut(at) {
                    *byte ^= x;
                }
            }
            b.truncate(b.len().saturating_sub(cut));
            prop_assert_eq!(plain_resolution(&b), reference(&b));
            if let Some((h, n)) = plain_resolution(&b) {
                match AsapMessage::decode(&b).map(|d| (d.message, d.unrecognized.is_empty())) {
                    Ok((AsapMessage::HandleResolution { handle, items, .. }, true)) => {
                        prop_assert_eq!(handle.as_bytes(), h);
                        prop_assert_eq!(items, n);
                    }
                    other => prop_assert!(false, "fast path took {:?}, decoder: {:?}", b, other),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// The fixed-pattern reading answers as the parameter-by-parameter one did, for
        /// messages near the plain form and for any bytes at all.
        #[test]
        fn reads_as_the_reference_does(
            b in near_plain(),
            any_bytes in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            prop_assert_eq!(plain_resolution(&b), reference(&b));
            prop_assert_eq!(plain_resolution(&any_bytes), reference(&any_bytes));
        }
    }
}

#[cfg(test)]
mod fit_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{ErrorCause, MAX_MESSAGE_LEN};

    fn answer(kind: u8, handle: PoolHandle, error: OperationError) -> AsapMessage {
        let id = PoolElementId(1);
        match kind % 4 {
            0 => AsapMessage::RegistrationResponse {
                rejected: true,
                handle,
                id,
                error: Some(error),
            },
            1 => AsapMessage::DeregistrationResponse {
                handle,
                id,
                error: Some(error),
            },
            2 => AsapMessage::HandleResolutionResponse {
                accepted: false,
                handle,
                policy: None,
                elements: Vec::new(),
                error: Some(error),
            },
            _ => AsapMessage::Error { error },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// RFC 5354 §4: whatever an answer echoes and quotes, what `encode_answer`
        /// writes decodes, and its length field is its length less the final padding.
        #[test]
        fn encode_answer_always_fits_the_length_field(
            kind in any::<u8>(),
            handle_len in prop_oneof![1usize..64, 30_000usize..65_600],
            infos in proptest::collection::vec(prop_oneof![0usize..16, 0usize..70_000], 1..6),
        ) {
            let causes = infos
                .iter()
                .map(|&n| ErrorCause { code: CauseCode::INVALID_VALUES, info: vec![7; n] })
                .collect();
            let m = answer(kind, PoolHandle::new(&vec![b'h'; handle_len]), OperationError { causes });
            let mut out = Vec::new();
            let fit = m.encode_answer(&mut out);
            let len = usize::from(u16::from_be_bytes([out[2], out[3]]));
            prop_assert!(len <= MAX_MESSAGE_LEN);
            prop_assert_eq!(len.next_multiple_of(4), out.len());
            let decoded = AsapMessage::decode(&out).map(|d| d.message);
            prop_assert!(decoded.is_ok(), "{:?}", decoded);
            if fit == Fit::Whole {
                prop_assert_eq!(decoded.unwrap(), m);
            }
        }
    }
}
