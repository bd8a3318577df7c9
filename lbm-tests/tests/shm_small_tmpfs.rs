//! Shared memory on a node whose /dev/shm is nearly full: every test runs the transport's test peer in a
//! private mount namespace over a 256 KiB tmpfs of its own (as root, with `unshare`; skipped otherwise).
//! A segment that does not fit is refused when it is created, with an error that names /dev/shm and the
//! bytes needed, and leaves nothing behind; no process is killed by SIGBUS later. The same namespace
//! holds a FIFO named like a mesh segment without troubling any other test of the node.

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;

use util::wait_ended;

const PEER: &str = env!("CARGO_BIN_EXE_lbm-test-shm-transport-peer");

/// The size of the private /dev/shm.
const SMALL: &str = "256k";

/// Why the tests cannot run here, if they cannot: they need root (to mount) and `unshare`.
fn cannot_run() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("not root".into());
    }
    match Command::new("unshare").arg("--version").stdout(Stdio::null()).status() {
        Ok(status) if status.success() => None,
        _ => Some("no `unshare` command".into()),
    }
}

/// What the peer printed and how it ended, in its private /dev/shm.
struct Run {
    stdout: String,
    stderr: String,
    /// The peer's exit status as the shell saw it (128 + N when killed by signal N, 124 past the
    /// timeout).
    status: i32,
    /// The `lightbeam-*` files in the private /dev/shm once the peer ended.
    left: String,
}

/// Runs `lbm-test-shm-transport-peer small-shm CASE` under a 256 KiB tmpfs mounted over /dev/shm in a
/// private mount namespace, within 60 s; `None` (after saying why) when this cannot be done here.
fn run_small(case: &str) -> Option<Run> {
    if let Some(why) = cannot_run() {
        println!("SKIPPED: a private /dev/shm needs root and unshare ({why})");
        return None;
    }
    let script = format!(
        "mount -t tmpfs -o size={SMALL} tmpfs /dev/shm || exit 90; \
         timeout -s KILL 40 \"$0\" small-shm \"$1\"; echo \"status: $?\"; \
         echo \"files: $(ls -A /dev/shm | grep '^lightbeam-' | tr '\\n' ' ')\""
    );
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, PEER, case])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let status = wait_ended(&mut child, Duration::from_secs(60));
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(status.success(), "the namespace's shell failed ({status}): {stdout}{stderr}");
    let field =
        |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).map(str::to_owned);
    let status = field("status:").and_then(|s| s.parse().ok()).expect("the shell printed the status");
    let left = field("files:").unwrap_or_default();
    println!("small-shm {case}: status {status}, files left [{left}]\n{stdout}{stderr}");
    Some(Run { stdout, stderr, status, left })
}

/// Asserts that the peer ended by itself, well (not killed: 135 is SIGBUS), and left no segment file.
#[track_caller]
fn assert_clean(run: &Run) {
    assert_ne!(run.status, 128 + 7, "the peer was killed by SIGBUS:\n{}{}", run.stdout, run.stderr);
    assert_eq!(run.status, 0, "the peer failed:\n{}{}", run.stdout, run.stderr);
    assert!(run.left.is_empty(), "segment files left in /dev/shm: {}", run.left);
}

/// The line the peer printed for a refused creation.
#[track_caller]
fn refusal(run: &Run) -> &str {
    run.stdout.lines().find_map(|l| l.strip_prefix("refused: ")).unwrap_or_else(|| {
        panic!("the creation was not refused:\n{}{}", run.stdout, run.stderr);
    })
}

#[test]
fn a_server_that_does_not_fit_is_refused_at_bind_and_nobody_dies() {
    let Some(run) = run_small("default") else { return };
    assert_clean(&run);
    let refused = refusal(&run);
    assert!(
        refused.contains("/dev/shm") && refused.contains("bytes") && refused.contains("free"),
        "{refused}"
    );
    assert!(refused.contains("--shm-size"), "no hint on how to make /dev/shm larger: {refused}");
}

#[test]
fn a_segment_larger_than_dev_shm_is_refused_at_creation_and_nothing_is_left() {
    let Some(run) = run_small("large-segment") else { return };
    assert_clean(&run);
    let refused = refusal(&run);
    assert!(refused.contains("/dev/shm") && refused.contains(&(1 << 20).to_string()), "{refused}");
}

#[test]
fn a_server_that_fits_carries_a_message_larger_than_dev_shm() {
    let Some(run) = run_small("fits") else { return };
    assert_clean(&run);
    assert!(run.stdout.contains("streamed"), "{}", run.stdout);
}

#[test]
fn a_fifo_named_like_a_mesh_segment_does_not_hang_a_mesh_bind() {
    let Some(run) = run_small("fifo") else { return };
    assert_ne!(run.status, 128 + 9, "the peer hung and was killed after 40 s:\n{}{}", run.stdout, run.stderr);
    assert_clean(&run);
    assert!(run.stdout.contains("reclaimed 0, bound shm://mesh-0-"), "{}", run.stdout);
}
