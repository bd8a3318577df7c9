//! The guide's "basic client-server communication": one message with one bulk over tcp.
//!
//! Run: `cargo run --example basic`. Exits non-zero if the message does not arrive intact.

use std::time::Duration;

use lightbeam::{BulkFlags, LbmMeta, Transport, TransportFactory};

fn main() -> lightbeam::Result<()> {
    // Port 0: the server takes any free port and reports it, so the example never collides with other work.
    let server = TransportFactory::server("127.0.0.1", Transport::ZeroMq, "tcp", 0)?;
    let port = server.address().rsplit(':').next().and_then(|p| p.parse().ok()).expect("bound port");
    let client = TransportFactory::client("127.0.0.1", Transport::ZeroMq, "tcp", port)?;
    println!("server bound at {}", server.address());

    // CLIENT: expose the message and send it. No sleep is needed: send waits for the connection.
    let message = b"Hello, Lightbeam!";
    let mut send_meta = LbmMeta::new(());
    send_meta.bulks.push(client.expose(message, BulkFlags::NONE));
    let sent = client.send(&send_meta).into_result()?;
    println!("client sent {sent} bytes");

    // SERVER: receive the metadata (waiting up to 5 s), size a buffer, receive the bulk into it.
    let mut recv_meta = LbmMeta::<()>::default();
    let event = server.recv_metadata_timeout(&mut recv_meta, Duration::from_secs(5));
    if !event.is_done() {
        return Err(lightbeam::Error::Timeout {
            op: "recv_metadata",
            after: Duration::from_secs(5),
            peer: None,
        });
    }
    event.into_result()?;
    println!("server received metadata with {} bulks", recv_meta.bulks.len());

    let mut buffer = vec![0u8; recv_meta.bulks[0].size()];
    recv_meta.bulks[0] = server.expose(&mut buffer, BulkFlags::NONE);
    server.recv_bulks(&mut recv_meta).into_result()?;
    println!("server received: {}", String::from_utf8_lossy(&buffer));

    assert_eq!(buffer, message, "the message arrived corrupted");
    Ok(())
}
