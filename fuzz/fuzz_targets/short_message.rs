//! The fast path's decoder of a small mesh message on arbitrary bytes: never a panic, and a message it
//! accepts encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightbeam::mesh::decode_short_for_fuzzing;

fuzz_target!(|data: &[u8]| {
    let _ = decode_short_for_fuzzing(data);
});
