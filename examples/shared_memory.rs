//! The guide's "working with shared memory pointers", in two processes: this process allocates in a named
//! segment, writes there, and sends the region as its pointer alone (a descriptor-only bulk); a second
//! process (this program again, started as `receiver`) maps the segment and copies the bytes straight out
//! of it (reading in place is the `unsafe` `FullPtr::as_slice`; examples keep to safe code).
//!
//! Then it measures moving 64 MiB to the other process three ways, beside a plain memcpy:
//! by value over an ipc socket, as a pointer that the receiver copies out with `recv_bulks`, and as a
//! pointer handed over alone (the receiver checks the bytes after acknowledging, untimed).
//!
//! Run: `cargo run --release --example shared_memory`. Exits non-zero if anything arrives wrong.

#[path = "common/data.rs"]
mod data;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use data::{checksum, pattern};
use lightbeam::shm::Segment;
use lightbeam::{
    BulkFlags, Client, Endpoint, LbmMeta, Options, Server, SharedMemoryAccess, ZeroMqClient, ZeroMqServer,
};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(30);
const SIZE: usize = 64 << 20;
const REPEATS: usize = 5;

/// What the receiver is asked to do with a message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Task {
    /// Print the text found in place.
    #[default]
    Print,
    /// Copy every bulk into buffers of its own (recv_bulks), then acknowledge.
    Copy { checksum: u64 },
    /// Read the descriptor-only bulk in place, then acknowledge.
    InPlace { checksum: u64 },
    /// Stop.
    Done,
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn receiver(endpoint: &str, ack_endpoint: &str) -> Outcome {
    // A server resolves descriptor-only bulks only in segments its owner allows: here the example's own.
    let options = Options::default().with_shared_memory(SharedMemoryAccess::segments("example-"));
    let server = ZeroMqServer::bind(&Endpoint::parse(endpoint)?, &options)?;
    let ack = ZeroMqClient::connect(&Endpoint::parse(ack_endpoint)?, &Options::default())?;
    ack.send(&LbmMeta::new(())).into_result()?; // ready

    // One receive buffer, reused: a fresh 64 MiB buffer per message would time page faults, not
    // transfers.
    let mut buffer = vec![1u8; SIZE];
    loop {
        let mut meta = LbmMeta::<Task>::default();
        server.recv_metadata_timeout(&mut meta, WAIT).into_result()?;
        let task = meta.custom;
        let received = match task {
            Task::Done => return Ok(()),
            Task::Print | Task::InPlace { .. } => {
                let bulk = &meta.bulks[0];
                let region =
                    bulk.location().ok_or("expected a descriptor-only bulk")?.resolve(bulk.size())?;
                server.discard_pending();
                if task == Task::Print {
                    println!(
                        "receiver (pid {}): read through the pointer: {}",
                        std::process::id(),
                        String::from_utf8_lossy(&region.to_vec())
                    );
                }
                ack.send(&LbmMeta::new(())).into_result()?;
                checksum(&region.to_vec())
            }
            Task::Copy { .. } => {
                let size = meta.bulks[0].size();
                meta.bulks[0] = server.expose(&mut buffer[..size], BulkFlags::NONE);
                server.recv_bulks(&mut meta).into_result()?;
                ack.send(&LbmMeta::new(())).into_result()?;
                checksum(&buffer[..size])
            }
        };
        // Checked after the acknowledgement, so that the check is not part of the time measured, and
        // confirmed with a second acknowledgement before the sender goes on.
        if let Task::Copy { checksum } | Task::InPlace { checksum } = task {
            if received != checksum {
                return Err(format!("{task:?}: the data arrived wrong").into());
            }
        }
        ack.send(&LbmMeta::new(())).into_result()?;
    }
}

struct Sender {
    client: ZeroMqClient,
    acks: ZeroMqServer,
    child: Child,
}

impl Sender {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir();
        let endpoint = format!("ipc://{}/lightbeam-example-{}", dir.display(), std::process::id());
        let acks = ZeroMqServer::bind(&Endpoint::parse(&format!("{endpoint}-ack"))?, &Options::default())?;
        let child =
            Command::new(std::env::current_exe()?).args(["receiver", &endpoint, acks.address()]).spawn()?;
        let sender = Self {
            client: ZeroMqClient::connect(&Endpoint::parse(&endpoint)?, &Options::default())?,
            acks,
            child,
        };
        sender.wait_ack()?;
        Ok(sender)
    }

    fn wait_ack(&self) -> lightbeam::Result<()> {
        let event = self.acks.recv_metadata_timeout(&mut LbmMeta::<()>::default(), WAIT);
        if !event.is_done() {
            return Err(lightbeam::Error::Timeout {
                op: "waiting for the receiver",
                after: WAIT,
                peer: None,
            });
        }
        event.into_result().map(drop)
    }

    /// Sends one bulk with a task and waits for the acknowledgement; returns the time taken. Then waits
    /// (untimed) for the receiver to confirm it checked the data.
    fn round(&self, task: Task, bulk: lightbeam::Bulk<'_>) -> lightbeam::Result<Duration> {
        let started = Instant::now();
        self.client.send(&LbmMeta::new(task).with_bulk(bulk)).into_result()?;
        self.wait_ack()?;
        let elapsed = started.elapsed();
        self.wait_ack()?;
        Ok(elapsed)
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn rate(time: Duration) -> String {
    format!("{:>8.2} ms {:>8.0} MiB/s", time.as_secs_f64() * 1e3, (SIZE >> 20) as f64 / time.as_secs_f64())
}

fn sender() -> Outcome {
    let segment = Segment::create(&format!("example-{}", std::process::id()), SIZE + (1 << 20))?;
    let mut sender = Sender::start()?;

    // The guide's example: write into shared memory, send the pointer alone.
    let text = b"Shared memory data";
    let region = segment.allocate(text.len())?;
    region.write(0, text)?;
    println!("sender: wrote {} bytes at {:?}", text.len(), region.shm_ptr());
    sender.round(Task::Print, sender.client.expose_shm(region.clone(), BulkFlags::EXPOSE))?;
    segment.free(&region.shm_ptr())?;

    // 64 MiB three ways, and a memcpy of the same size.
    let data = pattern(SIZE, 7);
    let sum = checksum(&data);
    let shared = segment.allocate(SIZE)?;
    shared.write(0, &data)?;
    let mut by_value = Vec::new();
    let mut copied = Vec::new();
    let mut in_place = Vec::new();
    let mut memcpy = Vec::new();
    let mut target = vec![0u8; SIZE];
    for _ in 0..REPEATS {
        by_value
            .push(sender.round(Task::Copy { checksum: sum }, sender.client.expose(&data, BulkFlags::NONE))?);
        let pointer = || sender.client.expose_shm(shared.clone(), BulkFlags::EXPOSE);
        copied.push(sender.round(Task::Copy { checksum: sum }, pointer())?);
        in_place.push(sender.round(Task::InPlace { checksum: sum }, pointer())?);
        let started = Instant::now();
        target.copy_from_slice(&data);
        memcpy.push(started.elapsed());
        std::hint::black_box(&target);
    }
    sender.client.send(&LbmMeta::new(Task::Done)).into_result()?;
    let status = sender.child.wait()?;
    if !status.success() {
        return Err(format!("the receiver failed: {status}").into());
    }
    println!("moving 64 MiB to another process (medians of {REPEATS}, until the receiver acknowledges):");
    println!("  socket (ipc), by value, into a buffer   {}", rate(median(by_value)));
    println!("  shared memory pointer, copied out       {}", rate(median(copied)));
    println!("  shared memory pointer, handed over      {} (the handover alone)", rate(median(in_place)));
    println!("  memcpy of 64 MiB in one process         {}", rate(median(memcpy)));
    segment.free(&shared.shm_ptr())?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match args.get(1).map(String::as_str) {
        Some("receiver") if args.len() == 4 => receiver(&args[2], &args[3]),
        _ => sender(),
    };
    if let Err(error) = outcome {
        eprintln!("shared_memory: {error}");
        std::process::exit(1);
    }
}
