//! The header decoder and the frame checks on arbitrary bytes: never a panic, never an allocation beyond
//! what the input holds. The input is split into a header frame and bulk frame lengths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightbeam::wire;

fuzz_target!(|data: &[u8]| {
    let (lengths, frame) = data.split_at(data.len().min(8));
    if let Ok(header) = wire::decode_header(frame) {
        assert!(header.descriptors.len() <= frame.len() / wire::DESCRIPTOR_LEN);
        let frame_lens = lengths.iter().map(|&l| usize::from(l));
        let _ = wire::check_bulk_frames(&header.descriptors, frame_lens.collect::<Vec<_>>().into_iter());
        let _ = wire::decode_custom::<(u32, String, Vec<u8>)>(header.custom);
    }
});
