//! The second process of the shared-memory transport tests (`tests/shm_transport.rs` starts it).
//! Commands:
//!
//! - `receive NAME COUNT`: bind a server at NAME (port 0), print its address, receive COUNT messages
//!   whose custom metadata holds the checksum of each bulk, check them, print `copied N` (the offers
//!   the server copied) and `ok`.
//! - `serve NAME`: bind a server, print its address, and receive nothing until killed.
//! - `stream ADDRESS SIZE`: print `sending`, send one bulk of SIZE bytes through the ring (no single
//!   copy), print `sent`.
//! - `hold SIZE`: hold SIZE bytes of a recognizable secret (`SECRET!!` repeated), print `PID ADDRESS`
//!   (this process and where the secret lies in it), and send nothing until killed: a victim whose
//!   memory a hostile process names in its offers.
//!
//! Exits 0 when every check passes.

use std::io::Write;
use std::time::Duration;

use lightbeam::verify::{checksum, pattern};
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
