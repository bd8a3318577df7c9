//! The non-blocking form of every send, receive and collective: each runs the blocking call's code
//! (on the scope's lane, or at once when it cannot wait), so results and errors are the same.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use bytemuck::Pod;

use super::request::Receiving;
use super::{Request, Scope};
use crate::error::{Error, Result};
use crate::mesh::collectives::buffers::fill;
use crate::mesh::{Buffer, Message, Rank, Reduction, Source, Tag};
use crate::sync::lock;

/// What a request sends from: a slice lent to the scope (`&data`), or data given to it (an array, a
/// `Vec`, computed inside the scope), which it drops once sent.
pub trait SendData<T>: AsRef<[T]> + Send {}

impl<T, S: AsRef<[T]> + Send> SendData<T> for S {}

impl<'s, 'env> Scope<'s, 'env> {
    /// Starts [`Mesh::send`](crate::mesh::Mesh::send). A small message (up to 2 KiB, to a rank of
    /// this node) that its peer's ring has room for now is sent at once, and the request is complete;
    /// any other goes on the scope's send lane, behind the sends started before it. Either way it never waits here, and
    /// it keeps its place among this rank's sends to `to`: a later send to `to` (started or blocking)
    /// goes after it. (With [`Progress::OnWait`](crate::mesh::Progress::OnWait) it is sent at its
    /// start, as [`Mesh::send`](crate::mesh::Mesh::send) sends.) Sends queued behind one to `to` that
    /// timed out fail at once.
    pub fn send<T: Pod>(&self, to: Rank, tag: Tag, data: impl SendData<T> + 's) -> Request<'s, ()> {
        let mesh = self.mesh;
        let job_to = match mesh.job_rank(to) {
            Ok(rank) => rank,
            Err(error) => return Request::done(Err(error)),
        };
        if mesh.job.send_order.clear(job_to) {
            match mesh.send_short(to, tag, bytemuck::cast_slice(data.as_ref())) {
                Ok(true) => return Request::done(Ok(())),
                Ok(false) => {}
                Err(error) => return Request::done(Err(error)),
            }
        }
        if self.sends.on_wait {
            // Nothing would run it before its wait, and a later blocking send to `to` waits for it.
            return Request::done(mesh.send(to, tag, data.as_ref()));
        }
        let queued = mesh.job.send_order.queue(job_to);
        let timed_out = Arc::clone(&self.timed_out);
        self.on_lane(&self.sends, false, move |mesh| {
            // Behind a send to `to` that timed out: `to` takes nothing, and waiting again would make
            // each queued send's error come one deadline after the one before.
            let sent = match lock(&timed_out).contains(&job_to) {
                true => Err(Error::Timeout {
                    op: "send (an earlier send to the rank timed out)",
                    after: mesh.job.config.timeout,
                    peer: Some(mesh.job.describe(job_to)),
                }),
                false => mesh.send_now(to, tag, data.as_ref()),
            };
            if matches!(sent, Err(Error::Timeout { .. })) {
                lock(&timed_out).push(job_to);
            }
            drop(queued);
            sent
        })
    }

    /// Starts [`Mesh::recv`](crate::mesh::Mesh::recv): the receive is posted now, so it takes the
    /// first matching message that arrives from now on (or has arrived), before any receive posted
    /// after it; the wait waits up to the mesh's timeout.
    pub fn recv(&self, from: impl Into<Source>, tag: Tag) -> Request<'s, Message> {
        self.post(from.into(), tag, Box::new(Ok))
    }

    /// Starts [`Mesh::recv_into`](crate::mesh::Mesh::recv_into): posted now; the wait copies the
    /// message into `buffer` and returns its source and length in bytes.
    pub fn recv_into<B: Buffer + ?Sized + Send>(
        &self,
        from: impl Into<Source>,
        tag: Tag,
        buffer: &'s mut B,
    ) -> Request<'s, (Rank, usize)> {
        self.post(
            from.into(),
            tag,
            Box::new(move |message: Message| {
                let len = fill("receive", buffer, message.data())?;
                Ok((message.source(), len))
            }),
        )
    }

    /// Posts a receive whose message `finish` turns into the request's result.
    fn post<T: 's>(
        &self,
        from: Source,
        tag: Tag,
        finish: Box<dyn FnOnce(Message) -> Result<T> + Send + 's>,
    ) -> Request<'s, T> {
        let mesh = self.mesh;
        let posted = match from {
            Source::Rank(rank) => mesh.job_rank(rank).map(Source::Rank),
            Source::Any => Ok(Source::Any),
        }
        .and_then(|job_from| {
            let deadline = Instant::now() + mesh.job.config.timeout;
            Ok((job_from, mesh.job.post((mesh.group.id, tag, job_from), self.id, Some(deadline))?))
        });
        let (job_from, slot) = match posted {
            Ok(posted) => posted,
            Err(error) => return Request::done(Err(error)),
        };
        Request::receive(Receiving {
            job: &mesh.job,
            slot: Arc::clone(&slot),
            from: job_from,
            timeout: mesh.job.config.timeout,
            finish: Some(Box::new(move |incoming| finish(mesh.message(incoming, tag)?))),
            lanes: [Arc::clone(&self.sends), Arc::clone(&self.collectives)],
            counted: true,
        })
    }

    /// Starts [`Mesh::broadcast_into`](crate::mesh::Mesh::broadcast_into).
    pub fn broadcast_into<B: Buffer + ?Sized + Send>(
        &self,
        root: Rank,
        buffer: &'s mut B,
    ) -> Request<'s, usize> {
        self.collective(move |mesh| mesh.broadcast_into(root, buffer))
    }

    /// Starts [`Mesh::scatter_into_root`](crate::mesh::Mesh::scatter_into_root).
    pub fn scatter_into_root<B: Buffer + ?Sized + Send>(
        &self,
        chunks: &'s [&'s [u8]],
        buffer: &'s mut B,
    ) -> Request<'s, usize> {
        self.collective(move |mesh| mesh.scatter_into_root(chunks, buffer))
    }

    /// Starts [`Mesh::scatter_into`](crate::mesh::Mesh::scatter_into).
    pub fn scatter_into<B: Buffer + ?Sized + Send>(
        &self,
        root: Rank,
        buffer: &'s mut B,
    ) -> Request<'s, usize> {
        self.collective(move |mesh| mesh.scatter_into(root, buffer))
    }

    /// Starts [`Mesh::gather_into`](crate::mesh::Mesh::gather_into).
    pub fn gather_into(&self, root: Rank, data: impl SendData<u8> + 's) -> Request<'s, ()> {
        self.collective(move |mesh| mesh.gather_into(root, data.as_ref()))
    }

    /// Starts [`Mesh::gather_into_root`](crate::mesh::Mesh::gather_into_root).
    pub fn gather_into_root(
        &self,
        data: impl SendData<u8> + 's,
        gathered: &'s mut Vec<Vec<u8>>,
    ) -> Request<'s, usize> {
        self.collective(move |mesh| mesh.gather_into_root(data.as_ref(), gathered))
    }

    /// Starts [`Mesh::all_to_all_into`](crate::mesh::Mesh::all_to_all_into).
    pub fn all_to_all_into(
        &self,
        chunks: &'s [&'s [u8]],
        received: &'s mut Vec<Vec<u8>>,
    ) -> Request<'s, usize> {
        self.collective(move |mesh| mesh.all_to_all_into(chunks, received))
    }

    /// Starts [`Mesh::barrier`](crate::mesh::Mesh::barrier).
    pub fn barrier(&self) -> Request<'s, ()> {
        self.collective(|mesh| mesh.barrier())
    }

    /// Starts [`Mesh::all_reduce_into`](crate::mesh::Mesh::all_reduce_into).
    pub fn all_reduce_into<T: Pod + Send + Sync>(
        &self,
        send: impl SendData<T> + 's,
        recv: &'s mut [T],
        op: impl Reduction<T> + Send + 's,
    ) -> Request<'s, ()> {
        self.collective(move |mesh| mesh.all_reduce_into(send.as_ref(), recv, op))
    }

    /// Starts [`Mesh::all_reduce_in_place`](crate::mesh::Mesh::all_reduce_in_place).
    pub fn all_reduce_in_place<T: Pod + Send + Sync>(
        &self,
        data: &'s mut [T],
        op: impl Reduction<T> + Send + 's,
    ) -> Request<'s, ()> {
        self.collective(move |mesh| mesh.all_reduce_in_place(data, op))
    }

    /// Starts [`Mesh::reduce_into_root`](crate::mesh::Mesh::reduce_into_root).
    pub fn reduce_into_root<T: Pod + Send + Sync>(
        &self,
        send: impl SendData<T> + 's,
        recv: &'s mut [T],
        op: impl Reduction<T> + Send + 's,
    ) -> Request<'s, ()> {
        self.collective(move |mesh| mesh.reduce_into_root(send.as_ref(), recv, op))
    }

    /// Starts [`Mesh::reduce_into`](crate::mesh::Mesh::reduce_into).
    pub fn reduce_into<T: Pod + Send + Sync>(
        &self,
        root: Rank,
        send: impl SendData<T> + 's,
        op: impl Reduction<T> + Send + 's,
    ) -> Request<'s, ()> {
        self.collective(move |mesh| mesh.reduce_into(root, send.as_ref(), op))
    }

    /// Starts [`Mesh::reduce_scatter_into`](crate::mesh::Mesh::reduce_scatter_into).
    pub fn reduce_scatter_into<T: Pod + Send + Sync>(
        &self,
        send: impl SendData<T> + 's,
        recv: &'s mut [T],
        op: impl Reduction<T> + Send + 's,
    ) -> Request<'s, ()> {
        self.collective(move |mesh| mesh.reduce_scatter_into(send.as_ref(), recv, op))
    }

    /// Starts [`Mesh::all_gather_into`](crate::mesh::Mesh::all_gather_into).
    pub fn all_gather_into<T: Pod + Send + Sync>(
        &self,
        send: impl SendData<T> + 's,
        recv: &'s mut [T],
    ) -> Request<'s, ()> {
        self.collective(move |mesh| mesh.all_gather_into(send.as_ref(), recv))
    }
}
