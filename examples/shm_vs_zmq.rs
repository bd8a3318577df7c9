//! The shared-memory transport beside ZeroMQ ipc, between two processes of this node: median one-way
//! latency of an 8-byte message (half a round trip) and bandwidth at 64 KiB, 1 MiB and 16 MiB.
//!
//! `cargo run --release --example shm_vs_zmq` (it starts its own second process).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lightbeam::{
    Client, Endpoint, LbmMeta, Options, Server, SharedMemoryClient, SharedMemoryServer, ShmOptions,
    ZeroMqClient, ZeroMqServer,
};

const WAIT: Duration = Duration::from_secs(30);

/// The transport's settings: `LBM_SHM_SINGLE_COPY_FROM=<bytes>` or `=never` changes the single-copy
/// threshold (to compare both paths at each size).
fn shm_options() -> ShmOptions {
    match std::env::var("LBM_SHM_SINGLE_COPY_FROM").ok().as_deref() {
        Some("never") => ShmOptions::default().with_single_copy_from(None),
        Some(bytes) => ShmOptions::default().with_single_copy_from(Some(bytes.parse().expect("a size"))),
        None => ShmOptions::default(),
    }
}

fn bind(transport: &str) -> lightbeam::Result<Box<dyn Server>> {
    Ok(match transport {
        "shm" => {
            Box::new(SharedMemoryServer::bind("lbm-bench", "shm", 0, &Options::default(), &shm_options())?)
        }
        _ => {
            let path = std::env::temp_dir().join(format!("lbm-bench-{}", std::process::id()));
            let endpoint = Endpoint::new(&path.to_string_lossy(), "ipc", 0)?;
            Box::new(ZeroMqServer::bind(&endpoint, &Options::default())?)
        }
    })
}

fn connect(transport: &str, address: &str) -> lightbeam::Result<Box<dyn Client>> {
    Ok(match transport {
        "shm" => {
            Box::new(SharedMemoryClient::connect(address, "shm", 0, &Options::default(), &shm_options())?)
        }
        _ => Box::new(ZeroMqClient::connect(&Endpoint::parse(address)?, &Options::default())?),
    })
}

fn send(client: &dyn Client, data: &[u8]) {
    let meta = LbmMeta::new(()).with_bulk(client.expose(data, Default::default()));
    client.send(&meta).into_result().expect("send");
}

fn receive(server: &dyn Server) -> usize {
    let message = server.recv_message(WAIT).expect("receive");
    message.into_payloads().iter().map(|p| p.len()).sum()
}

/// The second process: answers every message tagged 0 with 8 bytes, every other with an empty bulk,
/// and ends at the tag `u32::MAX`.
fn child(transport: &str, parent: &str) {
    let server = bind(transport).unwrap();
    println!("{}", server.address());
    std::io::stdout().flush().unwrap();
    let client = connect(transport, parent).unwrap();
    loop {
        let message = server.recv_message(WAIT).expect("receive");
        let custom: u32 = message.metadata::<u32>().expect("metadata").custom;
        drop(message);
        match custom {
            u32::MAX => return,
            0 => send(&*client, &[0; 8]),
            _ => send(&*client, &[]),
        }
    }
}

fn send_tagged(client: &dyn Client, tag: u32, data: &[u8]) {
    let meta = LbmMeta::new(tag).with_bulk(client.expose(data, Default::default()));
    client.send(&meta).into_result().expect("send");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median one-way latency of 8 bytes, in microseconds.
fn latency(server: &dyn Server, client: &dyn Client) -> f64 {
    let data = [1u8; 8];
    let samples = (0..2000)
        .map(|_| {
            let start = Instant::now();
            send_tagged(client, 0, &data);
            receive(server);
            start.elapsed().as_secs_f64() * 1e6 / 2.0
        })
        .collect();
    median(samples)
}

/// Median bandwidth in GB/s of `count` messages of `size` bytes, each acknowledged.
fn bandwidth(server: &dyn Server, client: &dyn Client, size: usize) -> f64 {
    let data = vec![7u8; size];
    let count = (64 << 20) / size.max(1) + 1;
    let samples = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..count {
                send_tagged(client, 1, &data);
                receive(server);
            }
            (count * size) as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    median(samples)
}

fn measure(transport: &str) -> Vec<f64> {
    let server = bind(transport).unwrap();
    let me = std::env::current_exe().unwrap();
    let mut peer =
        Command::new(me).args(["child", transport, server.address()]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(peer.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let client = connect(transport, line.trim()).unwrap();
    let mut figures = vec![latency(&*server, &*client)];
    for size in [64 << 10, 1 << 20, 16 << 20] {
        figures.push(bandwidth(&*server, &*client, size));
    }
    send_tagged(&*client, u32::MAX, &[]);
    peer.wait().unwrap();
    figures
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(&args[2], &args[3]);
    }
    println!("{:<12} {:>14} {:>14} {:>14} {:>14}", "transport", "8 B latency", "64 KiB", "1 MiB", "16 MiB");
    for transport in ["shm", "zmq-ipc"] {
        let f = measure(transport);
        println!(
            "{:<12} {:>11.2} us {:>9.2} GB/s {:>9.2} GB/s {:>9.2} GB/s",
            transport, f[0], f[1], f[2], f[3]
        );
    }
}
