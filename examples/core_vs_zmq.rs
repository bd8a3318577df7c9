//! Lightbeam's two-phase core beside raw ZeroMQ PUSH/PULL sockets, in one process over tcp loopback:
//! the round trip of an 8-byte message, and streaming throughput of 1 MiB and 64 MiB messages.
//!
//! Run: `cargo run --release --example core_vs_zmq`. Prints medians of several repetitions; the full
//! OSU-style benchmark under MPI is a separate program.

#[path = "common/data.rs"]
mod data;

use std::thread;
use std::time::{Duration, Instant};

use lightbeam::{BulkFlags, Client, Endpoint, LbmMeta, Options, Server, ZeroMqClient, ZeroMqServer};

const REPEATS: usize = 5;
const WAIT: Duration = Duration::from_secs(30);

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn lightbeam_pair() -> (ZeroMqServer, ZeroMqClient) {
    let server =
        ZeroMqServer::bind(&Endpoint::new("127.0.0.1", "tcp", 0).unwrap(), &Options::default()).unwrap();
    let client = ZeroMqClient::connect(&server.address().parse().unwrap(), &Options::default()).unwrap();
    (server, client)
}

fn raw_pair(context: &zmq::Context) -> (zmq::Socket, zmq::Socket) {
    let pull = context.socket(zmq::PULL).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let push = context.socket(zmq::PUSH).unwrap();
    push.set_sndhwm(1000).unwrap();
    push.connect(&pull.get_last_endpoint().unwrap().unwrap()).unwrap();
    (pull, push)
}

/// Receives one message into `buffer` with the two-phase calls.
fn lightbeam_recv(server: &ZeroMqServer, buffer: &mut [u8]) -> usize {
    let mut meta = LbmMeta::<()>::default();
    server.recv_metadata_timeout(&mut meta, WAIT).into_result().expect("metadata");
    meta.bulks[0] = server.expose(buffer, BulkFlags::NONE);
    server.recv_bulks(&mut meta).into_result().expect("bulks")
}

fn lightbeam_send(client: &ZeroMqClient, data: &[u8]) {
    let meta = LbmMeta::new(()).with_bulk(client.expose(data, BulkFlags::NONE));
    client.send(&meta).into_result().expect("send");
}

/// Median round trip (microseconds) of an 8-byte message: there and back over two pairs.
fn round_trip_lightbeam(iterations: usize) -> f64 {
    let ((server_a, client_a), (server_b, client_b)) = (lightbeam_pair(), lightbeam_pair());
    let echo = thread::spawn(move || {
        let mut buffer = [0u8; 8];
        for _ in 0..iterations {
            lightbeam_recv(&server_a, &mut buffer);
            lightbeam_send(&client_b, &buffer);
        }
    });
    let mut buffer = [0u8; 8];
    let samples = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            lightbeam_send(&client_a, b"8 bytes!");
            lightbeam_recv(&server_b, &mut buffer);
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    echo.join().unwrap();
    median(samples)
}

fn round_trip_raw(iterations: usize) -> f64 {
    let context = zmq::Context::new();
    let ((pull_a, push_a), (pull_b, push_b)) = (raw_pair(&context), raw_pair(&context));
    let echo = thread::spawn(move || {
        for _ in 0..iterations {
            let message = pull_a.recv_msg(0).unwrap();
            push_b.send(message, 0).unwrap();
        }
    });
    let samples = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            push_a.send(&b"8 bytes!"[..], 0).unwrap();
            pull_b.recv_msg(0).unwrap();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    echo.join().unwrap();
    median(samples)
}

/// How a throughput run sends and receives.
#[derive(Clone, Copy)]
enum Path {
    /// Lightbeam send; recv_bulks into a buffer of the receiver's.
    Lightbeam,
    /// Lightbeam send; take_bulks, reading the frames in place.
    LightbeamInPlace,
    /// Raw ZeroMQ, copying the slice into each message.
    RawCopy,
    /// Raw ZeroMQ, handing owned buffers to ZeroMQ without a copy (prepared before the clock starts).
    RawZeroCopy,
}

/// MiB/s of streaming `count` messages of `size` bytes.
fn throughput(path: Path, size: usize, count: usize) -> f64 {
    let data = data::pattern(size, 1);
    let started;
    match path {
        Path::Lightbeam | Path::LightbeamInPlace => {
            let (server, client) = lightbeam_pair();
            lightbeam_send(&client, b"warm-up");
            lightbeam_recv(&server, &mut [0u8; 7]);
            let receiver = thread::spawn(move || {
                let mut buffer = vec![0u8; size];
                for _ in 0..count {
                    if let Path::Lightbeam = path {
                        lightbeam_recv(&server, &mut buffer);
                    } else {
                        let mut meta = LbmMeta::<()>::default();
                        server.recv_metadata_timeout(&mut meta, WAIT).into_result().unwrap();
                        assert_eq!(server.take_bulks().unwrap()[0].len(), size);
                    }
                }
            });
            started = Instant::now();
            for _ in 0..count {
                lightbeam_send(&client, &data);
            }
            receiver.join().unwrap();
        }
        Path::RawCopy | Path::RawZeroCopy => {
            let context = zmq::Context::new();
            let (pull, push) = raw_pair(&context);
            push.send("warm-up", 0).unwrap();
            pull.recv_msg(0).unwrap();
            let receiver = thread::spawn(move || {
                for _ in 0..count {
                    assert_eq!(pull.recv_msg(0).unwrap().len(), size);
                }
            });
            let mut owned: Vec<Vec<u8>> = match path {
                Path::RawZeroCopy => (0..count).map(|_| data.clone()).collect(),
                _ => Vec::new(),
            };
            started = Instant::now();
            for _ in 0..count {
                match owned.pop() {
                    Some(buffer) => push.send(buffer, 0).unwrap(),
                    None => push.send(&data[..], 0).unwrap(),
                }
            }
            receiver.join().unwrap();
        }
    }
    (size * count) as f64 / f64::from(1 << 20) / started.elapsed().as_secs_f64()
}

fn main() {
    println!("Lightbeam core vs raw ZeroMQ, tcp loopback, one process; medians of {REPEATS} runs");
    let lb = median((0..REPEATS).map(|_| round_trip_lightbeam(2000)).collect());
    let raw = median((0..REPEATS).map(|_| round_trip_raw(2000)).collect());
    println!("8-byte round trip: lightbeam {lb:.1} us, raw zmq {raw:.1} us, ratio {:.2}", lb / raw);
    println!(
        "{:>8} {:>14} {:>16} {:>14} {:>16} {:>10}",
        "size", "lightbeam", "lb in place", "raw copy", "raw zero-copy", "lb/zc"
    );
    for (size, count) in [(1 << 20, 200), (64 << 20, 6)] {
        let run = |path| median((0..REPEATS).map(|_| throughput(path, size, count)).collect());
        let (lb, in_place, copy, zero) =
            (run(Path::Lightbeam), run(Path::LightbeamInPlace), run(Path::RawCopy), run(Path::RawZeroCopy));
        println!(
            "{:>6}Mi {:>9.0} MiB/s {:>11.0} MiB/s {:>9.0} MiB/s {:>11.0} MiB/s {:>10.2}",
            size >> 20,
            lb,
            in_place,
            copy,
            zero,
            lb / zero
        );
    }
}
