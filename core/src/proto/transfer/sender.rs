//! The sending side of a transfer stream: checks the receiver's answer, its
//! resume claims and its per-file replies against what was sent.
//!
//! The driver reads files and writes frames on its own schedule and reports
//! each file it starts and ends ([`State::on_started`], [`State::on_ended`]);
//! replies must name files in travel order (the order the driver started
//! them: entry order for the native sender, the client's order for a
//! LocalSend upload), and only files already started
//! (a `FileOk` only for files fully sent). The transfer is complete when the
//! receiver's `Summary` agrees with the replies it sent.

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::{Manifest, ranges_to_mask};
use super::message::{ToSender, check_reason};
use super::resume::Proof;
use super::{ProtocolError, short_reason};

/// What the receiver claims to hold of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A prefix, proven chunk by chunk.
    Chunks(Proof),
    /// The whole file, with this hash.
    Whole([u8; 32]),
}

/// The receiver's answer to the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Read more proofs before sending.
    Continue,
    /// Go: the selection and claims are complete.
    Accepted,
    Rejected(String),
}

/// A reply during the data phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    FileOk(u32),
    FileFailed(u32, String),
    /// The receiver's summary matched: the transfer is over.
    Complete {
        ok: u32,
        failed: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Answer,
    Proofs(u32),
    Data,
    Complete,
}

/// The sender's view of one transfer stream.
#[derive(Debug)]
pub struct State {
    phase: Phase,
    sizes: Vec<Option<u64>>,
    selected: Vec<bool>,
    files: Vec<u32>,
    claims: BTreeMap<u32, Claim>,
    /// Files started (or skipped before starting), in travel order.
    travel: Vec<u32>,
    ended: BTreeSet<u32>,
    answered: usize,
    ok: u32,
    failed: u32,
    done_sent: bool,
}

impl State {
    pub fn new(manifest: &Manifest) -> Self {
        Self {
            phase: Phase::Answer,
            sizes: manifest.entries().iter().map(|e| e.size()).collect(),
            selected: Vec::new(),
            files: Vec::new(),
            claims: BTreeMap::new(),
            travel: Vec::new(),
            ended: BTreeSet::new(),
            answered: 0,
            ok: 0,
            failed: 0,
            done_sent: false,
        }
    }

    /// Checks the answer and the proofs after it.
    pub fn on_answer(&mut self, msg: ToSender) -> Result<Answer, ProtocolError> {
        let got = msg.name();
        match (self.phase, msg) {
            (Phase::Answer, ToSender::Reject { reason }) => {
                check_reason(&reason)?;
                self.phase = Phase::Complete;
                Ok(Answer::Rejected(reason))
            }
            (Phase::Answer, ToSender::Accept { selected, proofs }) => {
                self.selected = ranges_to_mask(&selected, self.sizes.len())?;
                self.files = (0..self.sizes.len())
                    .filter(|&i| self.selected[i] && self.sizes[i].is_some())
                    .map(|i| i as u32)
                    .collect();
                if proofs as usize > self.files.len() {
                    return Err(ProtocolError::Invalid(format!(
                        "{proofs} resume proofs for {} files",
                        self.files.len()
                    )));
                }
                Ok(self.after_proof(proofs))
            }
            (
                Phase::Proofs(left),
                ToSender::Resume {
                    index,
                    chunk,
                    hashes,
                },
            ) => {
                let size = self.claimable(index)?;
                let proof = Proof::new(size, chunk, hashes)?;
                self.claims.insert(index, Claim::Chunks(proof));
                Ok(self.after_proof(left - 1))
            }
            (Phase::Proofs(left), ToSender::Have { index, blake3 }) => {
                self.claimable(index)?;
                self.claims.insert(index, Claim::Whole(blake3));
                Ok(self.after_proof(left - 1))
            }
            (_, _) => Err(ProtocolError::Unexpected {
                got,
                expected: "waiting for the answer to the offer",
            }),
        }
    }

    fn claimable(&self, index: u32) -> Result<u64, ProtocolError> {
        let size = self
            .sizes
            .get(index as usize)
            .copied()
            .flatten()
            .filter(|_| self.selected[index as usize])
            .ok_or_else(|| ProtocolError::File {
                index,
                what: "claimed but not a selected file".into(),
            })?;
        if self.claims.contains_key(&index) {
            return Err(ProtocolError::File {
                index,
                what: "claimed twice".into(),
            });
        }
        Ok(size)
    }

    fn after_proof(&mut self, left: u32) -> Answer {
        if left == 0 {
            self.phase = Phase::Data;
            Answer::Accepted
        } else {
            self.phase = Phase::Proofs(left);
            Answer::Continue
        }
    }

    /// Selected files (entry indices), in the order they travel.
    pub fn files(&self) -> &[u32] {
        &self.files
    }

    /// The selection mask over the manifest's entries.
    pub fn selected(&self) -> &[bool] {
        &self.selected
    }

    /// The receiver's claims, taken by the driver (which verifies them).
    pub fn take_claims(&mut self) -> BTreeMap<u32, Claim> {
        std::mem::take(&mut self.claims)
    }

    /// The driver wrote `Start` (or a `Skip` before starting) for `index`, a
    /// selected file not started before.
    pub fn on_started(&mut self, index: u32) {
        debug_assert!(self.files.binary_search(&index).is_ok());
        self.travel.push(index);
    }

    /// The driver wrote `End` for `index`.
    pub fn on_ended(&mut self, index: u32) {
        self.ended.insert(index);
    }

    /// The driver wrote `Done`.
    pub fn on_done_sent(&mut self) {
        self.done_sent = true;
    }

    /// Checks a reply of the data phase.
    pub fn on_reply(&mut self, msg: ToSender) -> Result<Reply, ProtocolError> {
        let got = msg.name();
        if self.phase != Phase::Data {
            return Err(ProtocolError::Unexpected {
                got,
                expected: "not sending files",
            });
        }
        match msg {
            ToSender::FileOk { index } => {
                self.expect_answer(index)?;
                if !self.ended.remove(&index) {
                    return Err(ProtocolError::File {
                        index,
                        what: "reported received before it was sent".into(),
                    });
                }
                self.answered += 1;
                self.ok += 1;
                Ok(Reply::FileOk(index))
            }
            ToSender::FileFailed { index, reason } => {
                check_reason(&reason)?;
                self.expect_answer(index)?;
                self.ended.remove(&index);
                self.answered += 1;
                self.failed += 1;
                Ok(Reply::FileFailed(index, short_reason(reason)))
            }
            ToSender::Summary { ok, failed } => {
                if !self.done_sent || self.answered != self.files.len() {
                    return Err(ProtocolError::Invalid(format!(
                        "summary after {} of {} replies",
                        self.answered,
                        self.files.len()
                    )));
                }
                if (ok, failed) != (self.ok, self.failed) {
                    return Err(ProtocolError::Invalid(format!(
                        "summary says {ok} ok and {failed} failed, replies said {} and {}",
                        self.ok, self.failed
                    )));
                }
                self.phase = Phase::Complete;
                Ok(Reply::Complete { ok, failed })
            }
            _ => Err(ProtocolError::Unexpected {
                got,
                expected: "sending files",
            }),
        }
    }

    fn expect_answer(&self, index: u32) -> Result<(), ProtocolError> {
        if self.answered >= self.travel.len() {
            return Err(ProtocolError::File {
                index,
                what: "answered before it was sent".into(),
            });
        }
        match self.travel.get(self.answered) {
            Some(&want) if want == index => Ok(()),
            _ => Err(ProtocolError::File {
                index,
                what: "answered out of order".into(),
            }),
        }
    }

    /// Whether the receiver's summary arrived.
    pub fn is_complete(&self) -> bool {
        self.phase == Phase::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::transfer::Entry;
    use crate::proto::transfer::resume::MIN_CHUNK;

    fn manifest() -> Manifest {
        Manifest::new(vec![
            Entry::dir("d"),
            Entry::file("d/a", 3 * MIN_CHUNK),
            Entry::file("d/b", 1),
            Entry::file("c", 2),
        ])
        .unwrap()
    }

    #[test]
    fn answer_then_proofs_then_replies_in_order() {
        let m = manifest();
        let mut s = State::new(&m);
        assert_eq!(
            s.on_answer(ToSender::Accept {
                selected: vec![(0, 3)],
                proofs: 2,
            })
            .unwrap(),
            Answer::Continue
        );
        assert_eq!(s.files(), [1, 2]);
        s.on_answer(ToSender::Resume {
            index: 1,
            chunk: MIN_CHUNK,
            hashes: vec![[0; 32]],
        })
        .unwrap();
        assert_eq!(
            s.on_answer(ToSender::Have {
                index: 2,
                blake3: [1; 32]
            })
            .unwrap(),
            Answer::Accepted
        );
        assert_eq!(s.take_claims().len(), 2);
        // a reply before the file was sent is a lie
        assert!(s.on_reply(ToSender::FileOk { index: 1 }).is_err());
        s.on_started(1);
        s.on_ended(1);
        s.on_started(2);
        assert_eq!(
            s.on_reply(ToSender::FileFailed {
                index: 1,
                reason: "x".into()
            })
            .unwrap(),
            Reply::FileFailed(1, "x".into())
        );
        // file 2 was started but not ended: it cannot be ok yet
        assert!(s.on_reply(ToSender::FileOk { index: 2 }).is_err());
    }

    #[test]
    fn summary_must_match_the_replies() {
        let m = manifest();
        let mut s = State::new(&m);
        s.on_answer(ToSender::Accept {
            selected: vec![(3, 4)],
            proofs: 0,
        })
        .unwrap();
        s.on_started(3);
        s.on_ended(3);
        assert!(s.on_reply(ToSender::Summary { ok: 1, failed: 0 }).is_err());
        s.on_reply(ToSender::FileOk { index: 3 }).unwrap();
        s.on_done_sent();
        assert!(s.on_reply(ToSender::Summary { ok: 0, failed: 1 }).is_err());
        assert_eq!(
            s.on_reply(ToSender::Summary { ok: 1, failed: 0 }).unwrap(),
            Reply::Complete { ok: 1, failed: 0 }
        );
        assert!(s.is_complete());
    }

    #[test]
    fn claims_on_unselected_or_twice_are_refused() {
        let m = manifest();
        let mut s = State::new(&m);
        s.on_answer(ToSender::Accept {
            selected: vec![(1, 2)],
            proofs: 1,
        })
        .unwrap();
        assert!(
            s.on_answer(ToSender::Have {
                index: 3,
                blake3: [0; 32]
            })
            .is_err()
        );
        let mut s = State::new(&m);
        s.on_answer(ToSender::Accept {
            selected: vec![(1, 2)],
            proofs: 1,
        })
        .unwrap();
        let mut s2 = State::new(&m);
        s2.on_answer(ToSender::Accept {
            selected: vec![(1, 2)],
            proofs: 5,
        })
        .unwrap_err();
        s.on_answer(ToSender::Have {
            index: 1,
            blake3: [0; 32],
        })
        .unwrap();
        assert!(s.on_answer(ToSender::FileOk { index: 1 }).is_err());
    }
}
