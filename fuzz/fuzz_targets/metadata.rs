//! The metadata decoding on arbitrary bytes, into a type like an application's: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightbeam::wire;

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Request {
    request_id: u32,
    operation: String,
    client_name: String,
    ranges: Vec<(u64, u64)>,
    tag: Option<u8>,
}

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode_custom::<Request>(data);
    let _ = wire::decode_custom::<Vec<String>>(data);
});
