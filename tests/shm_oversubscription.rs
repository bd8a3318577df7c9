//! A measurement (ignored by default): 8-byte ping-pong over the shared-memory transport with 2 processes,
//! 2 pairs (4 processes) and 3 clients + 1 server, on this 2-core machine. Prints the median and p99
//! one-way latency per client and the CPU seconds of all processes against the wall time. A measurement,
//! not a check: run with `cargo test --release --test shm_oversubscription -- --ignored --nocapture`.
//! Measured on the 2-core machine: 1 pair 1.4 us one-way median; 2 pairs 16 us before spins ended on
//! preemption (`src/transport/same_node/wait.rs`), 9.3 us after.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lightbeam::{Client, LbmMeta, Options, Server, SharedMemoryClient, SharedMemoryServer, ShmOptions};

const ROUNDS: usize = 100_000;
const WAIT: Duration = Duration::from_secs(30);

fn cpu_seconds() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 1..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn connect(address: &str) -> SharedMemoryClient {
    SharedMemoryClient::connect(address, "shm", 0, &Options::default(), &ShmOptions::default()).unwrap()
}

fn send(client: &dyn Client, tag: &str, data: &[u8]) {
    let meta = LbmMeta::new(tag.to_string()).with_bulk(client.expose(data, Default::default()));
    client.send(&meta).into_result().unwrap();
}

fn serve(clients: usize) {
    let server =
        SharedMemoryServer::bind("pingpong", "shm", 0, &Options::default(), &ShmOptions::default()).unwrap();
    println!("PINGPONG ADDR {}", server.address());
    let mut peers: HashMap<String, SharedMemoryClient> = HashMap::new();
    let mut byes = 0;
    while byes < clients {
        let message = server.recv_message(WAIT).unwrap();
        let from = message.metadata::<String>().unwrap().custom;
        if let Some(from) = from.strip_prefix("bye ") {
            peers.remove(from);
            byes += 1;
            continue;
        }
        let peer = peers.entry(from.clone()).or_insert_with(|| connect(&from));
        send(peer, "", &[0u8; 8]);
    }
    println!("PINGPONG CPU server {:.2}", cpu_seconds());
}

fn ping(address: &str) {
    let me = SharedMemoryServer::bind("pingpong-back", "shm", 0, &Options::default(), &ShmOptions::default())
        .unwrap();
    let server = connect(address);
    // Every client starts at the same moment, so that they overlap.
    let start: u128 = std::env::var("SHM_PINGPONG_START").unwrap().parse().unwrap();
    while std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() < start {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut rtts = Vec::with_capacity(ROUNDS);
    for k in 0..ROUNDS + 1000 {
        let started = Instant::now();
        send(&server, me.address(), &[1u8; 8]);
        me.recv_message(WAIT).unwrap();
        if k >= 1000 {
            rtts.push(started.elapsed());
        }
    }
    send(&server, &format!("bye {}", me.address()), &[]);
    rtts.sort();
    let one_way = |q: usize| rtts[q * (rtts.len() - 1) / 100].as_secs_f64() * 1e6 / 2.0;
    println!("PINGPONG LAT {:.2} {:.2}", one_way(50), one_way(99));
    println!("PINGPONG CPU client {:.2}", cpu_seconds());
}

fn spawn(role: &str, arg: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ping_pong_oversubscribed", "--ignored", "--nocapture", "--test-threads=1"])
        .env("SHM_PINGPONG_ROLE", role)
        .env("SHM_PINGPONG_ARG", arg)
        .env("SHM_PINGPONG_START", start_at().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// A moment 1.5 s from now (ms since the epoch), the same for every process of a scenario.
fn start_at() -> u128 {
    static AT: std::sync::Mutex<Option<(Instant, u128)>> = std::sync::Mutex::new(None);
    let mut at = AT.lock().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    match *at {
        Some((set, ms)) if set.elapsed() < Duration::from_millis(500) => ms,
        _ => {
            *at = Some((Instant::now(), now + 1500));
            now + 1500
        }
    }
}

/// Runs `servers` servers with `per_server` clients each; prints latencies, CPU and wall time.
fn scenario(label: &str, servers: usize, per_server: usize) {
    let started = Instant::now();
    let mut all = Vec::new();
    for _ in 0..servers {
        let (server, mut out) = spawn("serve", &per_server.to_string());
        let address = loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "the server ended");
            if let Some(a) = line.trim().split("PINGPONG ADDR ").nth(1) {
                break a.to_owned();
            }
        };
        all.push((server, out));
        for _ in 0..per_server {
            all.push(spawn("ping", &address));
        }
    }
    let (mut lat, mut cpu) = (Vec::new(), 0.0);
    for (mut child, mut out) in all {
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        assert!(child.wait().unwrap().success());
        for line in text.lines().filter_map(|l| l.find("PINGPONG ").map(|at| &l[at..])) {
            if let Some(l) = line.strip_prefix("PINGPONG LAT ") {
                lat.push(l.to_owned());
            }
            if let Some(c) = line.strip_prefix("PINGPONG CPU ") {
                cpu += c.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap();
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!("{label:<26} one-way median/p99 us per client: {lat:?}; CPU {cpu:.2} s in {wall:.2} s wall ({:.2} cores)", cpu / wall);
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn ping_pong_oversubscribed() {
    match std::env::var("SHM_PINGPONG_ROLE").as_deref() {
        Ok("serve") => return serve(std::env::var("SHM_PINGPONG_ARG").unwrap().parse().unwrap()),
        Ok("ping") => return ping(&std::env::var("SHM_PINGPONG_ARG").unwrap()),
        _ => {}
    }
    println!("{ROUNDS} round trips of 8 B per client, after 1000 to warm up; wall time includes a 1.5 s start barrier");
    scenario("1 pair (2 processes)", 1, 1);
    scenario("2 pairs (4 processes)", 2, 1);
    scenario("3 clients + 1 server", 1, 3);
}
