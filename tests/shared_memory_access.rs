//! The shared-memory access rule: a server resolves a peer's descriptor-only bulk only when its owner
//! allowed it (off by default), never over tcp unless allowed too, only in allowed segments, and only
//! inside a live allocation; and no size such a bulk announces reaches the application above the limit.

mod util;

use lightbeam::shm::{Segment, ShmPtr};
use lightbeam::wire;
use lightbeam::{Bulk, BulkFlags, Error, Options, Protocol, SharedMemoryAccess, ZeroMqServer};
use util::*;

const SECRET: &[u8] = b"TOP-SECRET-DATA!";

/// A segment named `prefix-test-<pid>` holding SECRET in one allocation; returns it and the secret's pointer.
fn segment_with_secret(prefix: &str, test: &str) -> (Segment, ShmPtr) {
    let segment = Segment::create(&format!("{prefix}-{test}-{}", std::process::id()), 1 << 20).unwrap();
    let region = segment.allocate(SECRET.len()).unwrap();
    region.write(0, SECRET).unwrap();
    (segment, region.shm_ptr())
}

/// A message whose one bulk is descriptor-only: `size` bytes at `pointer`, as any peer can forge it.
fn descriptor_only(pointer: &ShmPtr, size: usize) -> Vec<u8> {
    let bulk = Bulk::located(size, BulkFlags::EXPOSE, pointer.clone());
    wire::encode_header(&[bulk], |out| wire::encode_custom(&7u32, out)).unwrap()
}

/// Sends `header` from a raw peer and returns what the README's receive pattern gets from it.
fn receive_forged(server: &ZeroMqServer, header: &[u8]) -> lightbeam::Result<(u32, Vec<Vec<u8>>)> {
    raw_push(server).send(header, 0).unwrap();
    recv_all::<u32>(server)
}

#[track_caller]
fn refused(server: &ZeroMqServer, header: &[u8], because: &str) {
    let error = receive_forged(server, header).expect_err("a peer's pointer was resolved");
    assert!(matches!(error, Error::SharedMemoryRefused { .. }), "{error}");
    assert!(error.to_string().contains(because), "{error}");
}

fn server(protocol: Protocol, access: SharedMemoryAccess) -> ZeroMqServer {
    ZeroMqServer::bind(&fresh_endpoint(protocol), &Options::default().with_shared_memory(access)).unwrap()
}

#[test]
fn by_default_no_peer_can_make_a_server_read_shared_memory() {
    let (_segment, secret) = segment_with_secret("secret", "default");
    for protocol in [Protocol::Tcp, Protocol::Ipc] {
        let server = server(protocol, SharedMemoryAccess::none());
        refused(&server, &descriptor_only(&secret, SECRET.len()), "reads no shared memory");
    }
}

#[test]
fn only_allowed_segments_and_never_over_tcp_unless_allowed() {
    let (_secret_segment, secret) = segment_with_secret("secret", "allowed");
    let (_job_segment, own) = segment_with_secret("job", "allowed");
    let ipc = server(Protocol::Ipc, SharedMemoryAccess::segments("job-"));
    refused(&ipc, &descriptor_only(&secret, SECRET.len()), "does not allow this segment");
    assert_eq!(
        receive_forged(&ipc, &descriptor_only(&own, SECRET.len())).unwrap(),
        (7, vec![SECRET.to_vec()])
    );

    let tcp = server(Protocol::Tcp, SharedMemoryAccess::segments("job-"));
    refused(&tcp, &descriptor_only(&own, SECRET.len()), "not accepted over tcp");
    let tcp = server(Protocol::Tcp, SharedMemoryAccess::segments("job-").over_tcp());
    assert_eq!(
        receive_forged(&tcp, &descriptor_only(&own, SECRET.len())).unwrap(),
        (7, vec![SECRET.to_vec()])
    );
}

#[test]
fn an_announced_size_past_the_limit_never_reaches_the_application() {
    let (_segment, own) = segment_with_secret("huge", "limit");
    let server = server(Protocol::Ipc, SharedMemoryAccess::segments("huge-"));
    // The README's pattern allocates `vec![0; size]` for each announced bulk: 2^62 bytes would abort.
    let error = receive_forged(&server, &descriptor_only(&own, 1 << 62)).unwrap_err();
    assert!(matches!(error, Error::LimitExceeded { what: "message size", .. }), "{error}");
    let error = receive_forged(&server, &descriptor_only(&own, 2 << 20)).unwrap_err();
    assert!(matches!(error, Error::SharedMemoryRefused { .. }), "past the segment: {error}");
}

#[test]
fn only_inside_a_live_allocation_never_the_allocators_own_state() {
    let (segment, own) = segment_with_secret("alloc", "inside");
    let neighbour = segment.allocate(64).unwrap();
    let freed = segment.allocate(64).unwrap();
    segment.free(&freed.shm_ptr()).unwrap();
    let server = server(Protocol::Ipc, SharedMemoryAccess::segments("alloc-"));
    let at = |offset: u64| ShmPtr { offset, ..own.clone() };
    let cases = [
        ("the segment header", at(0), 16),
        ("the block header before the secret", at(own.offset - 64), 64),
        ("the secret and the block after it", own.clone(), 200),
        ("a freed block", freed.shm_ptr(), 16),
    ];
    for (what, pointer, size) in cases {
        let error = receive_forged(&server, &descriptor_only(&pointer, size)).unwrap_err();
        assert!(matches!(error, Error::SharedMemoryRefused { .. }), "{what}: {error}");
    }
    let inside = ShmPtr { offset: neighbour.shm_ptr().offset + 8, ..neighbour.shm_ptr() };
    assert_eq!(receive_forged(&server, &descriptor_only(&inside, 56)).unwrap().1, [vec![0; 56]]);
}
