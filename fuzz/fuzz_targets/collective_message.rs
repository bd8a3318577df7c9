//! The collectives' message decoder on arbitrary parts: never a panic, and a message it accepts holds
//! what its kind says. The input's first byte is the number of parts (up to 7); each part but the last
//! takes a length byte and that many bytes, and the last takes the rest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightbeam::mesh::collectives::decode_for_fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&count, mut rest)) = data.split_first() else { return };
    let count = usize::from(count % 8);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(count);
    for i in 0..count {
        let part = if i + 1 == count {
            std::mem::take(&mut rest)
        } else {
            let Some((&len, tail)) = rest.split_first() else { break };
            let (part, tail) = tail.split_at(tail.len().min(usize::from(len)));
            rest = tail;
            part
        };
        parts.push(part);
    }
    let _ = decode_for_fuzzing(&parts);
});
