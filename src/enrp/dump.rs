//! A handlespace dump over ENRP, as RSPLIB's `hsdump` takes one: introduce ourselves
//! with a PRESENCE, ask for the peer list and the whole handle table (W=0), and follow
//! "more to send" until the last chunk. Sans-IO: the caller moves the bytes.
//!
//! Each round sends PRESENCE, LIST_REQUEST and HANDLE_TABLE_REQUEST together (RSPLIB's
//! registrar answers a table request only from a peer it has heard a PRESENCE from);
//! the responder keeps its cursor per requester ID, so the next round continues where
//! the last chunk ended.

use std::collections::BTreeMap;

use crate::ids::{PoolElementId, PoolHandle, RegistrarId};
use crate::wire::{EnrpIds, EnrpMessage, PoolElement, ServerInformation};

/// What the registrar answered so far.
#[derive(Clone, Debug, Default)]
pub struct Dump {
    /// The registrar's server ID (from its answers).
    pub registrar: RegistrarId,
    /// Its peers, from the LIST_RESPONSE.
    pub peers: Vec<ServerInformation>,
    /// Every PE, by pool handle and PE ID.
    pub elements: BTreeMap<(PoolHandle, PoolElementId), PoolElement>,
    /// Handle table responses received.
    pub chunks: usize,
}

/// What to do after a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these and keep reading.
    Send(Vec<Vec<u8>>),
    /// Keep reading.
    Wait,
    /// The last chunk arrived.
    Done,
    /// The registrar refused (R flag).
    Refused,
}

/// One dump in progress.
#[derive(Debug)]
pub struct Dumper {
    id: RegistrarId,
    info: ServerInformation,
    dump: Dump,
}

impl Dumper {
    /// `id`: ours for the exchange (random, non-zero); `info`: our end of the connection
    /// as Server Information (RSPLIB checks it against the association).
    pub fn new(id: RegistrarId, info: ServerInformation) -> Self {
        Self {
            id,
            info,
            dump: Dump::default(),
        }
    }

    /// The first round's messages.
    pub fn start(&self) -> Vec<Vec<u8>> {
        self.round()
    }

    fn round(&self) -> Vec<Vec<u8>> {
        let ids = EnrpIds {
            sender: self.id,
            receiver: RegistrarId::NONE,
        };
        let messages = [
            EnrpMessage::Presence {
                ids,
                reply_required: false,
                // Our empty handlespace.
                checksum: Some(0xffff),
                info: Some(self.info.clone()),
            },
            EnrpMessage::ListRequest { ids },
            EnrpMessage::HandleTableRequest {
                ids,
                owned_only: false,
            },
        ];
        messages
            .iter()
            .map(|m| {
                let mut b = Vec::new();
                m.encode(&mut b);
                b
            })
            .collect()
    }

    /// Handles one message from the registrar. Undecodable ones are an error.
    pub fn on_message(&mut self, bytes: &[u8]) -> Result<Step, crate::wire::DecodeError> {
        let m = EnrpMessage::decode(bytes)?.message;
        Ok(match m {
            EnrpMessage::ListResponse { ids, servers, .. } => {
                self.dump.registrar = ids.sender;
                self.dump.peers = servers;
                Step::Wait
            }
            EnrpMessage::HandleTableResponse {
                ids,
                reject,
                more,
                entries,
            } => {
                self.dump.registrar = ids.sender;
                if reject {
                    return Ok(Step::Refused);
                }
                self.dump.chunks += 1;
                for entry in entries {
                    for e in entry.elements {
                        self.dump.elements.insert((entry.handle.clone(), e.id), e);
                    }
                }
                if more {
                    Step::Send(self.round())
                } else {
                    Step::Done
                }
            }
            _ => Step::Wait,
        })
    }

    pub fn dump(&self) -> &Dump {
        &self.dump
    }

    pub fn into_dump(self) -> Dump {
        self.dump
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::wire::{PoolEntry, SctpTransport, ServerTransport, TransportUse};

    fn info() -> ServerInformation {
        ServerInformation {
            server_id: RegistrarId(7),
            transport: ServerTransport::Sctp(SctpTransport {
                port: 40000,
                transport_use: TransportUse::DATA_ONLY,
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))],
            }),
        }
    }

    #[test]
    fn rounds_follow_more_to_send_until_the_last_chunk() {
        let mut d = Dumper::new(RegistrarId(7), info());
        let first = d.start();
        let kinds: Vec<u8> = first.iter().map(|b| b[0]).collect();
        assert_eq!(kinds, vec![0x01, 0x05, 0x02], "PRESENCE, LIST, TABLE (W=0)");
        assert_eq!(first[2][1], 0, "W=0: the whole table");
        let element = crate::wire::samples::enrp_messages()
            .into_iter()
            .find_map(|m| match m {
                EnrpMessage::HandleUpdate { element, .. } => Some(element),
                _ => None,
            })
            .unwrap();
        let chunk = |more: bool, id: u32| {
            let mut e = element.clone();
            e.id = PoolElementId(id);
            let mut b = Vec::new();
            EnrpMessage::HandleTableResponse {
                ids: EnrpIds {
                    sender: RegistrarId(1),
                    receiver: RegistrarId(7),
                },
                reject: false,
                more,
                entries: vec![PoolEntry {
                    handle: "p".into(),
                    elements: vec![e],
                }],
            }
            .encode(&mut b);
            b
        };
        assert!(matches!(d.on_message(&chunk(true, 1)), Ok(Step::Send(m)) if m.len() == 3));
        assert_eq!(d.on_message(&chunk(false, 2)), Ok(Step::Done));
        assert_eq!(d.dump().elements.len(), 2);
        assert_eq!(d.dump().registrar, RegistrarId(1));
        assert!(d.on_message(&[1, 2, 3]).is_err());
    }
}
