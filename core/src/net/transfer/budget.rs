//! What incoming transfers may make this node hold: streams (each a task, and
//! later open files) per peer and in total, and the bytes of offers nobody has
//! answered yet. Peers nobody trusted get less. Past a bound the stream is
//! refused with a reason the sender shows; everyone else goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::identity::PeerId;
use crate::proto::transfer::receiver::OfferBudget;

/// Incoming transfers (being offered, waiting for an answer or running) one
/// peer nobody trusted may have at once.
pub(crate) const STREAMS_PER_UNTRUSTED_PEER: usize = 4;
/// The same for a trusted peer.
pub(crate) const STREAMS_PER_TRUSTED_PEER: usize = 32;
/// Incoming transfers from all peers together.
pub(crate) const STREAMS_TOTAL: usize = 256;
/// Offer bytes (see [`OfferBudget::cost`]) held for all untrusted peers
/// together: what strangers can make the node hold before anyone answers.
pub(crate) const UNTRUSTED_OFFER_BYTES: u64 = 32 << 20;
/// Offer bytes held for all peers together.
pub(crate) const OFFER_BYTES: u64 = 160 << 20;

#[derive(Debug, Default)]
struct Inner {
    per_peer: HashMap<PeerId, usize>,
    streams: usize,
    untrusted_bytes: u64,
    bytes: u64,
}

/// The shared counters; [`Slot`]s give back what they took when dropped.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    inner: Mutex<Inner>,
}

/// One admitted incoming stream, and the offer bytes it holds.
#[derive(Debug)]
pub(crate) struct Slot {
    budget: Arc<Budget>,
    peer: PeerId,
    trusted: bool,
    bytes: u64,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one more incoming stream from `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: PeerId, trusted: bool) -> Result<Slot, String> {
        let mut g = self.lock();
        let per_peer = if trusted {
            STREAMS_PER_TRUSTED_PEER
        } else {
            STREAMS_PER_UNTRUSTED_PEER
        };
        let mine = g.per_peer.get(&peer).copied().unwrap_or(0);
        if mine >= per_peer {
            return Err(format!(
                "you already have {mine} transfers to this receiver open; it takes {per_peer} at once{}",
                if trusted {
                    ""
                } else {
                    " from a peer it has not trusted"
                }
            ));
        }
        if g.streams >= STREAMS_TOTAL {
            return Err(format!(
                "the receiver has {STREAMS_TOTAL} transfers open; try again later"
            ));
        }
        g.streams += 1;
        *g.per_peer.entry(peer).or_default() += 1;
        Ok(Slot {
            budget: self.clone(),
            peer,
            trusted,
            bytes: 0,
        })
    }

    /// Offer bytes held now (untrusted peers', everyone's), for tests.
    #[cfg(test)]
    pub fn held(&self) -> (u64, u64) {
        let g = self.lock();
        (g.untrusted_bytes, g.bytes)
    }
}

impl Slot {
    /// The budget one offer on this stream is read against.
    pub fn offer_budget(&self) -> OfferBudget {
        if self.trusted {
            OfferBudget::TRUSTED
        } else {
            OfferBudget::UNTRUSTED
        }
    }

    /// Grows what this stream's offer holds to `bytes`, or says why not.
    pub fn hold(&mut self, bytes: u64) -> Result<(), String> {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        let mut g = self.budget.lock();
        if g.bytes + more > OFFER_BYTES
            || (!self.trusted && g.untrusted_bytes + more > UNTRUSTED_OFFER_BYTES)
        {
            return Err(
                "the receiver holds too many unanswered offers; try again later".to_string(),
            );
        }
        g.bytes += more;
        if !self.trusted {
            g.untrusted_bytes += more;
        }
        self.bytes = bytes;
        Ok(())
    }
}

/// Offers at least this big give their memory back to the OS when they end.
const TRIM_AFTER: u64 = 1 << 20;

/// Hands the allocator's free memory back to the OS: glibc keeps the heap a
/// big refused offer grew (tens of MB a hostile peer chose), otherwise.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.bytes >= TRIM_AFTER {
            trim();
        }
        let mut g = self.budget.lock();
        g.streams -= 1;
        g.bytes -= self.bytes;
        if !self.trusted {
            g.untrusted_bytes -= self.bytes;
        }
        if let Some(n) = g.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                g.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::from_bytes([n; 32])
    }

    #[test]
    fn streams_are_bounded_per_peer_and_given_back() {
        let b = Arc::new(Budget::default());
        let held: Vec<Slot> = (0..STREAMS_PER_UNTRUSTED_PEER)
            .map(|_| b.admit(peer(1), false).unwrap())
            .collect();
        let err = b.admit(peer(1), false).unwrap_err();
        assert!(err.contains("not trusted"), "{err}");
        // Someone else still gets in, and a trusted peer gets more.
        let other = b.admit(peer(2), false).unwrap();
        assert!(b.admit(peer(3), true).is_ok());
        drop(held);
        drop(other);
        assert!(b.admit(peer(1), false).is_ok());
    }

    /// Issue 14, H1 (a receive task per incoming stream, no cap in total):
    /// many peers together hold at most [`STREAMS_TOTAL`] streams, trusted
    /// ones included; a stream that ends makes room for the next.
    #[test]
    fn streams_are_bounded_in_total_whoever_opens_them() {
        let b = Arc::new(Budget::default());
        let mut held = Vec::new();
        let mut refused = None;
        for i in 0..=STREAMS_TOTAL {
            // Each peer up to its own cap, so only the total can stop them.
            match b.admit(peer((i / STREAMS_PER_TRUSTED_PEER) as u8), true) {
                Ok(s) => held.push(s),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let err = refused.expect("more streams admitted than the total allows");
        assert_eq!(held.len(), STREAMS_TOTAL);
        assert!(err.contains("try again later"), "{err}");
        assert!(
            b.admit(peer(250), false).is_err(),
            "a stranger past the total"
        );
        held.pop();
        assert!(b.admit(peer(250), false).is_ok());
    }

    #[test]
    fn untrusted_offer_bytes_are_bounded_in_total_and_given_back() {
        let b = Arc::new(Budget::default());
        let mut slots = Vec::new();
        let each = OfferBudget::UNTRUSTED.bytes;
        let mut n = 0u8;
        let err = loop {
            let mut s = b.admit(peer(n), false).unwrap();
            n += 1;
            match s.hold(each) {
                Ok(()) => slots.push(s),
                Err(e) => break e,
            }
        };
        assert!(err.contains("too many unanswered offers"), "{err}");
        assert!(b.held().0 <= UNTRUSTED_OFFER_BYTES);
        // A trusted peer's offer is not crowded out by strangers'.
        let mut t = b.admit(peer(200), true).unwrap();
        t.hold(each).unwrap();
        drop(slots);
        drop(t);
        assert_eq!(b.held(), (0, 0));
    }
}
