//! Wire code points as open newtypes: unknown values survive decoding and print in hex.

use std::fmt;

/// What a receiver does with a message type it does not know (RFC 5354 §4, top two bits
/// of the type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownMessageAction {
    /// `00`: discard silently.
    Discard,
    /// `01`: discard and report "Unrecognized Message" (cause 0x0002).
    DiscardAndReport,
    /// `10`, `11`: reserved; treated as a silent discard.
    Reserved,
}

/// What a receiver does with a parameter type it does not know (RFC 5354 §3, top two bits
/// of the type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownParamAction {
    /// `00`: stop processing, discard the message.
    Stop,
    /// `01`: stop, discard, report "Unrecognized Parameter" (cause 0x0001).
    StopAndReport,
    /// `10`: skip this parameter and continue.
    Skip,
    /// `11`: skip, continue, and report "Unrecognized Parameter".
    SkipAndReport,
}

impl UnknownParamAction {
    pub fn skips(self) -> bool {
        matches!(self, Self::Skip | Self::SkipAndReport)
    }

    pub fn reports(self) -> bool {
        matches!(self, Self::StopAndReport | Self::SkipAndReport)
    }
}

macro_rules! open_code {
    ($(#[$m:meta])* $name:ident($inner:ty), width $w:literal { $($(#[$cm:meta])* $c:ident = $v:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            $($(#[$cm])* pub const $c: Self = Self($v);)*

            /// The constant's name for a known code, `None` for an unknown one.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$c => Some(stringify!($c)),)*
                    _ => None,
                }
            }

            /// Every named code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$c),*];
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}::{}", stringify!($name), n),
                    None => write!(f, concat!(stringify!($name), "({:#0", $w, "x})"), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, concat!("{:#0", $w, "x}"), self.0),
                }
            }
        }
    };
}

open_code! {
    /// ASAP message type (RFC 5352 §2.2).
    AsapType(u8), width 4 {
        REGISTRATION = 0x01,
        DEREGISTRATION = 0x02,
        REGISTRATION_RESPONSE = 0x03,
        DEREGISTRATION_RESPONSE = 0x04,
        HANDLE_RESOLUTION = 0x05,
        HANDLE_RESOLUTION_RESPONSE = 0x06,
        ENDPOINT_KEEP_ALIVE = 0x07,
        ENDPOINT_KEEP_ALIVE_ACK = 0x08,
        ENDPOINT_UNREACHABLE = 0x09,
        SERVER_ANNOUNCE = 0x0a,
        COOKIE = 0x0b,
        COOKIE_ECHO = 0x0c,
        BUSINESS_CARD = 0x0d,
        ERROR = 0x0e,
    }
}

open_code! {
    /// ENRP message type (RFC 5353 §2).
    EnrpType(u8), width 4 {
        PRESENCE = 0x01,
        HANDLE_TABLE_REQUEST = 0x02,
        HANDLE_TABLE_RESPONSE = 0x03,
        HANDLE_UPDATE = 0x04,
        LIST_REQUEST = 0x05,
        LIST_RESPONSE = 0x06,
        INIT_TAKEOVER = 0x07,
        INIT_TAKEOVER_ACK = 0x08,
        TAKEOVER_SERVER = 0x09,
        ERROR = 0x0a,
    }
}

/// RFC 5354 §4: the two high-order bits of an unknown message type.
fn message_action(code: u8) -> UnknownMessageAction {
    match code >> 6 {
        0b00 => UnknownMessageAction::Discard,
        0b01 => UnknownMessageAction::DiscardAndReport,
        _ => UnknownMessageAction::Reserved,
    }
}

impl AsapType {
    pub fn unknown_action(self) -> UnknownMessageAction {
        message_action(self.0)
    }
}

impl EnrpType {
    pub fn unknown_action(self) -> UnknownMessageAction {
        message_action(self.0)
    }
}

open_code! {
    /// Parameter type (RFC 5354 §3, plus RSPLIB's Handle Resolution Option).
    ParamType(u16), width 6 {
        IPV4_ADDRESS = 0x0001,
        IPV6_ADDRESS = 0x0002,
        DCCP_TRANSPORT = 0x0003,
        SCTP_TRANSPORT = 0x0004,
        TCP_TRANSPORT = 0x0005,
        UDP_TRANSPORT = 0x0006,
        UDP_LITE_TRANSPORT = 0x0007,
        POLICY = 0x0008,
        POOL_HANDLE = 0x0009,
        POOL_ELEMENT = 0x000a,
        SERVER_INFORMATION = 0x000b,
        OPERATION_ERROR = 0x000c,
        COOKIE = 0x000d,
        PE_IDENTIFIER = 0x000e,
        PE_CHECKSUM = 0x000f,
        OPAQUE_TRANSPORT = 0x0010,
        /// draft-dreibholz-rserpool-asap-hropt; action bits `10` (skip if unknown).
        HANDLE_RESOLUTION_OPTION = 0x803f,
    }
}

impl ParamType {
    /// RFC 5354 §3: the two high-order bits say what to do when the type is unknown.
    pub fn unknown_action(self) -> UnknownParamAction {
        match self.0 >> 14 {
            0b00 => UnknownParamAction::Stop,
            0b01 => UnknownParamAction::StopAndReport,
            0b10 => UnknownParamAction::Skip,
            _ => UnknownParamAction::SkipAndReport,
        }
    }

    pub fn is_known(self) -> bool {
        self.name().is_some()
    }
}

open_code! {
    /// Error cause code inside an Operation Error (RFC 5354 §3.12), plus the
    /// non-standard codes RSPLIB puts on the wire (received, never sent by us).
    CauseCode(u16), width 6 {
        UNSPECIFIED = 0x0000,
        UNRECOGNIZED_PARAMETER = 0x0001,
        UNRECOGNIZED_MESSAGE = 0x0002,
        INVALID_VALUES = 0x0003,
        NON_UNIQUE_PE_IDENTIFIER = 0x0004,
        INCONSISTENT_POOLING_POLICY = 0x0005,
        LACK_OF_RESOURCES = 0x0006,
        INCONSISTENT_TRANSPORT_TYPE = 0x0007,
        INCONSISTENT_DATA_CONTROL = 0x0008,
        UNKNOWN_POOL_HANDLE = 0x0009,
        REJECTED_SECURITY = 0x000a,
        RSPLIB_INVALID_MESSAGE = 0x0010,
        RSPLIB_INVALID_VALUE = 0x0011,
        RSPLIB_WRONG_PROTOCOL = 0x100a,
        RSPLIB_UNSUPPORTED_POOL_POLICY = 0x100b,
        RSPLIB_INVALID_ID = 0xf000,
        RSPLIB_INVALID_POOL_POLICY = 0xf003,
        RSPLIB_INVALID_POOL_HANDLE = 0xf004,
        RSPLIB_INVALID_ADDRESSES = 0xf005,
        RSPLIB_INVALID_REGISTRATOR = 0xf006,
        RSPLIB_NO_USABLE_ASAP_ADDRESSES = 0xf007,
        RSPLIB_NO_USABLE_USER_ADDRESSES = 0xf008,
    }
}

impl CauseCode {
    /// Whether RFC 5354 defines this code (the only ones our registrar sends).
    pub fn is_standard(self) -> bool {
        self.0 <= 0x000a
    }
}

open_code! {
    /// Pool member selection policy type (RFC 5356 §7.1, plus RSPLIB's `0xb000xxxx`).
    PolicyType(u32), width 10 {
        ROUND_ROBIN = 0x0000_0001,
        WEIGHTED_ROUND_ROBIN = 0x0000_0002,
        RANDOM = 0x0000_0003,
        WEIGHTED_RANDOM = 0x0000_0004,
        PRIORITY = 0x0000_0005,
        LEAST_USED = 0x4000_0001,
        LEAST_USED_DEGRADATION = 0x4000_0002,
        PRIORITY_LEAST_USED = 0x4000_0003,
        RANDOMIZED_LEAST_USED = 0x4000_0004,
        RANDOMIZED_PRIORITY_LEAST_USED = 0xb000_1001,
        RANDOMIZED_LEAST_USED_DEGRADATION = 0xb000_1002,
        PRIORITY_LEAST_USED_DEGRADATION = 0xb000_1003,
        RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION = 0xb000_1004,
        WEIGHTED_RANDOM_DPF = 0xb000_2001,
        LEAST_USED_DPF = 0xb000_2002,
        LEAST_USED_DEGRADATION_DPF = 0xb000_2003,
    }
}

impl PolicyType {
    /// RFC 5356 §7.1: bit 30 marks an adaptive (load-based) policy.
    pub fn is_adaptive(self) -> bool {
        self.0 & 0x4000_0000 != 0
    }

    /// RFC 5356 §7.1: bit 31 marks a non-standard (private) policy.
    pub fn is_private(self) -> bool {
        self.0 & 0x8000_0000 != 0
    }
}

open_code! {
    /// Transport Use of an SCTP transport (RFC 5354 §3.4); RSPLIB also writes it into the
    /// reserved field of TCP/UDP transports.
    TransportUse(u16), width 6 {
        DATA_ONLY = 0x0000,
        DATA_PLUS_CONTROL = 0x0001,
    }
}

open_code! {
    /// ENRP_HANDLE_UPDATE action (RFC 5353 §2.4).
    UpdateAction(u16), width 6 {
        ADD_PE = 0x0000,
        DEL_PE = 0x0001,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_print_in_hex() {
        assert_eq!(format!("{:?}", ParamType(0x1234)), "ParamType(0x1234)");
        assert_eq!(ParamType(0x1234).to_string(), "0x1234");
        assert_eq!(
            format!("{:?}", ParamType::POOL_HANDLE),
            "ParamType::POOL_HANDLE"
        );
        assert_eq!(PolicyType(0xdead_beef).to_string(), "0xdeadbeef");
        assert_eq!(AsapType(0x3f).to_string(), "0x3f");
    }

    #[test]
    fn rfc5354_action_bits() {
        assert_eq!(ParamType(0x0011).unknown_action(), UnknownParamAction::Stop);
        assert_eq!(
            ParamType(0x4011).unknown_action(),
            UnknownParamAction::StopAndReport
        );
        assert_eq!(
            ParamType::HANDLE_RESOLUTION_OPTION.unknown_action(),
            UnknownParamAction::Skip
        );
        assert_eq!(
            ParamType(0xc011).unknown_action(),
            UnknownParamAction::SkipAndReport
        );
        assert_eq!(
            AsapType(0x0f).unknown_action(),
            UnknownMessageAction::Discard
        );
        assert_eq!(
            AsapType(0x4f).unknown_action(),
            UnknownMessageAction::DiscardAndReport
        );
        assert_eq!(
            EnrpType(0xbf).unknown_action(),
            UnknownMessageAction::Reserved
        );
    }

    #[test]
    fn policy_bits() {
        assert!(PolicyType::LEAST_USED.is_adaptive());
        assert!(!PolicyType::ROUND_ROBIN.is_adaptive());
        assert!(PolicyType::LEAST_USED_DPF.is_private());
        assert_eq!(PolicyType::ALL.len(), 16);
    }
}
