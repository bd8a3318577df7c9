//! Helpers shared by the single-process tests: server/client pairs, raw sockets, checksums.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lightbeam::{Client, Endpoint, LbmMeta, Options, Protocol, Server, ZeroMqClient, ZeroMqServer};
use serde::{de::DeserializeOwned, Serialize};

/// Every wait in a test ends within this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A fresh endpoint for `protocol`: an ephemeral tcp port, a unique ipc path or inproc name.
pub fn fresh_endpoint(protocol: Protocol) -> Endpoint {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = match protocol {
        Protocol::Tcp => "127.0.0.1".to_owned(),
        Protocol::Ipc => {
            std::env::temp_dir().join(format!("lbm-test-{}-{n}", std::process::id())).display().to_string()
        }
        Protocol::Inproc => format!("lbm-test-{n}"),
        other => panic!("no test endpoint for {other}"),
    };
    Endpoint::with_protocol(&name, protocol, 0).unwrap()
}

/// A server on a fresh endpoint and a client connected to it.
#[track_caller]
pub fn pair(protocol: Protocol) -> (ZeroMqServer, ZeroMqClient) {
    pair_with(protocol, &Options::default())
}

/// As [`pair`], with options.
#[track_caller]
pub fn pair_with(protocol: Protocol, options: &Options) -> (ZeroMqServer, ZeroMqClient) {
    let server = ZeroMqServer::bind(&fresh_endpoint(protocol), options).unwrap();
    let client = ZeroMqClient::connect(&Endpoint::parse(server.address()).unwrap(), options).unwrap();
    (server, client)
}

/// Waits for the next message's metadata and returns it, or the error the server reported.
pub fn recv_meta<'a, M: Serialize + DeserializeOwned + Default>(
    server: &dyn Server,
) -> lightbeam::Result<LbmMeta<'a, M>> {
    let mut meta = LbmMeta::default();
    let event = server.recv_metadata_timeout(&mut meta, WAIT);
    assert!(event.is_done(), "no message within {WAIT:?}");
    event.into_result().map(|_| meta)
}

/// Receives a whole message into freshly allocated buffers, one per bulk.
pub fn recv_all<M: Serialize + DeserializeOwned + Default>(
    server: &dyn Server,
) -> lightbeam::Result<(M, Vec<Vec<u8>>)> {
    let mut meta = recv_meta::<M>(server)?;
    let mut buffers: Vec<Vec<u8>> = meta.bulks.iter().map(|b| vec![0; b.size()]).collect();
    meta.bulks = buffers.iter_mut().map(|b| server.expose(b, Default::default())).collect();
    server.recv_bulks(&mut meta).into_result()?;
    let custom = meta.custom;
    Ok((custom, buffers))
}

/// Sends `payloads` as one message with custom fields `custom`.
#[track_caller]
pub fn send_all<M: Serialize + DeserializeOwned>(
    client: &dyn Client,
    custom: M,
    payloads: &[&[u8]],
) -> usize {
    let mut meta = LbmMeta::new(custom);
    meta.bulks = payloads.iter().map(|p| client.expose(p, Default::default())).collect();
    client.send(&meta).into_result().unwrap()
}

/// A raw ZeroMQ PUSH socket connected to `server`, to send what a hostile or buggy peer would.
pub fn raw_push(server: &dyn Server) -> zmq::Socket {
    let socket = zmq::Context::new().socket(zmq::PUSH).unwrap();
    socket.set_linger(1000).unwrap();
    socket.set_sndtimeo(10_000).unwrap();
    socket.set_immediate(true).unwrap();
    socket.connect(server.address()).unwrap();
    socket
}

/// Waits for `child` to end, at most `limit`; kills it and fails past that.
#[track_caller]
pub fn wait_ended(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("the peer did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The second process of the shared-memory tests (`tests/peers/shm_peer.rs`).
pub const SHM_PEER: &str = env!("CARGO_BIN_EXE_lbm-test-shm-peer");

/// Starts [`SHM_PEER`] with `args` and waits (bounded) for its first line, which must be `expected`.
#[track_caller]
pub fn start_shm_peer_until(args: &[&str], expected: &str) -> std::process::Child {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child =
        Command::new(SHM_PEER).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (sender, first_line) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(stdout.lines().next()));
    let line = first_line.recv_timeout(WAIT).ok().flatten().and_then(Result::ok);
    if line.as_deref() != Some(expected) {
        child.kill().ok();
        panic!("the peer {args:?} failed or hung: {line:?}");
    }
    child
}

/// Starts a peer that creates segment `name`, and kills it with SIGKILL once it has: the segment stays,
/// stale. Returns the peer's pid.
#[track_caller]
pub fn leave_stale_segment(name: &str) -> u32 {
    use std::os::unix::process::ExitStatusExt;
    let mut child = start_shm_peer_until(&["create-and-wait", name], "created");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9), "killed by SIGKILL");
    child.id()
}

pub use lbm_tests::verify::{checksum, pattern};
