//! The second process of the shared-memory tests (`tests/shm.rs` starts it). Commands:
//!
//! - `read SEGMENT OFFSET LEN CHECKSUM`: map the segment, check the bytes there.
//! - `receive ENDPOINT CHECKSUM`: bind a server, receive a message whose first bulk is descriptor-only,
//!   check it read straight from the segment and copied by `recv_bulks`.
//! - `hold SEGMENT`: map the segment, print `mapped`, wait for a line on stdin, then check that it still
//!   reads, writes, allocates and frees (after the other process unlinked it).
//! - `die-holding SEGMENT`: allocate three regions and abort without freeing them.
//! - `create-and-wait SEGMENT`: create the segment, write into it, print `created`, and wait for a line
//!   on stdin (the test kills it with SIGKILL meanwhile, so the segment is left behind).
//! - `hold-shared PID FD INODE LEN CHECKSUM`: open the shared bytes another process described, check
//!   them in place, print `opened`, and wait for a line on stdin (the test kills it meanwhile).
//! - `receive-value ENDPOINT SIZE CHECKSUM`: bind a server, receive one bulk by value into a buffer of
//!   SIZE bytes, check it (the over-2-GiB test).
//!
//! Exits 0 and prints `ok` when every check passes.

use std::io::BufRead;
use std::time::Duration;

use lbm_tests::verify::checksum;
use lightbeam::shm::{Segment, SharedBytes, SharedBytesDescriptor, ShmPtr};
use lightbeam::{BulkFlags, Endpoint, LbmMeta, Options, Server, SharedMemoryAccess, ZeroMqServer};

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn arg(args: &[String], index: usize) -> Result<&str, String> {
    args.get(index).map(String::as_str).ok_or_else(|| format!("missing argument {index}"))
}

fn read(args: &[String]) -> Outcome {
    let pointer = ShmPtr { segment: arg(args, 2)?.into(), offset: arg(args, 3)?.parse()? };
    let region = pointer.resolve(arg(args, 4)?.parse()?)?;
    if checksum(&region.to_vec()) != arg(args, 5)?.parse::<u64>()? {
        return Err("the bytes in shared memory differ".into());
    }
    Ok(())
}

fn receive(args: &[String]) -> Outcome {
    // The test's segments are named "test-..."; this server may read those and no others.
    let options = Options::default().with_shared_memory(SharedMemoryAccess::segments("test-"));
    let server = ZeroMqServer::bind(&Endpoint::parse(arg(args, 2)?)?, &options)?;
    let expected: u64 = arg(args, 3)?.parse()?;
    let mut meta = LbmMeta::<String>::default();
    server.recv_metadata_timeout(&mut meta, Duration::from_secs(30)).into_result()?;
    let shared = &meta.bulks[0];
    let location = shared.location().ok_or("the first bulk did not arrive as a pointer")?;
    if !shared.flags().contains(BulkFlags::EXPOSE) {
        return Err("EXPOSE flag lost".into());
    }
    // Straight from the segment, through the pointer alone.
    if checksum(&location.resolve(shared.size())?.to_vec()) != expected {
        return Err("read through the pointer differs".into());
    }
    // Or copied into buffers of our own, with the by-value bulk beside it.
    let text = meta.custom.clone();
    let mut buffers: Vec<Vec<u8>> = meta.bulks.iter().map(|b| vec![0; b.size()]).collect();
    meta.bulks = buffers.iter_mut().map(|b| server.expose(b, BulkFlags::NONE)).collect();
    server.recv_bulks(&mut meta).into_result()?;
    drop(meta);
    if checksum(&buffers[0]) != expected || buffers[1] != text.as_bytes() {
        return Err("copied bulks differ".into());
    }
    Ok(())
}

fn hold(args: &[String]) -> Outcome {
    let segment = Segment::open(arg(args, 2)?)?;
    println!("mapped");
    std::io::stdin().lock().lines().next();
    let region = segment.allocate(4096)?;
    region.write(0, b"still works")?;
    let mut back = [0u8; 11];
    region.read(0, &mut back)?;
    segment.free(&region.shm_ptr())?;
    if &back != b"still works" {
        return Err("the unlinked segment misbehaved".into());
    }
    Ok(())
}

fn die_holding(args: &[String]) -> Outcome {
    let segment = Segment::open(arg(args, 2)?)?;
    for _ in 0..3 {
        segment.allocate(1000)?.write(0, b"leaked")?;
    }
    std::process::abort();
}

fn create_and_wait(args: &[String]) -> Outcome {
    let segment = Segment::create(arg(args, 2)?, 1 << 20)?;
    segment.allocate(1000)?.write(0, b"left behind")?;
    println!("created");
    std::io::stdin().lock().lines().next();
    Ok(())
}

fn hold_shared(args: &[String]) -> Outcome {
    let number = |index| -> Result<u64, Box<dyn std::error::Error>> { Ok(arg(args, index)?.parse()?) };
    let descriptor = SharedBytesDescriptor {
        pid: arg(args, 2)?.parse()?,
        fd: arg(args, 3)?.parse()?,
        inode: number(4)?,
        len: number(5)?,
    };
    let view = SharedBytes::open_from(&descriptor)?;
    if checksum(&view) != number(6)? {
        return Err("the shared bytes differ".into());
    }
    println!("opened");
    std::io::stdin().lock().lines().next();
    Ok(())
}

fn receive_value(args: &[String]) -> Outcome {
    let server = ZeroMqServer::bind(&Endpoint::parse(arg(args, 2)?)?, &Options::default())?;
    let size: usize = arg(args, 3)?.parse()?;
    let mut buffer = vec![0u8; size];
    let mut meta = LbmMeta::<()>::default();
    server.recv_metadata_timeout(&mut meta, Duration::from_secs(120)).into_result()?;
    if meta.bulks.len() != 1 || meta.bulks[0].size() != size {
        return Err(format!("expected one bulk of {size} bytes").into());
    }
    meta.bulks[0] = server.expose(&mut buffer, BulkFlags::NONE);
    server.recv_bulks(&mut meta).into_result()?;
    drop(meta);
    if checksum(&buffer) != arg(args, 4)?.parse::<u64>()? {
        return Err("the large bulk arrived corrupted".into());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let outcome = match args.get(1).map(String::as_str) {
        Some("read") => read(&args),
        Some("receive") => receive(&args),
        Some("hold") => hold(&args),
        Some("die-holding") => die_holding(&args),
        Some("receive-value") => receive_value(&args),
        Some("hold-shared") => hold_shared(&args),
        Some("create-and-wait") => create_and_wait(&args),
        other => Err(format!("unknown command {other:?}").into()),
    };
    match outcome {
        Ok(()) => println!("ok"),
        Err(error) => {
            eprintln!("shm peer: {error}");
            std::process::exit(1);
        }
    }
}
