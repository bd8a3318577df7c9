//! Which offer a rank's collective call is in, as a word of shared memory. A rank whose buffers others
//! read in place (a broadcast's or scatter's root, a gather's or all-to-all's sender) opens an offer
//! before it tells them where the buffers are, and closes it when its call returns, whatever happened.
//! A rank that copied from those buffers checks, after its copy, that the offer is still open: the
//! holder's buffers then stayed in place through the whole copy, so the copy stands. No message
//! releases the readers, so a call pays no round of wake-ups for it.
//!
//! A process of the same user could write the word, as any of the job's shared memory, and make a
//! reader take a copy as good: the data would be wrong, nothing is read that the descriptor did not
//! name (see the trust notes of the same-node transport).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::Result;
use crate::mesh::types::Rank;
use crate::shm::{FullPtr, Segment, ShmPtr};
use crate::sync::lock;

/// A rank's offer words: its own (its segment made at its first offer) and those of the ranks it
/// copied from, kept mapped.
#[derive(Default)]
pub(crate) struct OfferWords {
    own: Mutex<Option<FullPtr>>,
    others: Mutex<HashMap<Rank, FullPtr>>,
    last: AtomicU64,
}

/// An open offer: where its word is and the offer's number. Dropping it closes the offer.
pub(crate) struct Offer {
    pub(crate) at: ShmPtr,
    pub(crate) id: u64,
    word: FullPtr,
}

impl Drop for Offer {
    fn drop(&mut self) {
        if let Ok(word) = self.word.atomic_u64(0) {
            let _ = word.compare_exchange(self.id, 0, Ordering::Release, Ordering::Relaxed);
        }
    }
}

/// The name of `rank`'s word segment starts so.
pub(crate) fn prefix(token: u64, rank: Rank) -> String {
    format!("{}word-", crate::mesh::segments::segment_prefix(token, rank.0))
}

impl OfferWords {
    /// Opens an offer of `rank`'s, making its word on first use.
    pub(crate) fn open(&self, token: u64, rank: Rank) -> Result<Offer> {
        let mut own = lock(&self.own);
        let word = match own.as_ref() {
            Some(word) => word.clone(),
            None => {
                let name = format!("{}{:016x}", prefix(token, rank), crate::mesh::segments::draw_token());
                let word = Segment::create(&name, 64 << 10)?.allocate(64)?;
                own.insert(word).clone()
            }
        };
        let id = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        word.atomic_u64(0)?.store(id, Ordering::Release);
        Ok(Offer { at: word.shm_ptr(), id, word })
    }

    /// True when `holder`'s offer `id`, whose word is at `at`, is still open. False too when the word
    /// is not `holder`'s (by its segment's name, which starts with `holder_prefix`) or cannot be read.
    pub(crate) fn still_open(&self, holder_prefix: &str, holder: Rank, at: &ShmPtr, id: u64) -> bool {
        if !at.segment.starts_with(holder_prefix) {
            return false;
        }
        let word = {
            let mut others = lock(&self.others);
            match others.get(&holder) {
                Some(word) if word.shm_ptr() == *at => word.clone(),
                _ => match Segment::open(&at.segment).and_then(|s| s.resolve_allocation(at, 8)) {
                    Ok(word) => others.entry(holder).insert_entry(word).get().clone(),
                    Err(_) => return false,
                },
            }
        };
        word.atomic_u64(0).is_ok_and(|word| word.load(Ordering::Acquire) == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_is_open_until_dropped_and_only_under_its_holder_s_name_and_number() {
        let (holder, reader) = (OfferWords::default(), OfferWords::default());
        let token = u64::from(std::process::id()) << 16;
        let (me, other) = (Rank(3), Rank(4));
        let offer = holder.open(token, me).unwrap();
        let open = |at: &ShmPtr, id| reader.still_open(&prefix(token, me), me, at, id);
        assert!(open(&offer.at, offer.id));
        assert!(!open(&offer.at, offer.id + 1), "another offer's number");
        assert!(!reader.still_open(&prefix(token, other), me, &offer.at, offer.id), "another rank's word");
        let (at, id) = (offer.at.clone(), offer.id);
        drop(offer);
        assert!(!open(&at, id), "closed when dropped");
        let next = holder.open(token, me).unwrap();
        assert!(next.id > id && open(&next.at, next.id) && !open(&at, id));
    }
}
