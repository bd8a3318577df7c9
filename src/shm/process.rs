//! Which process created a segment, told apart from a later process that reuses its pid.

#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::path::Path;

/// A process: its pid and its start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`), so
/// that a later process reusing the pid is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    /// 0 when unknown: then the pid alone is compared.
    pub(crate) start: u64,
}

impl Process {
    /// This process.
    pub(crate) fn current() -> Self {
        Self::of(std::process::id())
    }

    /// Process `pid`, with its start time (0 when `/proc` cannot tell).
    pub(crate) fn of(pid: u32) -> Self {
        Self { pid, start: stat(pid).map_or(0, |s| s.start) }
    }

    /// True when the process has ended: no process has its pid, the pid's process is a zombie, or the pid
    /// now belongs to a process started at another time. False when that cannot be told (no `/proc`, or
    /// no pid recorded).
    pub(crate) fn is_gone(&self) -> bool {
        if self.pid == 0 || !Path::new("/proc/self/stat").exists() {
            return false;
        }
        match stat(self.pid) {
            None => true,
            Some(stat) => stat.ended || (self.start != 0 && stat.start != self.start),
        }
    }
}

/// True while the process `pidfd` refers to has not ended (a pidfd polls readable once its process has
/// exited, zombie or reaped); false once it has, or when the poll fails. While it holds, that process
/// still has its pid, so the pid names it and no other.
pub(crate) fn lives(pidfd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::from_borrowed_fd(pidfd, PollFlags::IN)];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    loop {
        match poll(&mut fds, Some(&now)) {
            Ok(ready) => return ready == 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// The inode of this process's pid namespace (0 when `/proc` cannot tell): processes whose pids mean
/// the same thing share it. Containers that share a node's `/dev/shm` may not.
pub(crate) fn pid_namespace() -> u64 {
    std::os::unix::fs::MetadataExt::ino(&match std::fs::metadata("/proc/self/ns/pid") {
        Ok(metadata) => metadata,
        Err(_) => return 0,
    })
}

/// What `/proc/<pid>/stat` tells about a process.
struct Stat {
    start: u64,
    ended: bool,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses itself: the
    // fields from 3 on follow the last ')'.
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?;
    let start = fields.nth(18)?.parse().ok()?; // field 22, after fields 4 to 21
    Some(Stat { start, ended: matches!(state, "Z" | "X" | "x") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lives_and_a_reused_pid_is_told_apart() {
        let me = Process::current();
        assert!(me.start > 0, "no start time read from /proc/self/stat");
        assert!(!me.is_gone());
        assert!(Process { start: me.start + 1, ..me }.is_gone(), "same pid, another start: a reused pid");
        assert!(Process { pid: u32::MAX - 1, start: 1 }.is_gone(), "no such pid");
        assert!(!Process { pid: 0, start: 0 }.is_gone(), "no creator recorded: cannot tell");
    }

    #[test]
    fn a_pidfd_lives_until_its_process_ends() {
        use rustix::process::{pidfd_open, Pid, PidfdFlags};
        let pidfd = |pid: u32| pidfd_open(Pid::from_raw(pid as i32).unwrap(), PidfdFlags::empty()).unwrap();
        assert!(lives(std::os::fd::AsFd::as_fd(&pidfd(std::process::id()))), "this process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_pidfd = pidfd(child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lives(std::os::fd::AsFd::as_fd(&child_pidfd)) {
            assert!(std::time::Instant::now() < deadline, "`true` did not end");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Ended but not reaped: the pid is still its own, and `/proc` still has it (as a zombie).
        assert!(Process::of(child.id()).start > 0);
        child.wait().unwrap();
        assert!(!lives(std::os::fd::AsFd::as_fd(&child_pidfd)), "reaped");
    }
}
