//! The second process of the shared-memory transport tests (`tests/shm_transport.rs` starts it).
//! Commands:
//!
//! - `receive NAME COUNT`: bind a server at NAME (port 0), print its address, receive COUNT messages
//!   whose custom metadata holds the checksum of each bulk, check them, print `copied N` (the offers
//!   the server copied) and `ok`.
//! - `serve NAME`: bind a server, print its address, and receive nothing until killed.
//! - `stream ADDRESS SIZE`: print `sending`, send one bulk of SIZE bytes through the ring (no single
//!   copy), print `sent`.
//! - `small-shm CASE`: run in a private /dev/shm of a few hundred KiB (`tests/shm_small_tmpfs.rs` mounts
//!   it), then print `left: ` and the `lightbeam-*` files left there. CASE `default`: bind a server of
//!   the default shape, and if that succeeds, stream 1 MiB through it from a client of this process;
//!   `large-segment`: create a segment of 1 MiB and, if that succeeds, write all of it; both print
//!   `refused: ` and the error when refused. `fits`: bind a server of one 64 KiB ring and stream 1 MiB
//!   through it. `fifo`: put a FIFO (mode 0666) named like a mesh segment in /dev/shm, then remove the
//!   mesh's stale segments and bind its server, as a mesh bootstrap does.
//! - `drain NAME MAX_MESSAGE_SIZE`: bind a server allowing messages of MAX_MESSAGE_SIZE bytes, print its
//!   address, and receive (dropping messages and errors) until killed (at most 60 s).
//! - `flood ADDRESS SIZE`: send an empty message (which claims a channel), print `attached`, then send
//!   bulks of SIZE bytes through the ring one after another until killed.
//! - `hold SIZE`: hold SIZE bytes of a recognizable secret (`SECRET!!` repeated), print `PID ADDRESS`
//!   (this process and where the secret lies in it), and send nothing until killed: a victim whose
//!   memory a hostile process names in its offers.
//!
//! Exits 0 when every check passes.

use std::io::Write;
use std::time::Duration;

use lbm_tests::verify::{checksum, pattern};
use lightbeam::shm::Segment;
use lightbeam::{Client, LbmMeta, Options, Server, SharedMemoryClient, SharedMemoryServer, ShmOptions};

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn arg(args: &[String], index: usize) -> Result<&str, String> {
    args.get(index).map(String::as_str).ok_or_else(|| format!("missing argument {index}"))
}

fn say(line: &str) {
    println!("{line}");
    std::io::stdout().flush().expect("stdout");
}

fn bind(name: &str) -> Result<SharedMemoryServer, lightbeam::Error> {
    let server = SharedMemoryServer::bind(name, "shm", 0, &Options::default(), &ShmOptions::default())?;
    say(server.address());
    Ok(server)
}

fn receive(args: &[String]) -> Outcome {
    let server = bind(arg(args, 2)?)?;
    let count: usize = arg(args, 3)?.parse()?;
    for _ in 0..count {
        let message = server.recv_message(Duration::from_secs(30))?;
        let sums: Vec<u64> = message.metadata::<Vec<u64>>()?.custom;
        let got: Vec<u64> = message.into_payloads().iter().map(|p| checksum(p)).collect();
        if got != sums {
            return Err(format!("bulks differ: {got:?} against {sums:?}").into());
        }
    }
    say(&format!("copied {}", server.single_copies().copied));
    Ok(())
}

fn serve(args: &[String]) -> Outcome {
    let _server = bind(arg(args, 2)?)?;
    std::thread::sleep(Duration::from_secs(60));
    Err("not killed within 60 s".into())
}

fn stream(args: &[String]) -> Outcome {
    let options = Options::default().with_send_timeout(Some(Duration::from_secs(60)));
    let shm = ShmOptions::default().with_single_copy_from(None);
    let client = SharedMemoryClient::connect(arg(args, 2)?, "shm", 0, &options, &shm)?;
    let data = pattern(arg(args, 3)?.parse()?, 1);
    let meta = LbmMeta::new(vec![checksum(&data)]).with_bulk(client.expose(&data, Default::default()));
    say("sending");
    client.send(&meta).into_result()?;
    say("sent");
    Ok(())
}

/// Streams `size` bytes through the ring of `server` from a client of this process, and checks them.
fn stream_through(server: &SharedMemoryServer, size: usize) -> Outcome {
    let address = server.address().to_owned();
    let sender = std::thread::spawn(move || -> Result<(), lightbeam::Error> {
        let options = Options::default().with_send_timeout(Some(Duration::from_secs(20)));
        let shm = ShmOptions::default().with_single_copy_from(None);
        let client = SharedMemoryClient::connect(&address, "shm", 0, &options, &shm)?;
        let data = pattern(size, 7);
        let meta = LbmMeta::new(vec![checksum(&data)]).with_bulk(client.expose(&data, Default::default()));
        client.send(&meta).into_result().map(drop)
    });
    let message = server.recv_message(Duration::from_secs(20))?;
    sender.join().map_err(|_| "the sending thread panicked")??;
    let sums: Vec<u64> = message.metadata::<Vec<u64>>()?.custom;
    let got: Vec<u64> = message.into_payloads().iter().map(|p| checksum(p)).collect();
    if got != sums {
        return Err(format!("bulks differ: {got:?} against {sums:?}").into());
    }
    say("streamed");
    Ok(())
}

fn small_shm(args: &[String]) -> Outcome {
    let small = ShmOptions::default().with_channels(1).with_ring_size(64 << 10);
    match arg(args, 2)? {
        "default" => {
            match SharedMemoryServer::bind("small", "shm", 0, &Options::default(), &ShmOptions::default()) {
                Ok(server) => {
                    say("bound");
                    stream_through(&server, 1 << 20)?;
                }
                Err(error) => say(&format!("refused: {error}")),
            }
        }
        "large-segment" => match Segment::create("small-large", 1 << 20) {
            Ok(segment) => {
                say("created");
                let region = segment.allocate(1 << 19)?;
                region.write(0, &pattern(1 << 19, 3))?;
                say("written");
            }
            Err(error) => say(&format!("refused: {error}")),
        },
        "fits" => {
            let server = SharedMemoryServer::bind("small", "shm", 0, &Options::default(), &small)?;
            stream_through(&server, 1 << 20)?;
        }
        "fifo" => {
            let made = std::process::Command::new("mkfifo")
                .args(["-m", "0666", "/dev/shm/lightbeam-mesh-x"])
                .status()?;
            if !made.success() {
                return Err("mkfifo failed".into());
            }
            let removed = Segment::reclaim_stale_where(|name| name.starts_with("mesh-"))?;
            let server = SharedMemoryServer::bind("mesh-0", "shm", 0, &Options::default(), &small)?;
            say(&format!("reclaimed {removed}, bound {}", server.address()));
            drop(server);
            std::fs::remove_file("/dev/shm/lightbeam-mesh-x")?;
        }
        other => return Err(format!("unknown case {other:?}").into()),
    }
    let mut left: Vec<String> = std::fs::read_dir("/dev/shm")?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("lightbeam-"))
        .collect();
    left.sort();
    say(&format!("left: {}", left.join(" ")));
    Ok(())
}

fn drain(args: &[String]) -> Outcome {
    let options = Options::default().with_max_message_size(Some(arg(args, 3)?.parse()?));
    let server = SharedMemoryServer::bind(arg(args, 2)?, "shm", 0, &options, &ShmOptions::default())?;
    say(server.address());
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let _ = server.recv_message(Duration::from_millis(200));
    }
    Err("not killed within 60 s".into())
}

fn flood(args: &[String]) -> Outcome {
    let options = Options::default().with_send_timeout(Some(Duration::from_secs(60)));
    let shm = ShmOptions::default().with_single_copy_from(None);
    let client = SharedMemoryClient::connect(arg(args, 2)?, "shm", 0, &options, &shm)?;
    client.send(&LbmMeta::new("attach".to_string())).into_result()?;
    say("attached");
    let data = pattern(arg(args, 3)?.parse()?, 3);
    loop {
        let meta = LbmMeta::new("flood".to_string()).with_bulk(client.expose(&data, Default::default()));
        client.send(&meta).into_result()?;
    }
}

fn hold(args: &[String]) -> Outcome {
    let size: usize = arg(args, 2)?.parse()?;
    let secret: Vec<u8> = b"SECRET!!".iter().copied().cycle().take(size).collect();
    say(&format!("{} {}", std::process::id(), secret.as_ptr() as u64));
    std::thread::sleep(Duration::from_secs(60));
    drop(std::hint::black_box(secret));
    Err("not killed within 60 s".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match args.get(1).map(String::as_str) {
        Some("receive") => receive(&args),
        Some("serve") => serve(&args),
        Some("stream") => stream(&args),
        Some("small-shm") => small_shm(&args),
        Some("drain") => drain(&args),
        Some("flood") => flood(&args),
        Some("hold") => hold(&args),
        other => Err(format!("unknown command {other:?}").into()),
    };
    match outcome {
        Ok(()) => say("ok"),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    }
}
