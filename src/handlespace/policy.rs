//! Member selection policies (RFC 5356, plus RSPLIB's `0xb000xxxx` extensions) as typed
//! values, and what each means for selection: an order key or a random weight.

use crate::wire::{PolicyParam, PolicyType};

/// Largest load / weight value; loads are fractions of it (RFC 5356 §3.1).
pub const MAX_LOAD: u32 = u32::MAX;

/// A PE's policy with its values, parsed and checked from the wire parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    RoundRobin,
    WeightedRoundRobin {
        weight: u32,
    },
    Random,
    WeightedRandom {
        weight: u32,
    },
    /// Larger is preferred.
    Priority {
        priority: u32,
    },
    LeastUsed {
        load: u32,
    },
    LeastUsedDegradation {
        load: u32,
        load_degradation: u32,
    },
    PriorityLeastUsed {
        load: u32,
        load_degradation: u32,
    },
    RandomizedLeastUsed {
        load: u32,
    },
    RandomizedPriorityLeastUsed {
        load: u32,
        load_degradation: u32,
    },
    RandomizedLeastUsedDegradation {
        load: u32,
        load_degradation: u32,
    },
    PriorityLeastUsedDegradation {
        load: u32,
        load_degradation: u32,
    },
    RandomizedPriorityLeastUsedDegradation {
        load: u32,
        load_degradation: u32,
    },
    WeightedRandomDpf {
        weight: u32,
        weight_dpf: u32,
        distance: u32,
    },
    LeastUsedDpf {
        load: u32,
        load_dpf: u32,
        distance: u32,
    },
    LeastUsedDegradationDpf {
        load: u32,
        load_degradation: u32,
        load_dpf: u32,
        distance: u32,
    },
}

/// Why a policy parameter cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy type {0} is not supported")]
    Unsupported(PolicyType),
    #[error("policy {kind} needs {expected} values, got {got}")]
    WrongValueCount {
        kind: PolicyType,
        expected: usize,
        got: usize,
    },
}

/// How a pool picks its PEs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Sorted by a key, ties round robin (RR, WRR, PRIO and the least-used family).
    Ordered,
    /// Random without repetition, P ∝ weight.
    Weighted,
    /// Random without repetition, uniform.
    Uniform,
}

impl Policy {
    pub fn from_param(p: &PolicyParam) -> Result<Self, PolicyError> {
        let v = p.values();
        let need = |n: usize| {
            if v.len() == n {
                Ok(())
            } else {
                Err(PolicyError::WrongValueCount {
                    kind: p.kind,
                    expected: n,
                    got: v.len(),
                })
            }
        };
        Ok(match p.kind {
            PolicyType::ROUND_ROBIN => need(0).map(|_| Self::RoundRobin)?,
            PolicyType::WEIGHTED_ROUND_ROBIN => {
                need(1).map(|_| Self::WeightedRoundRobin { weight: v[0] })?
            }
            PolicyType::RANDOM => need(0).map(|_| Self::Random)?,
            PolicyType::WEIGHTED_RANDOM => {
                need(1).map(|_| Self::WeightedRandom { weight: v[0] })?
            }
            PolicyType::PRIORITY => need(1).map(|_| Self::Priority { priority: v[0] })?,
            PolicyType::LEAST_USED => need(1).map(|_| Self::LeastUsed { load: v[0] })?,
            PolicyType::LEAST_USED_DEGRADATION => need(2).map(|_| Self::LeastUsedDegradation {
                load: v[0],
                load_degradation: v[1],
            })?,
            PolicyType::PRIORITY_LEAST_USED => need(2).map(|_| Self::PriorityLeastUsed {
                load: v[0],
                load_degradation: v[1],
            })?,
            PolicyType::RANDOMIZED_LEAST_USED => {
                need(1).map(|_| Self::RandomizedLeastUsed { load: v[0] })?
            }
            PolicyType::RANDOMIZED_PRIORITY_LEAST_USED => {
                need(2).map(|_| Self::RandomizedPriorityLeastUsed {
                    load: v[0],
                    load_degradation: v[1],
                })?
            }
            PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION => {
                need(2).map(|_| Self::RandomizedLeastUsedDegradation {
                    load: v[0],
                    load_degradation: v[1],
                })?
            }
            PolicyType::PRIORITY_LEAST_USED_DEGRADATION => {
                need(2).map(|_| Self::PriorityLeastUsedDegradation {
                    load: v[0],
                    load_degradation: v[1],
                })?
            }
            PolicyType::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION => {
                need(2).map(|_| Self::RandomizedPriorityLeastUsedDegradation {
                    load: v[0],
                    load_degradation: v[1],
                })?
            }
            PolicyType::WEIGHTED_RANDOM_DPF => need(3).map(|_| Self::WeightedRandomDpf {
                weight: v[0],
                weight_dpf: v[1],
                distance: v[2],
            })?,
            PolicyType::LEAST_USED_DPF => need(3).map(|_| Self::LeastUsedDpf {
                load: v[0],
                load_dpf: v[1],
                distance: v[2],
            })?,
            PolicyType::LEAST_USED_DEGRADATION_DPF => {
                need(4).map(|_| Self::LeastUsedDegradationDpf {
                    load: v[0],
                    load_degradation: v[1],
                    load_dpf: v[2],
                    distance: v[3],
                })?
            }
            other => return Err(PolicyError::Unsupported(other)),
        })
    }

    pub fn kind(&self) -> PolicyType {
        match self {
            Self::RoundRobin => PolicyType::ROUND_ROBIN,
            Self::WeightedRoundRobin { .. } => PolicyType::WEIGHTED_ROUND_ROBIN,
            Self::Random => PolicyType::RANDOM,
            Self::WeightedRandom { .. } => PolicyType::WEIGHTED_RANDOM,
            Self::Priority { .. } => PolicyType::PRIORITY,
            Self::LeastUsed { .. } => PolicyType::LEAST_USED,
            Self::LeastUsedDegradation { .. } => PolicyType::LEAST_USED_DEGRADATION,
            Self::PriorityLeastUsed { .. } => PolicyType::PRIORITY_LEAST_USED,
            Self::RandomizedLeastUsed { .. } => PolicyType::RANDOMIZED_LEAST_USED,
            Self::RandomizedPriorityLeastUsed { .. } => PolicyType::RANDOMIZED_PRIORITY_LEAST_USED,
            Self::RandomizedLeastUsedDegradation { .. } => {
                PolicyType::RANDOMIZED_LEAST_USED_DEGRADATION
            }
            Self::PriorityLeastUsedDegradation { .. } => {
                PolicyType::PRIORITY_LEAST_USED_DEGRADATION
            }
            Self::RandomizedPriorityLeastUsedDegradation { .. } => {
                PolicyType::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION
            }
            Self::WeightedRandomDpf { .. } => PolicyType::WEIGHTED_RANDOM_DPF,
            Self::LeastUsedDpf { .. } => PolicyType::LEAST_USED_DPF,
            Self::LeastUsedDegradationDpf { .. } => PolicyType::LEAST_USED_DEGRADATION_DPF,
        }
    }

    pub fn to_param(&self) -> PolicyParam {
        let values: &[u32] = match *self {
            Self::RoundRobin | Self::Random => &[],
            Self::WeightedRoundRobin { weight } | Self::WeightedRandom { weight } => &[weight],
            Self::Priority { priority } => &[priority],
            Self::LeastUsed { load } | Self::RandomizedLeastUsed { load } => &[load],
            Self::LeastUsedDegradation {
                load,
                load_degradation,
            }
            | Self::PriorityLeastUsed {
                load,
                load_degradation,
            }
            | Self::RandomizedPriorityLeastUsed {
                load,
                load_degradation,
            }
            | Self::RandomizedLeastUsedDegradation {
                load,
                load_degradation,
            }
            | Self::PriorityLeastUsedDegradation {
                load,
                load_degradation,
            }
            | Self::RandomizedPriorityLeastUsedDegradation {
                load,
                load_degradation,
            } => &[load, load_degradation],
            Self::WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => &[weight, weight_dpf, distance],
            Self::LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => &[load, load_dpf, distance],
            Self::LeastUsedDegradationDpf {
                load,
                load_degradation,
                load_dpf,
                distance,
            } => &[load, load_degradation, load_dpf, distance],
        };
        // At most four values by construction of the enum.
        PolicyParam::new(self.kind(), values).unwrap_or_else(PolicyParam::round_robin)
    }

    pub(crate) fn class(&self) -> Class {
        match self {
            Self::Random => Class::Uniform,
            Self::WeightedRandom { .. }
            | Self::RandomizedLeastUsed { .. }
            | Self::RandomizedPriorityLeastUsed { .. }
            | Self::RandomizedLeastUsedDegradation { .. }
            | Self::RandomizedPriorityLeastUsedDegradation { .. }
            | Self::WeightedRandomDpf { .. } => Class::Weighted,
            _ => Class::Ordered,
        }
    }

    /// How much a PE's degradation grows each time it is handed out, for the policies that
    /// keep one (RFC 5356 §4.2.2 LUD and RSPLIB's degradation variants).
    pub(crate) fn degradation_step(&self) -> Option<u32> {
        match *self {
            Self::LeastUsedDegradation {
                load_degradation, ..
            }
            | Self::RandomizedLeastUsedDegradation {
                load_degradation, ..
            }
            | Self::PriorityLeastUsedDegradation {
                load_degradation, ..
            }
            | Self::RandomizedPriorityLeastUsedDegradation {
                load_degradation, ..
            }
            | Self::LeastUsedDegradationDpf {
                load_degradation, ..
            } => Some(load_degradation),
            _ => None,
        }
    }

    /// Whether handing out a PE of this policy leaves its order key as it was, whatever
    /// its values: an ordered policy with no degradation to grow and no WRR pass to move
    /// (RR, PRIO, LU, PLU, LU-DPF). Such a PE only becomes the newest of its key, so a
    /// selection that hands out a ring's first PEs just moves the ring's head on
    /// ([`super::select::Ordered`]). Decided by the policy type, which all PEs of a
    /// pool share.
    pub(crate) fn fixed_order(&self) -> bool {
        self.class() == Class::Ordered
            && self.degradation_step().is_none()
            && !matches!(self, Self::WeightedRoundRobin { .. })
    }

    /// RSPLIB's `MaxIncrement` default: how many of the selected PEs have their selection
    /// state advanced per request. Pure random policies keep no state.
    pub(crate) fn default_increment(&self) -> usize {
        match self {
            Self::Random | Self::WeightedRandom { .. } | Self::WeightedRandomDpf { .. } => 0,
            _ => 1,
        }
    }

    /// Order key of an ordered policy, lower first. `None` for a PE that must not be
    /// selected (WRR weight 0). WRR's key is its stride-scheduling pass, kept by the
    /// selector.
    pub(crate) fn order_key(&self, degradation: u32, pass: u64) -> Option<u64> {
        let sat = |parts: &[u32]| {
            parts
                .iter()
                .map(|&p| u64::from(p))
                .sum::<u64>()
                .min(u64::from(MAX_LOAD))
        };
        Some(match *self {
            Self::RoundRobin => 0,
            Self::WeightedRoundRobin { weight } => {
                if weight == 0 {
                    return None;
                }
                pass
            }
            Self::Priority { priority } => u64::from(u32::MAX - priority),
            Self::LeastUsed { load } => u64::from(load),
            Self::LeastUsedDegradation { load, .. } => sat(&[load, degradation]),
            Self::PriorityLeastUsed {
                load,
                load_degradation,
            } => sat(&[load, load_degradation]),
            Self::PriorityLeastUsedDegradation {
                load,
                load_degradation,
            } => sat(&[load, load_degradation, degradation]),
            Self::LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => (u64::from(load) + dpf_penalty(load_dpf, distance)).min(u64::from(MAX_LOAD)),
            // RSPLIB's comparator for this policy uses only the distance term; we rank by
            // the whole sum, as the policy's name and draft describe.
            Self::LeastUsedDegradationDpf {
                load,
                load_dpf,
                distance,
                ..
            } => (u64::from(load) + u64::from(degradation) + dpf_penalty(load_dpf, distance))
                .min(u64::from(MAX_LOAD)),
            _ => return None,
        })
    }

    /// Selection weight of a random policy; 0 means "never selected".
    pub(crate) fn weight(&self, degradation: u32) -> u64 {
        // RSPLIB floors the randomized-least-used weights at 1 so that a fully loaded PE
        // stays selectable when nothing else is.
        let unload = |used: &[u32]| {
            let used: u64 = used.iter().map(|&u| u64::from(u)).sum();
            u64::from(MAX_LOAD).saturating_sub(used).max(1)
        };
        match *self {
            Self::Random => 1,
            Self::WeightedRandom { weight } => u64::from(weight),
            Self::RandomizedLeastUsed { load } => unload(&[load]),
            Self::RandomizedPriorityLeastUsed {
                load,
                load_degradation,
            } => unload(&[load, load_degradation]),
            Self::RandomizedLeastUsedDegradation { load, .. } => unload(&[load, degradation]),
            Self::RandomizedPriorityLeastUsedDegradation {
                load,
                load_degradation,
            } => unload(&[load, load_degradation, degradation]),
            Self::WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => {
                if weight == 0 {
                    return 0;
                }
                // weight' = weight − round(weight × distance × dpf / MAX); not below 1.
                let w = u128::from(weight);
                let scaled = w * u128::from(distance) * u128::from(weight_dpf);
                let max = u128::from(MAX_LOAD);
                let penalty = (scaled + max / 2) / max;
                w.saturating_sub(penalty).max(1) as u64
            }
            _ => 0,
        }
    }
}

/// Load penalty of the distance-penalty-factor policies: `distance × dpf` load units
/// (dpf / MAX_LOAD is the load fraction added per millisecond of distance).
fn dpf_penalty(dpf: u32, distance: u32) -> u64 {
    u64::from(dpf).saturating_mul(u64::from(distance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_policy_type_parses_and_round_trips() {
        for &kind in PolicyType::ALL {
            let n = (0..=4)
                .find(|&n| {
                    let p = PolicyParam::new(kind, &[7, 8, 9, 10][..n]).unwrap();
                    Policy::from_param(&p).is_ok()
                })
                .unwrap_or_else(|| panic!("{kind} never parses"));
            let p = PolicyParam::new(kind, &[7, 8, 9, 10][..n]).unwrap();
            let policy = Policy::from_param(&p).unwrap();
            assert_eq!(policy.kind(), kind);
            assert_eq!(policy.to_param(), p);
        }
    }

    #[test]
    fn wrong_value_count_and_unknown_type_are_rejected() {
        let p = PolicyParam::new(PolicyType::LEAST_USED, &[]).unwrap();
        assert_eq!(
            Policy::from_param(&p),
            Err(PolicyError::WrongValueCount {
                kind: PolicyType::LEAST_USED,
                expected: 1,
                got: 0
            })
        );
        let p = PolicyParam::new(PolicyType(0x4000_0005), &[1]).unwrap();
        assert_eq!(
            Policy::from_param(&p),
            Err(PolicyError::Unsupported(PolicyType(0x4000_0005)))
        );
    }

    #[test]
    fn rfc5356_keys_rank_as_specified() {
        let k = |p: Policy| p.order_key(0, 0).unwrap();
        assert!(k(Policy::Priority { priority: 9 }) < k(Policy::Priority { priority: 1 }));
        assert!(k(Policy::LeastUsed { load: 1 }) < k(Policy::LeastUsed { load: 2 }));
        let lud = Policy::LeastUsedDegradation {
            load: 10,
            load_degradation: 5,
        };
        assert_eq!(lud.order_key(15, 0), Some(25));
        let plu = Policy::PriorityLeastUsed {
            load: u32::MAX - 1,
            load_degradation: 9,
        };
        assert_eq!(
            plu.order_key(0, 0),
            Some(u64::from(u32::MAX)),
            "saturates like RSPLIB"
        );
        assert_eq!(
            Policy::WeightedRoundRobin { weight: 0 }.order_key(0, 3),
            None
        );
    }

    #[test]
    fn random_weights() {
        assert_eq!(
            Policy::RandomizedLeastUsed { load: u32::MAX }.weight(0),
            1,
            "floored at 1"
        );
        assert_eq!(
            Policy::RandomizedLeastUsed { load: 0 }.weight(0),
            u64::from(u32::MAX)
        );
        assert_eq!(Policy::WeightedRandom { weight: 0 }.weight(0), 0);
        let dpf = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: u32::MAX / 10,
            distance: 5,
        };
        assert_eq!(dpf.weight(0), 500);
        let dpf = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: u32::MAX,
            distance: 50,
        };
        assert_eq!(dpf.weight(0), 1, "negative becomes 1");
    }
}
