//! Codec of the address and transport parameters (RFC 5354 §3.1-3.7, §3.16).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codes::{ParamType, TransportUse};
use super::error::{DecodeError, Span};
use super::param::{DccpTransport, IpTransport, SctpTransport, ServerTransport, UserTransport};
use super::reader::{Params, Tlv};
use super::writer::Writer;

/// IPv4 (0x0001, length 8) or IPv6 (0x0002, length 20) address; any other known
/// parameter is out of place where an address is expected.
fn decode_address(t: &Tlv<'_>) -> Result<IpAddr, DecodeError> {
    match t.param() {
        ParamType::IPV4_ADDRESS => Ok(Ipv4Addr::from(t.fixed::<4>()?).into()),
        ParamType::IPV6_ADDRESS => Ok(Ipv6Addr::from(t.fixed::<16>()?).into()),
        _ => Err(t.unexpected()),
    }
}

/// An IPv4-mapped IPv6 address stays an IPv6 parameter: the codec sends what it is given.
fn encode_address(a: &IpAddr, w: &mut Writer<'_>) {
    match a {
        IpAddr::V4(v4) => w.tlv(ParamType::IPV4_ADDRESS.0, |w| w.put_bytes(&v4.octets())),
        IpAddr::V6(v6) => w.tlv(ParamType::IPV6_ADDRESS.0, |w| w.put_bytes(&v6.octets())),
    }
}

/// RFC 5354 §3.3, §3.5-3.7: TCP, UDP, UDP-Lite and DCCP carry exactly one address.
fn single_address(mut p: Params<'_, '_>) -> Result<IpAddr, DecodeError> {
    let addr = match p.next()? {
        Some(a) => decode_address(&a)?,
        None => return Err(p.missing(ParamType::IPV4_ADDRESS)),
    };
    p.finish()?;
    Ok(addr)
}

impl SctpTransport {
    /// RFC 5354 §3.4: port, Transport Use, then one or more addresses (multi-homing).
    pub(crate) fn decode(t: &Tlv<'_>, unrec: &mut Vec<Span>) -> Result<Self, DecodeError> {
        if t.param() != ParamType::SCTP_TRANSPORT {
            return Err(t.unexpected());
        }
        let mut r = t.value;
        let (Some(port), Some(transport_use)) = (r.u16(), r.u16()) else {
            return Err(t.invalid());
        };
        let mut p = Params::nested(r, t, unrec);
        let mut addresses = Vec::new();
        while let Some(a) = p.next()? {
            addresses.push(decode_address(&a)?);
        }
        if addresses.is_empty() {
            return Err(p.missing(ParamType::IPV4_ADDRESS));
        }
        Ok(Self {
            port,
            transport_use: TransportUse(transport_use),
            addresses,
        })
    }

    /// Appends the SCTP Transport TLV (0x0004).
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.tlv(ParamType::SCTP_TRANSPORT.0, |w| {
            w.put_u16(self.port);
            w.put_u16(self.transport_use.0);
            self.addresses.iter().for_each(|a| encode_address(a, w));
        });
    }
}

impl IpTransport {
    /// RFC 5354 §3.5-3.7: port, reserved (RSPLIB: Transport Use, kept as is), address.
    fn decode(t: &Tlv<'_>, unrec: &mut Vec<Span>) -> Result<Self, DecodeError> {
        let mut r = t.value;
        let (Some(port), Some(reserved)) = (r.u16(), r.u16()) else {
            return Err(t.invalid());
        };
        let address = single_address(Params::nested(r, t, unrec))?;
        Ok(Self {
            port,
            reserved,
            address,
        })
    }

    fn encode_as(&self, kind: ParamType, w: &mut Writer<'_>) {
        w.tlv(kind.0, |w| {
            w.put_u16(self.port);
            w.put_u16(self.reserved);
            encode_address(&self.address, w);
        });
    }
}

impl DccpTransport {
    /// RFC 5354 §3.3: port, reserved, service code, address.
    fn decode(t: &Tlv<'_>, unrec: &mut Vec<Span>) -> Result<Self, DecodeError> {
        let mut r = t.value;
        let (Some(port), Some(reserved), Some(service_code)) = (r.u16(), r.u16(), r.u32()) else {
            return Err(t.invalid());
        };
        let address = single_address(Params::nested(r, t, unrec))?;
        Ok(Self {
            port,
            reserved,
            service_code,
            address,
        })
    }

    fn encode(&self, w: &mut Writer<'_>) {
        w.tlv(ParamType::DCCP_TRANSPORT.0, |w| {
            w.put_u16(self.port);
            w.put_u16(self.reserved);
            w.put_u32(self.service_code);
            encode_address(&self.address, w);
        });
    }
}

impl UserTransport {
    /// Any of the six user transports of RFC 5354 §3.3-3.7, §3.16.
    pub(crate) fn decode(t: &Tlv<'_>, unrec: &mut Vec<Span>) -> Result<Self, DecodeError> {
        Ok(match t.param() {
            ParamType::SCTP_TRANSPORT => Self::Sctp(SctpTransport::decode(t, unrec)?),
            ParamType::TCP_TRANSPORT => Self::Tcp(IpTransport::decode(t, unrec)?),
            ParamType::UDP_TRANSPORT => Self::Udp(IpTransport::decode(t, unrec)?),
            ParamType::UDP_LITE_TRANSPORT => Self::UdpLite(IpTransport::decode(t, unrec)?),
            ParamType::DCCP_TRANSPORT => Self::Dccp(DccpTransport::decode(t, unrec)?),
            ParamType::OPAQUE_TRANSPORT => Self::Opaque(t.bytes().to_vec()),
            _ => return Err(t.unexpected()),
        })
    }

    /// The parameter type this transport is sent as.
    pub fn param_type(&self) -> ParamType {
        match self {
            Self::Sctp(_) => ParamType::SCTP_TRANSPORT,
            Self::Tcp(_) => ParamType::TCP_TRANSPORT,
            Self::Udp(_) => ParamType::UDP_TRANSPORT,
            Self::UdpLite(_) => ParamType::UDP_LITE_TRANSPORT,
            Self::Dccp(_) => ParamType::DCCP_TRANSPORT,
            Self::Opaque(_) => ParamType::OPAQUE_TRANSPORT,
        }
    }

    /// Appends the transport's TLV.
    pub fn encode(&self, w: &mut Writer<'_>) {
        match self {
            Self::Sctp(s) => s.encode(w),
            Self::Tcp(t) => t.encode_as(ParamType::TCP_TRANSPORT, w),
            Self::Udp(t) => t.encode_as(ParamType::UDP_TRANSPORT, w),
            Self::UdpLite(t) => t.encode_as(ParamType::UDP_LITE_TRANSPORT, w),
            Self::Dccp(d) => d.encode(w),
            Self::Opaque(b) => w.tlv(ParamType::OPAQUE_TRANSPORT.0, |w| w.put_bytes(b)),
        }
    }

    /// The transport TLV alone, e.g. as the information of an "Inconsistent Transport
    /// Type" cause (RFC 5354 §3.12).
    pub fn to_tlv(&self) -> Vec<u8> {
        super::writer::to_vec(|w| self.encode(w))
    }
}

impl ServerTransport {
    /// RFC 5352 §2.2.10: a SERVER_ANNOUNCE lists SCTP or TCP transports only.
    pub(crate) fn decode(t: &Tlv<'_>, unrec: &mut Vec<Span>) -> Result<Self, DecodeError> {
        match t.param() {
            ParamType::SCTP_TRANSPORT => Ok(Self::Sctp(SctpTransport::decode(t, unrec)?)),
            ParamType::TCP_TRANSPORT => Ok(Self::Tcp(IpTransport::decode(t, unrec)?)),
            _ => Err(t.unexpected()),
        }
    }

    /// Appends the transport's TLV.
    pub fn encode(&self, w: &mut Writer<'_>) {
        match self {
            Self::Sctp(s) => s.encode(w),
            Self::Tcp(t) => t.encode_as(ParamType::TCP_TRANSPORT, w),
        }
    }
}
