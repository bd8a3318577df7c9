//! The shared-memory access rule: a server resolves a peer's descriptor-only bulk only when its owner
//! allowed it (off by default), never over tcp unless allowed too, only in allowed segments, and only
//! inside a live allocation; and no size such a bulk announces reaches the application above the limit.

mod util;

use lightbeam::shm::{Segment, ShmPtr};
use lightbeam::wire;
use lightbeam::{Bulk, BulkFlags, Error, Options, Protocol, Server, SharedMemoryAccess, ZeroMqServer};
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

/// What a peer can do to a segment it may write (its own, allowed), to the server reading it.
mod a_peer_tampering_with_its_own_segment {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};

    fn file_of(segment: &Segment) -> std::fs::File {
        let path = format!("/dev/shm/lightbeam-{}", segment.name());
        std::fs::OpenOptions::new().write(true).open(path).unwrap()
    }

    /// Receives `header` within `limit` on another thread; the receive's own timeout is 200 ms.
    #[track_caller]
    fn refused_within(server: ZeroMqServer, header: Vec<u8>, limit: Duration) -> Error {
        raw_push(&server).send(header, 0).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // the message is here before the clock starts
        let (done, result) = std::sync::mpsc::channel();
        let started = Instant::now();
        std::thread::spawn(move || {
            let _ = done.send(server.recv_message(Duration::from_millis(200)));
        });
        let received = result.recv_timeout(limit).expect("the receive did not return");
        assert!(started.elapsed() < limit, "the receive took {:?}", started.elapsed());
        received.expect_err("a tampered segment was read")
    }

    #[test]
    fn a_symbolic_link_under_an_allowed_name_is_not_followed() {
        let (_secret_segment, secret) = segment_with_secret("secret", "link");
        let alias = format!("job-link-{}", std::process::id());
        let file = |name: &str| format!("/dev/shm/lightbeam-{name}");
        std::os::unix::fs::symlink(file(&secret.segment), file(&alias)).unwrap();
        let server = server(Protocol::Ipc, SharedMemoryAccess::segments("job-"));
        let forged = ShmPtr { segment: alias.clone(), ..secret };
        let result = receive_forged(&server, &descriptor_only(&forged, SECRET.len()));
        std::fs::remove_file(file(&alias)).unwrap();
        assert!(matches!(result, Err(Error::SharedMemoryRefused { .. })), "{result:?}");
    }

    #[test]
    fn a_forged_block_size_is_refused_at_once() {
        let (segment, own) = segment_with_secret("job", "forged");
        // The first block header's size, set so that the walk would wrap around to where it started.
        file_of(&segment).write_at(&(u64::MAX - 63).to_ne_bytes(), 128 + 8).unwrap();
        let server = server(Protocol::Ipc, SharedMemoryAccess::segments("job-"));
        let error = refused_within(server, descriptor_only(&own, SECRET.len()), Duration::from_secs(2));
        assert!(error.to_string().contains("damaged"), "{error}");
    }

    #[test]
    fn a_held_allocator_lock_does_not_stall_the_receive() {
        let (segment, own) = segment_with_secret("job", "locked");
        file_of(&segment).write_at(&1u32.to_ne_bytes(), 16).unwrap(); // held by pid 1, alive forever
        let server = server(Protocol::Ipc, SharedMemoryAccess::segments("job-"));
        raw_push(&server).send(descriptor_only(&own, SECRET.len()), 0).unwrap();
        let started = Instant::now();
        let (_, bulks) = recv_all::<u32>(&server).unwrap();
        assert_eq!(bulks, [SECRET.to_vec()]);
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?} for the lock", started.elapsed());
    }

    #[test]
    fn a_segment_truncated_after_the_message_arrived_is_an_error_not_a_crash() {
        let (segment, own) = segment_with_secret("job", "truncated");
        let server = server(Protocol::Ipc, SharedMemoryAccess::segments("job-"));
        raw_push(&server).send(descriptor_only(&own, SECRET.len()), 0).unwrap();
        let message = server.recv_message(WAIT).unwrap();
        file_of(&segment).set_len(0).unwrap(); // mapped, this would raise SIGBUS in the reader
        let mut meta = message.metadata::<u32>().unwrap();
        let mut buffer = vec![0u8; SECRET.len()];
        meta.bulks = vec![Bulk::destination(&mut buffer, BulkFlags::NONE)];
        let error = message.recv_bulks(&mut meta).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
    }
}
