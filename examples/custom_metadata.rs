//! The guide's "custom metadata with multiple bulks": your own serde fields travel with the bulks.
//!
//! Run: `cargo run --example custom_metadata`. Exits non-zero if anything arrives wrong.

use std::time::Duration;

use lightbeam::{BulkFlags, Client, LbmMeta, Server, ZeroMqClient, ZeroMqServer};
use serde::{Deserialize, Serialize};

/// The C++ `RequestMeta : LbmMeta`, as a plain struct: derive serde instead of writing cereal functions.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct RequestMeta {
    request_id: u32,
    operation: String,
    client_name: String,
}

fn send(client: &ZeroMqClient, request: RequestMeta, chunks: &[&str]) -> lightbeam::Result<usize> {
    let mut meta = LbmMeta::new(request);
    meta.bulks = chunks.iter().map(|c| client.expose(c.as_bytes(), BulkFlags::NONE)).collect();
    client.send(&meta).into_result()
}

fn receive(server: &ZeroMqServer) -> lightbeam::Result<(RequestMeta, Vec<String>)> {
    let mut meta = LbmMeta::<RequestMeta>::default();
    server.recv_metadata_timeout(&mut meta, Duration::from_secs(5)).into_result()?;
    println!(
        "request {} ({}) from {}: {} bulks",
        meta.custom.request_id,
        meta.custom.operation,
        meta.custom.client_name,
        meta.bulks.len()
    );
    let mut buffers: Vec<Vec<u8>> = meta.bulks.iter().map(|b| vec![0; b.size()]).collect();
    meta.bulks = buffers.iter_mut().map(|b| server.expose(b, BulkFlags::NONE)).collect();
    server.recv_bulks(&mut meta).into_result()?;
    let request = meta.custom;
    let chunks = buffers.into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect();
    Ok((request, chunks))
}

fn main() -> lightbeam::Result<()> {
    // Made directly, as in the guide's second example; port 0 picks a free port.
    let server = ZeroMqServer::new("127.0.0.1", "tcp", 0)?;
    let client = ZeroMqClient::connect(&server.address().parse()?, &Default::default())?;

    let request = |id, operation: &str| RequestMeta {
        request_id: id,
        operation: operation.into(),
        client_name: "client_01".into(),
    };
    let messages = [
        (request(42, "write"), vec!["First chunk", "Second chunk"]),
        (request(43, "append"), vec!["one", "two", "three", "four"]),
    ];
    for (meta, chunks) in &messages {
        send(&client, meta.clone(), chunks)?;
    }
    for (expected_meta, expected_chunks) in &messages {
        let (meta, chunks) = receive(&server)?;
        for (i, chunk) in chunks.iter().enumerate() {
            println!("  chunk {i}: {chunk}");
        }
        assert_eq!(&meta, expected_meta, "metadata arrived wrong");
        assert_eq!(&chunks, expected_chunks, "bulks arrived wrong");
    }
    println!("all messages verified");
    Ok(())
}
