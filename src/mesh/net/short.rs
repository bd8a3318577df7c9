//! The fast path's form of a small mesh message: its envelope in fixed words instead of the general
//! path's header frame, and its parts after it, all in one `SHORT` record of the same-node ring (see
//! `transport/same_node/record.rs`). Writing one is a few stores and one publication; reading one is a
//! copy out of the ring and the fixed words below, with no header to decode.
//!
//! ```text
//! token u64 | source u32 | channel u8 | failed u8 | operation u8 | has root u8 | tag or root u32 |
//! parts u32 | sequence u64 | count u64 | element size u32 | element name u32 | has data u8 |
//! has count u8 | reduction u8 | 5 zero bytes | mesh u64 | length u32 per part | the parts' bytes
//! ```
//!
//! Only application messages and collectives' messages take this form (the notices of failures take
//! the general path). The bytes come from another process of the node: [`decode`] checks every word and
//! every length, and refuses what does not add up, never panicking (`fuzz/fuzz_targets/short_message.rs`).

#![forbid(unsafe_code)]

use super::envelope::{Call, Channel, Collective, Data, Envelope, GroupId, Operation};
use crate::mesh::typed::Datatype;
use crate::mesh::types::Tag;
use crate::transport::same_node::SHORT_MAX;
use crate::transport::Payload;

/// The fixed words before the parts' lengths.
const FIXED: usize = 64;
/// The most parts a short message carries (a collective's message has two or three).
pub(crate) const MAX_PARTS: usize = 8;

const USER: u8 = 1;
const COLLECTIVE: u8 = 2;

/// A short message's envelope and part lengths, ready to go before the parts themselves.
pub(crate) struct Head {
    bytes: [u8; FIXED + 4 * MAX_PARTS],
    len: usize,
}

impl Head {
    /// The head of a message of `envelope` and `parts`, when it has a short form: a channel that takes
    /// one, at most [`MAX_PARTS`] parts, and everything within [`SHORT_MAX`] bytes.
    pub(crate) fn new(envelope: &Envelope, parts: &[&[u8]]) -> Option<Self> {
        let len = FIXED + 4 * parts.len();
        let total = parts.iter().try_fold(len, |sum, part| sum.checked_add(part.len()))?;
        if parts.len() > MAX_PARTS || total > SHORT_MAX {
            return None;
        }
        let (kind, operation, root, word, sequence, data, group) = match envelope.channel? {
            Channel::User(group, tag) => (USER, 0, 0, tag.0, 0, None, group),
            Channel::Collective(Collective { group, sequence, call }) => (
                COLLECTIVE,
                operation_code(call.operation),
                u8::from(call.root.is_some()),
                call.root.unwrap_or(0),
                sequence,
                call.data,
                group,
            ),
            _ => return None,
        };
        let mut bytes = [0; FIXED + 4 * MAX_PARTS];
        bytes[0..8].copy_from_slice(&envelope.token.to_le_bytes());
        bytes[8..12].copy_from_slice(&envelope.source.to_le_bytes());
        bytes[12..16].copy_from_slice(&[kind, u8::from(envelope.failed), operation, root]);
        bytes[16..20].copy_from_slice(&word.to_le_bytes());
        bytes[20..24].copy_from_slice(&(parts.len() as u32).to_le_bytes());
        bytes[24..32].copy_from_slice(&sequence.to_le_bytes());
        if let Some(Data { element, count, reduction }) = data {
            bytes[32..40].copy_from_slice(&count.unwrap_or(0).to_le_bytes());
            bytes[40..44].copy_from_slice(&element.size.to_le_bytes());
            bytes[44..48].copy_from_slice(&element.name.to_le_bytes());
            bytes[48..51].copy_from_slice(&[1, u8::from(count.is_some()), reduction]);
        }
        bytes[56..64].copy_from_slice(&group.0.to_le_bytes());
        for (i, part) in parts.iter().enumerate() {
            bytes[FIXED + 4 * i..FIXED + 4 * i + 4].copy_from_slice(&(part.len() as u32).to_le_bytes());
        }
        Some(Self { bytes, len })
    }

    /// The head's bytes, which go first.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The envelope and parts of the short message in `bytes`, or what is wrong with it.
pub(crate) fn decode(mut bytes: Vec<u8>) -> Result<(Envelope, Vec<Payload>), String> {
    if bytes.len() > SHORT_MAX {
        return Err(format!("{} bytes (at most {SHORT_MAX})", bytes.len()));
    }
    let fixed: &[u8; FIXED] =
        bytes.get(..FIXED).and_then(|f| f.try_into().ok()).ok_or_else(|| format!("{} bytes", bytes.len()))?;
    let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8 bytes"));
    let [kind, failed, operation, root] = [fixed[12], fixed[13], fixed[14], fixed[15]];
    let (word, count, sequence) = (u32_at(16), u32_at(20) as usize, u64_at(24));
    let channel = match (kind, root) {
        (USER, 0) if operation == 0 && sequence == 0 => Channel::User(GroupId(u64_at(56)), Tag(word)),
        (COLLECTIVE, 0 | 1) if root == 1 || word == 0 => {
            let operation = operation_of(operation).ok_or_else(|| format!("operation {operation}"))?;
            let root = (root == 1).then_some(word);
            let data = data_of(fixed)?;
            let call = Call { operation, root, data };
            Channel::Collective(Collective { group: GroupId(u64_at(56)), sequence, call })
        }
        _ => return Err(format!("channel {kind} with root flag {root}")),
    };
    if fixed[51..56] != [0; 5] || (kind == USER && fixed[32..51] != [0; 19]) {
        return Err("reserved bytes that are not 0".into());
    }
    let failed = match failed {
        0 | 1 => failed == 1,
        other => return Err(format!("failed flag {other}")),
    };
    let envelope = Envelope { token: u64_at(0), source: u32_at(8), channel: Some(channel), failed };
    if count > MAX_PARTS {
        return Err(format!("{count} parts (at most {MAX_PARTS})"));
    }
    let start = FIXED + 4 * count;
    let lengths = bytes.get(FIXED..start).ok_or_else(|| format!("{count} parts in {} bytes", bytes.len()))?;
    let lengths: Vec<usize> =
        lengths.chunks_exact(4).map(|l| u32::from_le_bytes(l.try_into().expect("4")) as usize).collect();
    if lengths.iter().map(|&len| len as u64).sum::<u64>() != (bytes.len() - start) as u64 {
        return Err(format!("parts of {lengths:?} bytes in {} bytes", bytes.len() - start));
    }
    let payloads = match lengths[..] {
        // The one part keeps the message's buffer: no second allocation for the common case.
        [_] => {
            bytes.drain(..start);
            vec![Payload::from_vec(bytes)]
        }
        _ => {
            let mut at = start;
            lengths
                .iter()
                .map(|&len| {
                    at += len;
                    Payload::from_vec(bytes[at - len..at].to_vec())
                })
                .collect()
        }
    };
    Ok((envelope, payloads))
}

/// What a collective's fixed words say of its data: nothing unless its flag says so, and then a count
/// only when its own flag says so; every word without a meaning is 0.
fn data_of(fixed: &[u8; FIXED]) -> Result<Option<Data>, String> {
    let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
    let count = u64::from_le_bytes(fixed[32..40].try_into().expect("8 bytes"));
    match fixed[48..51] {
        [0, 0, 0] if fixed[32..48] == [0; 16] => Ok(None),
        [1, has_count @ (0 | 1), reduction] if has_count == 1 || count == 0 => Ok(Some(Data {
            element: Datatype { size: u32_at(40), name: u32_at(44) },
            count: (has_count == 1).then_some(count),
            reduction,
        })),
        _ => Err(format!("data flags {:?} with count {count}", &fixed[48..51])),
    }
}

fn operation_code(operation: Operation) -> u8 {
    match operation {
        Operation::Broadcast => 0,
        Operation::Scatter => 1,
        Operation::Gather => 2,
        Operation::AllToAll => 3,
        Operation::SharedBroadcast => 4,
        Operation::Barrier => 5,
        Operation::AllReduce => 6,
        Operation::Reduce => 7,
        Operation::ReduceScatter => 8,
        Operation::AllGather => 9,
    }
}

fn operation_of(code: u8) -> Option<Operation> {
    Some(match code {
        0 => Operation::Broadcast,
        1 => Operation::Scatter,
        2 => Operation::Gather,
        3 => Operation::AllToAll,
        4 => Operation::SharedBroadcast,
        5 => Operation::Barrier,
        6 => Operation::AllReduce,
        7 => Operation::Reduce,
        8 => Operation::ReduceScatter,
        9 => Operation::AllGather,
        _ => return None,
    })
}

/// For the fuzz target: decodes `bytes` as a short message; a message it accepts re-encodes to the
/// same bytes.
#[doc(hidden)]
pub fn decode_for_fuzzing(bytes: &[u8]) -> bool {
    let Ok((envelope, payloads)) = decode(bytes.to_vec()) else { return false };
    let parts: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
    let head = Head::new(&envelope, &parts).expect("a decoded message has a short form");
    let again: Vec<u8> = std::iter::once(head.bytes()).chain(parts).flatten().copied().collect();
    assert_eq!(again, bytes, "a short message decodes to what encodes it");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(envelope: &Envelope, parts: &[&[u8]]) -> Vec<u8> {
        let head = Head::new(envelope, parts).expect("a short form");
        std::iter::once(head.bytes()).chain(parts.iter().copied()).flatten().copied().collect()
    }

    #[test]
    fn messages_round_trip_and_only_those_that_fit_take_the_short_form() {
        let user = Envelope {
            token: 0xfeed_f00d,
            source: 3,
            channel: Some(Channel::User(GroupId(3), Tag(7))),
            failed: false,
        };
        let call = Call::new(Operation::Gather, Some(2));
        let collective = Envelope {
            channel: Some(Channel::Collective(Collective {
                group: GroupId::WORLD,
                sequence: u64::MAX - 1,
                call,
            })),
            failed: true,
            ..user
        };
        let all_to_all = Envelope {
            channel: Some(Channel::Collective(Collective {
                group: GroupId(5),
                sequence: 9,
                call: Call::new(Operation::AllToAll, None),
            })),
            ..user
        };
        let data = Data { element: Datatype::of::<f64>(), count: Some(3), reduction: 1 };
        let typed = Envelope {
            channel: Some(Channel::Collective(Collective {
                group: GroupId(5),
                sequence: 4,
                call: Call { operation: Operation::AllReduce, root: None, data: Some(data) },
            })),
            ..user
        };
        let varcount = Data { count: None, reduction: 0, ..data };
        let gather = Envelope {
            channel: Some(Channel::Collective(Collective {
                group: GroupId(5),
                sequence: 5,
                call: Call { operation: Operation::AllGather, root: None, data: Some(varcount) },
            })),
            ..user
        };
        for (envelope, parts) in [
            (typed, vec![&[0; 24][..]]),
            (gather, vec![&[0; 8][..]]),
            (user, vec![&b"halo"[..]]),
            (user, vec![&[][..]]),
            (collective, vec![&b"head"[..], &[1, 2, 3][..], &[][..]]),
            (all_to_all, vec![]),
        ] {
            let bytes = encode(&envelope, &parts);
            assert!(decode_for_fuzzing(&bytes));
            let (decoded, payloads) = decode(bytes).unwrap();
            assert_eq!(decoded, envelope);
            assert_eq!(payloads.iter().map(|p| &p[..]).collect::<Vec<_>>(), parts);
        }
        let big = vec![0; SHORT_MAX];
        assert!(Head::new(&user, &[&big]).is_none(), "too long");
        assert!(Head::new(&user, &[&[][..]; MAX_PARTS + 1]).is_none(), "too many parts");
        let notice = Envelope { channel: Some(Channel::PeerLost(1)), ..user };
        assert!(Head::new(&notice, &[]).is_none(), "notices take the general path");
    }

    #[test]
    fn the_fuzz_seeds_are_valid_messages() {
        // The seeds live in the repository, not in the published crate.
        let seeds = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/short_message");
        let Ok(seeds) = std::fs::read_dir(seeds) else { return };
        let mut count = 0;
        for seed in seeds {
            let bytes = std::fs::read(seed.unwrap().path()).unwrap();
            assert!(decode_for_fuzzing(&bytes), "{bytes:?}");
            count += 1;
        }
        assert!(count >= 4);
    }

    #[test]
    fn garbage_is_refused_with_a_reason_never_a_panic() {
        let user = Envelope {
            token: 1,
            source: 0,
            channel: Some(Channel::User(GroupId::WORLD, Tag(1))),
            failed: false,
        };
        let good = encode(&user, &[b"abcd", b"ef"]);
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        let mut set = |at: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[at] = value;
            cases.push(bytes);
        };
        set(12, 9); // channel kind
        set(13, 2); // failed flag
        set(14, 1); // an operation on an application message
        set(15, 1); // a root on an application message
        set(20, 9); // part count past the most
        set(20, 3); // a part count the lengths do not fill
        set(FIXED, 200); // a part longer than the message
        set(32, 1); // a count on an application message
        set(48, 1); // data on an application message
        set(53, 1); // a reserved byte
        for bytes in cases {
            assert!(decode(bytes.clone()).is_err(), "{bytes:?}");
            assert!(!decode_for_fuzzing(&bytes));
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode(long).is_err(), "a byte past the parts");
    }
}
