//! Files that any local user can put in /dev/shm (mode 1777) under a segment's name: a FIFO, a symbolic
//! link, a file of their own. No open of a segment blocks or follows a link; a file that is not a regular
//! file of this process's user is refused with an error naming it, and stale-segment cleanup skips it:
//! it is never read, never removed, and never fails a bind. Every call that could hang runs on a thread
//! of its own, so that a hang fails the test instead of stopping it.
//!
//! The names planted here are unique to this test process, so that no other job's bind or cleanup on
//! the node meets them; `tests/shm_small_tmpfs.rs` plants a mesh's name in a private /dev/shm.

mod util;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use lightbeam::shm::{Segment, ShmError, ShmPtr};
use lightbeam::{
    Client, Error, LbmMeta, Options, Server, SharedMemoryClient, SharedMemoryServer, ShmOptions,
};
use util::{leave_stale_segment, WAIT};

/// The file of segment `name`.
fn path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(format!("lightbeam-{name}"))
}

/// A name unique to this test process and `what`.
fn unique(what: &str) -> String {
    format!("hostile-{what}-{}", std::process::id())
}

/// A file planted by the test, removed when dropped.
struct Planted(PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A FIFO at `at`, mode 0666, as any user can make one.
#[track_caller]
fn mkfifo(at: &Path) -> Planted {
    let made = Command::new("mkfifo").arg("-m").arg("0666").arg(at).status().unwrap();
    assert!(made.success(), "mkfifo {}", at.display());
    Planted(at.to_owned())
}

/// A symbolic link at `at` to `target`.
#[track_caller]
fn symlink(target: &Path, at: &Path) -> Planted {
    std::os::unix::fs::symlink(target, at).unwrap();
    Planted(at.to_owned())
}

/// Runs `call` on a thread of its own and returns what it returned; fails the test if it has not
/// returned within [`WAIT`] (the thread then stays blocked until the test process ends).
#[track_caller]
fn promptly<T: Send + 'static>(what: &str, call: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, returned) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(call()));
    returned.recv_timeout(WAIT).unwrap_or_else(|_| panic!("{what} did not return within {WAIT:?}: it hangs"))
}

/// A small server's shape.
fn small() -> ShmOptions {
    ShmOptions::default().with_channels(1).with_ring_size(64 << 10)
}

/// A send to the server at segment `name`, with a send timeout of half [`WAIT`].
fn send_to(name: &str) -> lightbeam::Result<usize> {
    let options = Options::default().with_send_timeout(Some(WAIT / 2));
    let client = SharedMemoryClient::connect(name, "shm", 0, &options, &small())?;
    client.send(&LbmMeta::new(())).into_result()
}

/// Asserts that `error` refuses the file of segment `name` as not a regular file, naming it and `kind`.
#[track_caller]
fn assert_not_a_file(error: &Error, name: &str, kind: &str) {
    assert!(matches!(error, Error::Shm(ShmError::NotAFile { .. })), "{error}");
    let message = error.to_string();
    assert!(message.contains(&path(name).display().to_string()) && message.contains(kind), "{message}");
}

#[test]
fn a_fifo_named_like_a_segment_hangs_nothing_and_is_left_alone() {
    let base = unique("fifo");
    let _exact = mkfifo(&path(&base));
    // Named as a dead server's segment of `base` bound with port 0, which every such bind cleans up.
    let leftover = format!("{base}-0123456789abcdef");
    let _leftover = mkfifo(&path(&leftover));

    let matching = base.clone();
    let reclaim = move || Segment::reclaim_stale_where(move |name| name.starts_with(&matching));
    assert_eq!(promptly("Segment::reclaim_stale_where", reclaim).unwrap(), 0);
    let name = base.clone();
    let error = promptly("Segment::open", move || Segment::open(&name)).unwrap_err();
    assert_not_a_file(&error, &base, "FIFO");
    let name = base.clone();
    let error = promptly("Segment::create_reclaiming", move || Segment::create_reclaiming(&name, 64 << 10));
    assert_not_a_file(&error.unwrap_err(), &base, "FIFO");
    let name = base.clone();
    let error = promptly("Segment::create", move || Segment::create(&name, 64 << 10)).unwrap_err();
    assert_not_a_file(&error, &base, "FIFO");
    let pointer = ShmPtr { segment: base.clone(), offset: 128 };
    let error = promptly("ShmPtr::open_allocation", move || pointer.open_allocation(8)).unwrap_err();
    assert_not_a_file(&error, &base, "FIFO");
    let name = base.clone();
    let bind = move || SharedMemoryServer::bind(&name, "shm", 0, &Options::default(), &small());
    let server = promptly("SharedMemoryServer::bind", bind).unwrap();
    assert!(server.address().starts_with(&format!("shm://{base}-")), "{}", server.address());
    let name = leftover.clone();
    let error = promptly("a send to a SharedMemoryClient", move || send_to(&name)).unwrap_err();
    assert_not_a_file(&error, &leftover, "FIFO");

    for name in [&base, &leftover] {
        let kind = std::fs::symlink_metadata(path(name)).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO {name} was removed or replaced");
    }
}

#[test]
fn a_symbolic_link_named_like_a_segment_is_refused_and_never_followed() {
    let target = Segment::create(&unique("link-target"), 64 << 10).unwrap();
    let link = unique("link");
    let _link = symlink(&path(target.name()), &path(&link));
    let error = Segment::open(&link).unwrap_err();
    assert_not_a_file(&error, &link, "symbolic link");
    let error = ShmPtr { segment: link.clone(), offset: 128 }.open_allocation(8).unwrap_err();
    assert_not_a_file(&error, &link, "symbolic link");

    // A link to a FIFO elsewhere: following it would block.
    let fifo = mkfifo(&std::env::temp_dir().join(unique("fifo-elsewhere")));
    let to_fifo = unique("link-to-fifo");
    let _to_fifo = symlink(&fifo.0, &path(&to_fifo));
    let matching = to_fifo.clone();
    let reclaim = move || Segment::reclaim_stale_where(move |name| name == matching);
    assert_eq!(promptly("Segment::reclaim_stale_where", reclaim).unwrap(), 0);
    let name = to_fifo.clone();
    let error = promptly("Segment::create_reclaiming", move || Segment::create_reclaiming(&name, 64 << 10));
    assert_not_a_file(&error.unwrap_err(), &to_fifo, "symbolic link");
    let name = to_fifo.clone();
    let error = promptly("Segment::open", move || Segment::open(&name)).unwrap_err();
    assert_not_a_file(&error, &to_fifo, "symbolic link");

    for name in [&link, &to_fifo] {
        let kind = std::fs::symlink_metadata(path(name)).unwrap().file_type();
        assert!(kind.is_symlink(), "the link {name} was removed or replaced");
    }
    assert_eq!(Segment::open(target.name()).unwrap().size(), 64 << 10, "the target is untouched");
}

/// Whether this process runs as root (which can hand a file to another user).
fn root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn a_stale_segment_of_another_user_is_neither_opened_nor_removed() {
    if !root() {
        println!("SKIPPED: handing a segment file to another user (uid 65534) needs root");
        return;
    }
    let name = unique("foreign");
    // A formatted segment whose creator is gone: stale, and ours to remove were it ours.
    leave_stale_segment(&name);
    let planted = Planted(path(&name));
    std::os::unix::fs::chown(&planted.0, Some(65534), Some(65534)).unwrap();

    let refused = |error: &Error| {
        assert!(matches!(error, Error::Shm(ShmError::ForeignOwner { owner: 65534, ours: 0, .. })), "{error}");
        let message = error.to_string();
        let named = message.contains(&planted.0.display().to_string());
        assert!(named && message.contains("65534") && message.contains("uid 0"), "{message}");
    };
    assert!(!Segment::reclaim_stale(&name).unwrap(), "another user's file was removed");
    let matching = name.clone();
    assert_eq!(Segment::reclaim_stale_where(|other| other == matching).unwrap(), 0);
    refused(&Segment::open(&name).unwrap_err());
    refused(&Segment::create_reclaiming(&name, 64 << 10).unwrap_err());
    refused(&Segment::create(&name, 64 << 10).unwrap_err());
    refused(&ShmPtr { segment: name.clone(), offset: 128 }.open_allocation(8).unwrap_err());
    refused(&send_to(&name).unwrap_err());

    let metadata = std::fs::symlink_metadata(&planted.0).expect("another user's file was removed");
    assert_eq!((metadata.uid(), metadata.len()), (65534, 1 << 20), "another user's file was changed");
}
