//! Shared memory between two real processes: segments, the allocator, descriptor-only bulks, and faults.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use lbm_tests::verify::{checksum, pattern};
use lightbeam::shm::{Segment, SharedBytes, ShmError, ShmPtr};
use lightbeam::wire;
use lightbeam::{
    BulkFlags, Client, Endpoint, Error, LbmMeta, Options, Protocol, SharedMemoryAccess, ZeroMqClient,
};
use util::*;

const PEER: &str = SHM_PEER;

/// A segment name unique to this test process and `what`.
fn name(what: &str) -> String {
    format!("test-{what}-{}", std::process::id())
}

/// Runs the peer to completion (bounded) and asserts it printed `ok`.
#[track_caller]
fn peer_ok(args: &[&str]) {
    let mut child =
        Command::new(PEER).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + WAIT * 3;
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "peer {args:?} hung");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && out.contains("ok"), "peer {args:?} failed: {out}{err}");
}

/// Held by the tests that take megabytes of shared memory, so that the test that measures the node's
/// shared memory does not count theirs (a segment's memory is reserved whole when it is created).
static LARGE_SHARED_MEMORY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hold_large_shared_memory() -> std::sync::MutexGuard<'static, ()> {
    LARGE_SHARED_MEMORY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[track_caller]
fn assert_no_segment_file(name: &str) {
    let leftovers: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!leftovers.iter().any(|f| f.contains(name)), "stale segment files: {leftovers:?}");
}

#[test]
fn another_process_reads_what_this_one_wrote() {
    let _large = hold_large_shared_memory();
    let segment_name = name("share");
    {
        let segment = Segment::create(&segment_name, 8 << 20).unwrap();
        let data = pattern(3 << 20, 1);
        let region = segment.allocate(data.len()).unwrap();
        region.write(0, &data).unwrap();
        let at = region.shm_ptr().offset.to_string();
        peer_ok(&["read", &segment_name, &at, &data.len().to_string(), &checksum(&data).to_string()]);
    }
    assert_no_segment_file(&segment_name);
}

#[test]
fn a_descriptor_only_bulk_crosses_the_socket_as_a_pointer() {
    let _large = hold_large_shared_memory();
    let segment_name = name("expose");
    {
        let segment = Segment::create(&segment_name, 80 << 20).unwrap();
        let data = pattern(64 << 20, 2);
        let region = segment.allocate(data.len()).unwrap();
        region.write(0, &data).unwrap();
        let endpoint = fresh_endpoint(Protocol::Ipc);
        let uri = endpoint.to_string();
        let sum = checksum(&data).to_string();
        let receiver = std::thread::spawn(move || peer_ok(&["receive", &uri, &sum]));
        let client = ZeroMqClient::connect(&endpoint, &Options::default()).unwrap();
        let mut meta = LbmMeta::new("by value".to_string());
        meta.bulks.push(client.expose_shm(region.clone(), BulkFlags::EXPOSE));
        meta.bulks.push(client.expose(b"by value", BulkFlags::NONE));
        assert_eq!(client.send(&meta).into_result().unwrap(), data.len() + 8);
        receiver.join().unwrap();
        segment.free(&region.shm_ptr()).unwrap();
    }
    assert_no_segment_file(&segment_name);
}

#[test]
fn a_shared_region_can_be_sent_by_value_and_received_into_shared_memory() {
    let segment = Segment::create(&name("by-value"), 1 << 20).unwrap();
    let source = segment.allocate(1000).unwrap();
    source.write(0, &pattern(1000, 3)).unwrap();
    let target = segment.allocate(1000).unwrap();
    let (server, client) = pair(Protocol::Inproc);
    let pointer = source.shm_ptr();
    let meta = LbmMeta::new(()).with_bulk(client.expose_shm_ptr(&pointer, 1000, BulkFlags::NONE).unwrap());
    client.send(&meta).into_result().unwrap();
    let mut received = recv_meta::<()>(&server).unwrap();
    assert!(received.bulks[0].location().is_none(), "sent by value, not as a pointer");
    received.bulks[0] = lightbeam::Server::expose_shm(&server, target.clone(), BulkFlags::NONE);
    lightbeam::Server::recv_bulks(&server, &mut received).into_result().unwrap();
    assert_eq!(target.to_vec(), source.to_vec());
}

/// A header frame with one descriptor-only bulk of `size` bytes at `pointer`, as a hostile peer would
/// write it (the wire layout of `lightbeam::wire`), and custom metadata `7u32`.
fn exposed_header(pointer: &ShmPtr, size: u64) -> Vec<u8> {
    let mut custom = Vec::new();
    wire::encode_custom(&7u32, &mut custom).unwrap();
    let mut header = wire::MAGIC.to_vec();
    header.extend_from_slice(&[wire::VERSION, 0, 0, 0]);
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&(custom.len() as u32).to_le_bytes());
    header.extend_from_slice(&size.to_le_bytes());
    header.extend_from_slice(&BulkFlags::EXPOSE.0.to_le_bytes());
    header.extend_from_slice(&pointer.offset.to_le_bytes());
    header.push(pointer.segment.len() as u8);
    header.extend_from_slice(pointer.segment.as_bytes());
    header.extend_from_slice(&custom);
    header
}

#[test]
fn hostile_pointers_from_a_peer_are_refused_and_the_next_message_arrives() {
    let segment = Segment::create(&name("hostile"), 64 << 10).unwrap();
    // The server allows the test's own segments, so the bounds checks behind the policy are tried too.
    let access = SharedMemoryAccess::segments("test-").over_tcp();
    let (server, _) = pair_with(Protocol::Tcp, &Options::default().with_shared_memory(access));
    let raw = raw_push(&server);
    let cases = [
        (ShmPtr { segment: "no-such-segment".into(), offset: 128 }, 16),
        (ShmPtr { segment: segment.name().into(), offset: 0 }, 16),
        (ShmPtr { segment: segment.name().into(), offset: 60_000 }, 1 << 20),
        (ShmPtr { segment: "../../etc/passwd".into(), offset: 128 }, 16),
    ];
    for (pointer, size) in cases {
        raw.send(exposed_header(&pointer, size), 0).unwrap();
        let error = recv_all::<u32>(&server).expect_err("a hostile pointer was read");
        assert!(matches!(error, Error::SharedMemoryRefused { .. }), "{pointer:?}: {error}");
        let address = lightbeam::Server::address(&server);
        let good = ZeroMqClient::connect(&Endpoint::parse(address).unwrap(), &Options::default()).unwrap();
        send_all(&good, 1u32, &[b"next"]);
        assert_eq!(recv_all::<u32>(&server).unwrap(), (1, vec![b"next".to_vec()]));
    }
}

#[test]
fn an_unlinked_segment_keeps_working_in_the_process_that_maps_it() {
    let segment_name = name("unlinked");
    let segment = Segment::create(&segment_name, 1 << 20).unwrap();
    let mut child = Command::new(PEER)
        .args(["hold", &segment_name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "mapped");
    Segment::unlink(&segment_name).unwrap();
    drop(segment);
    assert!(matches!(Segment::open(&segment_name), Err(Error::Shm(ShmError::UnknownSegment(_)))));
    writeln!(child.stdin.take().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ok");
    assert!(child.wait().unwrap().success());
    assert_no_segment_file(&segment_name);
}

#[test]
fn a_process_that_dies_holding_allocations_leaves_the_segment_usable() {
    let segment_name = name("dies");
    let segment = Segment::create(&segment_name, 1 << 20).unwrap();
    let status =
        Command::new(PEER).args(["die-holding", &segment_name]).stderr(Stdio::null()).status().unwrap();
    assert!(!status.success(), "the peer was meant to abort");
    let (used, _) = segment.usage().unwrap();
    assert!(used >= 3 * 1000, "the dead process's allocations are still accounted: {used}");
    let region = segment.allocate(500_000).unwrap();
    region.write(0, b"fine").unwrap();
    segment.free(&region.shm_ptr()).unwrap();
    drop((region, segment));
    assert_no_segment_file(&segment_name);
}

/// The node's shared memory in use (`Shmem` of /proc/meminfo), in bytes.
fn node_shared_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = meminfo.lines().find(|l| l.starts_with("Shmem:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() << 10
}

/// One sealed copy, read in place by another process, outlives the view that made it and is freed by
/// the kernel when its last holder is killed. (The node's `Shmem` is compared with margins of a quarter
/// of the 256 MiB copy, for other work on the machine.)
#[test]
fn shared_bytes_are_one_copy_read_by_another_process_and_freed_when_the_last_holder_is_killed() {
    let _large = hold_large_shared_memory();
    const SIZE: usize = 256 << 20;
    let margin = SIZE as u64 / 4;
    let before = node_shared_memory();
    let data = pattern(SIZE, 77);
    let view = SharedBytes::copy_from(&data).unwrap();
    let held = node_shared_memory();
    assert!(held >= before + SIZE as u64 - margin, "the copy is in shared memory: {before} -> {held}");
    let descriptor = view.descriptor().unwrap();
    let (pid, fd) = (descriptor.pid.to_string(), descriptor.fd.to_string());
    let (inode, len, sum) = (descriptor.inode.to_string(), descriptor.len.to_string(), checksum(&data));
    let mut holder =
        start_shm_peer_until(&["hold-shared", &pid, &fd, &inode, &len, &sum.to_string()], "opened");
    drop((view, data));
    let still = node_shared_memory();
    assert!(still + margin >= held, "the other process still holds the one copy: {held} -> {still}");
    assert!(still < held + margin, "opening it made no second copy: {held} -> {still}");
    holder.kill().unwrap();
    assert_eq!(holder.wait().unwrap().signal(), Some(9), "killed by SIGKILL");
    let deadline = std::time::Instant::now() + WAIT;
    while node_shared_memory() + SIZE as u64 > still + margin && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = node_shared_memory();
    assert!(after + SIZE as u64 <= still + margin, "freed with its last holder: {still} -> {after}");
}

#[test]
fn a_segment_left_by_a_killed_creator_is_reported_stale_and_reclaimed() {
    let segment_name = name("stale");
    let creator = leave_stale_segment(&segment_name);
    let error = Segment::create(&segment_name, 1 << 20).expect_err("the name is taken");
    match &error {
        Error::Shm(ShmError::Stale { name, creator_pid, .. }) => {
            assert_eq!((name.as_str(), *creator_pid), (segment_name.as_str(), creator));
        }
        other => panic!("expected a stale segment, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("stale") && message.contains("reclaim_stale"), "{message}");
    assert!(Segment::reclaim_stale(&segment_name).unwrap(), "a stale segment is removed");
    assert!(!Segment::reclaim_stale(&segment_name).unwrap(), "and only once");
    assert_no_segment_file(&segment_name);

    leave_stale_segment(&segment_name);
    let segment = Segment::create_reclaiming(&segment_name, 1 << 20).unwrap();
    assert_eq!(segment.usage().unwrap().0, 0, "a fresh segment, not the dead creator's");
    assert!(!Segment::reclaim_stale(&segment_name).unwrap(), "a live creator's segment is never reclaimed");
    assert!(matches!(Segment::create(&segment_name, 1 << 20), Err(Error::Shm(ShmError::Exists(_)))));
    drop(segment);
    assert_no_segment_file(&segment_name);
}
