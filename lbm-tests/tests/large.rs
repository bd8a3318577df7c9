//! Sizes past 2 GiB (where MPI's int counts break): a single 2.5 GiB bulk between two processes, and a
//! 2.5 GiB broadcast at 2 ranks. About 10 GiB of memory each, so they run one after the other.

mod util;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lbm_tests::mpirun;
use lightbeam::{Client, LbmMeta, Options, Protocol, ZeroMqClient};
use util::*;

const SIZE: usize = 5 << 29; // 2.5 GiB
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_single_2_5_gib_bulk_between_two_processes() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let data = pattern(SIZE, 25);
    let sum = checksum(&data).to_string();
    let endpoint = fresh_endpoint(Protocol::Ipc);
    let uri = endpoint.to_string();
    let mut peer = Command::new(env!("CARGO_BIN_EXE_lbm-test-shm-peer"))
        .args(["receive-value", &uri, &SIZE.to_string(), &sum])
        .spawn()
        .unwrap();
    let client = ZeroMqClient::connect(&endpoint, &Options::default()).unwrap();
    let started = Instant::now();
    let meta = LbmMeta::new(()).with_bulk(client.expose(&data, Default::default()));
    assert_eq!(client.send(&meta).into_result().unwrap(), SIZE);
    // The client stays alive until the receiver has it all: a dropped client delivers what is still
    // queued only for its LINGER time (5 s by default), less than 2.5 GiB may need.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = peer.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the receiver hung");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the receiver failed");
    drop((meta, client));
    println!("2.5 GiB to another process and checked there in {:.2} s", started.elapsed().as_secs_f64());
}

#[test]
#[cfg(feature = "mpi")]
fn a_2_5_gib_broadcast_at_two_ranks() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let run = mpirun::expect_ok(2, env!("CARGO_BIN_EXE_lbm-test-collectives"), "large", &[]);
    print!("{}", run.stdout);
}
