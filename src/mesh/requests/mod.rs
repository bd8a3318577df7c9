//! Non-blocking calls: every send, receive and collective can start in a [`Scope`] and return a
//! [`Request`] at once, to wait for later ([`Request::wait`], [`wait_all`], [`wait_any`]), to test
//! ([`Request::test`]) or to `.await`; the caller computes meanwhile.
//!
//! ```no_run
//! use lightbeam::mesh::{Mesh, Op, Rank, Tag};
//! # #[allow(dead_code)]
//! # fn step(mesh: &Mesh, edge: &[f64], halo: &mut [f64], interior: &mut [f64]) -> lightbeam::Result<()> {
//! let right = Rank((mesh.rank().0 + 1) % mesh.size());
//! let left = Rank((mesh.rank().0 + mesh.size() - 1) % mesh.size());
//! let mut global = [0.0f64];
//! mesh.scope(|s| {
//!     let halo_in = s.recv_into(left, Tag(1), halo);
//!     let edge_out = s.send(right, Tag(1), edge);
//!     interior.iter_mut().for_each(|x| *x *= 0.5); // computes while the halo moves
//!     halo_in.wait()?;
//!     edge_out.wait()?;
//!     let local = [interior.iter().sum::<f64>()]; // computed here: given away, not lent
//!     s.all_reduce_into(local, &mut global, Op::Sum).wait()
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! **Buffers.** A request borrows its buffers until its scope returns: touching one before is a
//! compile error, and the scope waits for every send and collective started in it before it returns
//! (a receive writes into its buffer only in its wait), so no transfer can write into memory that safe
//! code has since freed or reused, even when a request is forgotten with `std::mem::forget` (the way
//! `std::thread::scope` keeps its threads' borrows sound). Data to send may also be given (an array
//! or a `Vec`, see [`SendData`]), which is how a value computed inside the scope is sent. Use a scope
//! per step of a loop, or start everything of a phase in one scope: a scope that runs a collective
//! or a send that cannot go at once starts a thread for it (its lane), which costs tens of
//! microseconds, and hundreds where ranks outnumber cores.
//!
//! The compiler enforces it. A buffer lent to a request cannot be read or written in the scope:
//!
//! ```compile_fail,E0499
//! # use lightbeam::mesh::{Mesh, Rank, Tag};
//! # fn f(mesh: &Mesh) -> lightbeam::Result<()> {
//! let mut halo = vec![0.0f64; 1024];
//! mesh.scope(|s| {
//!     let request = s.recv_into(Rank(0), Tag(1), &mut halo);
//!     halo[0] = 1.0; // error: `halo` is lent to the request until the scope returns
//!     request.wait().map(drop)
//! })
//! # }
//! ```
//!
//! nor dropped, nor moved away while lent:
//!
//! ```compile_fail,E0505
//! # use lightbeam::mesh::{Mesh, Rank, Tag};
//! # fn f(mesh: &Mesh) -> lightbeam::Result<()> {
//! let mut halo = vec![0.0f64; 1024];
//! mesh.scope(|s| {
//!     let request = s.recv_into(Rank(0), Tag(1), &mut halo);
//!     drop(halo); // error: cannot move out of `halo` while it is lent
//!     request.wait().map(drop)
//! })
//! # }
//! ```
//!
//! A request cannot leave its scope (so its borrow cannot outlive the scope's wait for it), and the
//! mesh cannot be dropped while a scope runs on it:
//!
//! ```compile_fail
//! # use lightbeam::mesh::Mesh;
//! # fn f(mesh: &Mesh) {
//! let request = mesh.scope(|s| s.barrier()); // error: the request would escape its scope
//! # }
//! ```
//!
//! ```compile_fail,E0505
//! # use lightbeam::mesh::Mesh;
//! # fn f(mesh: Mesh) -> lightbeam::Result<()> {
//! mesh.scope(|s| {
//!     let request = s.barrier();
//!     drop(mesh); // error: cannot move out of `mesh` while the scope borrows it
//!     request.wait()
//! })
//! # }
//! ```
//!
//! **Order.** Collectives of a mesh run in the order they were called, started or blocking, from
//! whichever thread: every rank must call them in one order, as with MPI. This rank's messages to one
//! rank go in the order their sends were called, started or blocking (a blocking send waits for the
//! started sends to that rank still on a lane); receives are matched in the order they were posted
//! (blocking ones included). So messages from one rank with one tag are received in the order they
//! were sent, as MPI promises.
//!
//! **Progress.** What advances while the caller computes and calls nothing:
//! - a small send (up to 2 KiB to a rank of
//!   this node, while its ring has room) is copied into the peer's ring at its start and is complete;
//! - every other send runs on the scope's *send lane*, and every collective on its *collective lane*:
//!   a thread each per scope (not per request), started by the first operation that needs it, that
//!   runs its operations one after another in the order they were started. A lane waits for peers
//!   as a blocking call does (a short spin, then asleep) and sleeps while it has nothing to do; peers
//!   read in place from this rank's buffers meanwhile. A send never waits behind a collective, nor a
//!   collective behind a send; a thread that waits for a request runs the operations queued before it
//!   when the lane's thread is not running one;
//! - a message sent to a posted receive lands in this rank's ring (from this node) or the bridge
//!   thread's queue (from other nodes) without this rank's help. A peer's send of 512 KiB
//!   ([`EAGER_BELOW`](super::EAGER_BELOW)) or more waits for this rank to take it in (to copy it from
//!   the sender's memory): a lane of the scope does so while receives are not waited on and it has
//!   nothing to run (a receive awaited as a future starts one), else the wait or a test does. A scope
//!   of receives and small sends starts no thread.
//!
//! What needs a wait or a test: copying a received message into the buffer of
//! [`Scope::recv_into`] (done by the wait), and reporting errors.
//! [`Progress::OnWait`] starts no lane: sends go at their start (waiting as the blocking send does),
//! collectives run when a wait runs them, and blocking calls run none of them.
//!
//! **Errors** are those of the blocking calls, reported by the wait. A receive fails once the mesh's
//! timeout has passed since it was started, whichever way it is waited for, and at once when a rank is
//! known lost; a send or a collective within its own deadline, counted from when its lane began to run
//! it, and sends queued behind a send that timed out to the same rank fail at once. A rank lost while
//! requests are in flight fails each of them, naming it. A receive dropped without a wait is withdrawn:
//! a message it already took goes to the next receive that matches it.

#![forbid(unsafe_code)]

mod calls;
mod lane;
mod request;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use self::calls::SendData;
use self::lane::{Lane, Spawn, Unwaited};
pub use self::request::{wait_all, wait_any, Request};
use super::{Job, Mesh, Rank};
use crate::error::Result;
use crate::sync::{lock, Completion};

/// Tells the scopes of the process apart (0 is no scope: blocking receives).
static SCOPES: AtomicU64 = AtomicU64::new(1);

/// Where non-blocking calls start (see [`Mesh::scope`]). It may be shared by the threads the scope's
/// closure starts.
pub struct Scope<'s, 'env: 's> {
    mesh: &'env Mesh,
    /// Runs the scope's collectives, in the order they were called.
    collectives: Arc<Lane<'s>>,
    /// Runs the scope's sends that cannot go at once, in the order they were started.
    sends: Arc<Lane<'s>>,
    /// The ranks (of the job) a send of the scope's timed out to.
    timed_out: Arc<Mutex<Vec<Rank>>>,
    id: u64,
}

/// Who runs a scope's sends and collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// The scope's lanes: a thread for its collectives and one for its sends, each started by the
    /// first operation that needs it, run them in order while the caller computes (the default).
    #[default]
    Lane,
    /// The thread that waits for one of them runs every operation queued on its lane (in order,
    /// later ones included); nothing moves in between, and blocking calls run none of them. No thread
    /// is started, and receives are taken in only by waits and tests. A collective takes its place in
    /// the mesh's order when a wait runs it, so a blocking collective called between its start and its
    /// wait runs first: every rank must use the same progress.
    OnWait,
}

impl Mesh {
    /// Runs `body` with a [`Scope`] to start non-blocking calls in, and returns its result once every
    /// send and collective started in it has completed (waited for or not; receives not waited for are
    /// withdrawn); its operations progress as
    /// [`MeshConfig::progress`](super::MeshConfig::progress) says. See [the module](crate::mesh::requests)
    /// for what progresses on its own.
    pub fn scope<'env, R>(&'env self, body: impl for<'s> FnOnce(&Scope<'s, 'env>) -> R) -> R {
        self.scope_with(self.job.config.progress, body)
    }

    /// As [`Mesh::scope`], with its operations progressing as `progress` says.
    pub fn scope_with<'env, R>(
        &'env self,
        progress: Progress,
        body: impl for<'s> FnOnce(&Scope<'s, 'env>) -> R,
    ) -> R {
        std::thread::scope(|threads| {
            let on_wait = progress == Progress::OnWait;
            let (spawn, unwaited) = (Arc::new(spawner(threads, &self.job)), Arc::new(Unwaited::default()));
            let lane = || Arc::new(Lane::new(on_wait, Arc::clone(&spawn), Arc::clone(&unwaited)));
            let scope = Scope {
                mesh: self,
                collectives: lane(),
                sends: lane(),
                timed_out: Arc::default(),
                id: SCOPES.fetch_add(1, Ordering::Relaxed),
            };
            body(&scope)
            // Dropping the scope closes its lanes; `std::thread::scope` then waits for them.
        })
    }
}

impl<'s, 'env> Scope<'s, 'env> {
    /// The mesh the scope's calls run on.
    pub fn mesh(&self) -> &'env Mesh {
        self.mesh
    }

    /// Runs `call` on `lane`, after every operation queued there before it; the request gets its
    /// result. A collective (`ticketed`) takes its place in the mesh's order as it is queued.
    fn on_lane<T: Send + 's>(
        &self,
        lane: &Arc<Lane<'s>>,
        ticketed: bool,
        call: impl FnOnce(&'env Mesh) -> Result<T> + Send + 's,
    ) -> Request<'s, T> {
        let completion = Arc::new(Completion::default());
        let setter = Setter(Arc::clone(&completion));
        let mesh = self.mesh;
        lane.queue(|| {
            let ticket = ticketed.then(|| mesh.turns.ticket());
            Box::new(move || {
                setter.set(match ticket {
                    Some(ticket) => mesh.turns.with_ticket(ticket, || call(mesh)),
                    None => call(mesh),
                })
            })
        });
        Lane::start(lane, &mesh.job);
        Request::on_lane(completion, Arc::clone(lane))
    }

    /// Runs collective `call` on the collectives' lane: it runs after every collective of the mesh
    /// called before this one. (On wait, it takes its turn when a wait runs it: a blocking collective
    /// called meanwhile, which waits for every earlier turn, goes first, on every rank alike.)
    fn collective<T: Send + 's>(
        &self,
        call: impl FnOnce(&'env Mesh) -> Result<T> + Send + 's,
    ) -> Request<'s, T> {
        self.on_lane(&self.collectives, !self.collectives.on_wait, call)
    }
}

impl Drop for Scope<'_, '_> {
    fn drop(&mut self) {
        for lane in [&self.collectives, &self.sends] {
            lane.close();
            if lane.on_wait {
                lane.run_queued_here(); // what no wait ran, forgotten requests' included
            }
        }
        lock(&self.mesh.job.matching).unpost_owned_by(self.id);
    }
}

/// How a lane's thread starts in `threads`, once something needs it.
fn spawner<'s, 'env: 's>(threads: &'s std::thread::Scope<'s, 'env>, job: &'env Job) -> Spawn<'s> {
    Box::new(move |lane: Arc<Lane<'s>>| {
        std::thread::Builder::new()
            .name("lightbeam-lane".into())
            .spawn_scoped(threads, move || lane.run(job))
            .map(drop)
    })
}

/// Sets a lane operation's result; dropped unset (its operation panicked), it sets an error.
struct Setter<T>(Arc<Completion<Result<T>>>);

impl<T> Setter<T> {
    fn set(self, result: Result<T>) {
        self.0.set(result);
    }
}

impl<T> Drop for Setter<T> {
    fn drop(&mut self) {
        if !self.0.is_set() {
            self.0.set(Err(crate::Error::Mesh("the operation panicked".into())));
        }
    }
}
