//! Codec of the compound parameters: Pool Element (RFC 5354 §3.10) and Server
//! Information (RFC 5354 §3.11).

use super::codes::ParamType;
use super::error::{DecodeError, Span};
use super::param::UserTransport;
use super::param::{
    PolicyParam, PoolElement, RegistrationLife, SctpTransport, ServerInformation, ServerTransport,
};
use super::reader::{Params, Tlv};
use super::writer::Writer;
use crate::ids::{PoolElementId, RegistrarId};

impl PoolElement {
    /// RFC 5354 §3.10: PE ID, Home ENRP Server ID, Registration Life, then exactly one
    /// user transport, the policy and the optional ASAP (SCTP) transport, in this order.
    pub(crate) fn decode(t: &Tlv<'_>, unrec: &mut Vec<Span>) -> Result<Self, DecodeError> {
        let mut r = t.value;
        let (Some(id), Some(home), Some(life)) = (r.u32(), r.u32(), r.u32()) else {
            return Err(t.invalid());
        };
        let mut p = Params::nested(r, t, unrec);
        let user_transport = match p.next()? {
            Some(u) => UserTransport::decode(&u, p.unrec())?,
            // No single type names "a user transport"; SCTP is the one RFC 5352 expects.
            None => return Err(p.missing(ParamType::SCTP_TRANSPORT)),
        };
        let policy = PolicyParam::decode(&p.expect(ParamType::POLICY)?)?;
        let asap_transport = match p.take_if(ParamType::SCTP_TRANSPORT)? {
            Some(a) => Some(SctpTransport::decode(&a, p.unrec())?),
            None => None,
        };
        p.finish()?;
        Ok(Self {
            id: PoolElementId(id),
            home: RegistrarId(home),
            registration_life: RegistrationLife(life),
            user_transport,
            policy,
            asap_transport,
        })
    }

    /// Appends the Pool Element TLV (0x000a).
    pub fn encode(&self, w: &mut Writer<'_>) {
        self.encode_with(w, true);
    }

    /// Appends the Pool Element TLV without its ASAP transport, as a handle resolution
    /// response carries it (RSPLIB omits it there; reference §4.7).
    pub fn encode_without_asap_transport(&self, w: &mut Writer<'_>) {
        self.encode_with(w, false);
    }

    fn encode_with(&self, w: &mut Writer<'_>, asap_transport: bool) {
        w.tlv(ParamType::POOL_ELEMENT.0, |w| {
            w.put_u32(self.id.0);
            w.put_u32(self.home.0);
            w.put_u32(self.registration_life.0);
            self.user_transport.encode(w);
            self.policy.encode(w);
            if let Some(a) = self.asap_transport.as_ref().filter(|_| asap_transport) {
                a.encode(w);
            }
        });
    }
}

impl ServerInformation {
    /// RFC 5354 §3.11: the server's ID and its ENRP transport (SCTP, or TCP for our
    /// ENRP over TCP).
    pub(crate) fn decode(t: &Tlv<'_>, unrec: &mut Vec<Span>) -> Result<Self, DecodeError> {
        let mut r = t.value;
        let Some(id) = r.u32() else {
            return Err(t.invalid());
        };
        let mut p = Params::nested(r, t, unrec);
        let transport = match p.next()? {
            Some(t) => ServerTransport::decode(&t, p.unrec())?,
            None => return Err(p.missing(ParamType::SCTP_TRANSPORT)),
        };
        p.finish()?;
        Ok(Self {
            server_id: RegistrarId(id),
            transport,
        })
    }

    /// Appends the Server Information TLV (0x000b).
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.tlv(ParamType::SERVER_INFORMATION.0, |w| {
            w.put_u32(self.server_id.0);
            self.transport.encode(w);
        });
    }
}

/// One or more Pool Element parameters in a row (RFC 5352 §2.2.6, §2.2.13; RFC 5353 §2.3).
pub(crate) fn take_elements(p: &mut Params<'_, '_>) -> Result<Vec<PoolElement>, DecodeError> {
    let mut elements = Vec::new();
    while let Some(t) = p.take_if(ParamType::POOL_ELEMENT)? {
        elements.push(PoolElement::decode(&t, p.unrec())?);
    }
    if elements.is_empty() {
        return Err(p.missing(ParamType::POOL_ELEMENT));
    }
    Ok(elements)
}

pub(crate) fn take_element(p: &mut Params<'_, '_>) -> Result<PoolElement, DecodeError> {
    PoolElement::decode(&p.expect(ParamType::POOL_ELEMENT)?, p.unrec())
}
