//! The receiving side of a transfer stream: checks every frame from the sender
//! and tells the driver what to do with it.
//!
//! Phases: the offer head, its entries (until the announced count; then the
//! manifest is checked as a whole and the driver decides), then data: the
//! selected files one at a time, each `Start`, blocks summing exactly to the
//! rest of the file, `End` (or `Skip` at any point of a file), and finally
//! `Done` once every selected file was started. A PeerConnect sender sends
//! them in entry order; the receiver takes any order, each file once, because
//! a LocalSend client uploads the files of one offer in an order of its own. Offsets are only accepted up to what the receiver
//! itself offered to resume from.
//!
//! # Budget
//!
//! Until the user decides, an offer is memory a stranger made the node hold.
//! Each stream reads its offer against an [`OfferBudget`] (entries, and bytes
//! as held: paths plus [`ENTRY_OVERHEAD`] each), tighter for peers nobody
//! trusted; the first frame past it is a protocol error, before the entries it
//! carries are kept.

use std::collections::BTreeMap;

use super::manifest::{Entry, MAX_ENTRIES, Manifest};
use super::message::{ToReceiver, check_reason};
use super::{BLOCK, ProtocolError, TransferId};

/// Bytes one offer entry costs beyond its path (the entry, its copy in the
/// checked manifest, bookkeeping), for [`OfferBudget::bytes`].
pub const ENTRY_OVERHEAD: u64 = 64;

/// How much one offer may make the receiver hold before it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferBudget {
    /// Entries (files and folders).
    pub entries: u32,
    /// Paths' bytes plus [`ENTRY_OVERHEAD`] per entry.
    pub bytes: u64,
}

impl OfferBudget {
    /// From a peer the user trusted: the manifest's own limits.
    pub const TRUSTED: Self = Self {
        entries: MAX_ENTRIES as u32,
        bytes: 64 << 20,
    };
    /// From anyone else: a folder of 20,000 files still fits, a memory bomb
    /// does not.
    pub const UNTRUSTED: Self = Self {
        entries: 20_000,
        bytes: 8 << 20,
    };

    /// What `entries` cost against [`OfferBudget::bytes`].
    pub fn cost(entries: &[Entry]) -> u64 {
        entries
            .iter()
            .map(|e| e.path.len() as u64 + ENTRY_OVERHEAD)
            .sum()
    }
}

/// What the driver does after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing yet (part of the offer).
    Continue,
    /// The offer is complete: decide ([`State::manifest`], then [`State::accept`]).
    Offer,
    /// Open file `index` of `size` bytes, keeping its first `offset` bytes.
    Open { index: u32, offset: u64, size: u64 },
    /// Read `len` raw bytes from the stream and write them at `offset`.
    Write { index: u32, offset: u64, len: u32 },
    /// File `index` is complete; `blake3` is the sender's hash of all of it.
    Finish { index: u32, blake3: [u8; 32] },
    /// The sender gave up on file `index`.
    Skipped { index: u32, reason: String },
    /// Every selected file was sent or skipped.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Entries,
    Decide,
    Data,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    index: u32,
    pos: u64,
    size: u64,
}

/// The receiver's view of one transfer stream.
#[derive(Debug)]
pub struct State {
    phase: Phase,
    id: Option<TransferId>,
    budget: OfferBudget,
    expected: u32,
    /// [`OfferBudget::cost`] of the entries read so far.
    held: u64,
    total_bytes: u64,
    entries: Vec<Entry>,
    manifest: Option<Manifest>,
    /// Selected files, in entry order.
    files: Vec<u32>,
    /// Whether each of `files` was started or skipped (each travels once).
    sent: Vec<bool>,
    /// How many of `sent` are true.
    sent_count: usize,
    /// Largest offset the sender may start each file at.
    allowed: BTreeMap<u32, u64>,
    current: Option<Current>,
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// A receiver that takes offers up to the manifest's own limits.
    pub fn new() -> Self {
        Self::with_budget(OfferBudget::TRUSTED)
    }

    /// A receiver that refuses an offer larger than `budget`.
    pub fn with_budget(budget: OfferBudget) -> Self {
        Self {
            phase: Phase::Head,
            id: None,
            budget,
            expected: 0,
            held: 0,
            total_bytes: 0,
            entries: Vec::new(),
            manifest: None,
            files: Vec::new(),
            sent: Vec::new(),
            sent_count: 0,
            allowed: BTreeMap::new(),
            current: None,
        }
    }

    pub fn id(&self) -> Option<TransferId> {
        self.id
    }

    /// [`OfferBudget::cost`] of the offer's entries read so far.
    pub fn offer_cost(&self) -> u64 {
        self.held
    }

    /// The checked offer, once complete.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Starts the data phase: `selected` masks the manifest's entries; `allowed`
    /// gives, per file, the largest offset the sender may resume at.
    pub fn accept(&mut self, selected: &[bool], allowed: BTreeMap<u32, u64>) {
        let m = self.manifest.as_ref().expect("accept after the offer");
        self.files = m
            .entries()
            .iter()
            .enumerate()
            .filter(|(i, e)| selected.get(*i) == Some(&true) && e.size().is_some())
            .map(|(i, _)| i as u32)
            .collect();
        self.sent = vec![false; self.files.len()];
        self.sent_count = 0;
        self.allowed = allowed;
        self.phase = Phase::Data;
    }

    /// Selected files, in entry order (they may travel in another).
    pub fn files(&self) -> &[u32] {
        &self.files
    }

    /// Checks one frame.
    pub fn on_message(&mut self, msg: ToReceiver) -> Result<Action, ProtocolError> {
        let got = msg.name();
        match (self.phase, msg) {
            (
                Phase::Head,
                ToReceiver::Offer {
                    id,
                    entries,
                    total_bytes,
                },
            ) => {
                let max = self.budget.entries.min(MAX_ENTRIES as u32);
                if entries > max {
                    return Err(ProtocolError::Invalid(format!(
                        "offer of {entries} entries: this receiver takes at most {max} in one offer"
                    )));
                }
                self.id = Some(id);
                self.expected = entries;
                self.total_bytes = total_bytes;
                self.phase = Phase::Entries;
                self.finish_offer_if_complete()
            }
            (Phase::Entries, ToReceiver::Entries(batch)) => {
                if self.entries.len() + batch.len() > self.expected as usize {
                    return Err(ProtocolError::Invalid(format!(
                        "more entries than the {} announced",
                        self.expected
                    )));
                }
                let held = self.held + OfferBudget::cost(&batch);
                if held > self.budget.bytes {
                    return Err(ProtocolError::Invalid(format!(
                        "offer of more than {} KiB of names: this receiver takes at most {} KiB in one offer",
                        held >> 10,
                        self.budget.bytes >> 10
                    )));
                }
                self.held = held;
                self.entries.extend(batch);
                self.finish_offer_if_complete()
            }
            (Phase::Data, ToReceiver::Start { index, offset }) => {
                if let Some(c) = self.current {
                    return Err(ProtocolError::File {
                        index,
                        what: format!("started before file {} ended", c.index),
                    });
                }
                let size = self.take_unsent(index)?;
                let max = self.allowed.get(&index).copied().unwrap_or(0);
                if offset > max || offset > size {
                    return Err(ProtocolError::File {
                        index,
                        what: format!("resumes at {offset}, beyond the {max} bytes we hold"),
                    });
                }
                self.current = Some(Current {
                    index,
                    pos: offset,
                    size,
                });
                Ok(Action::Open {
                    index,
                    offset,
                    size,
                })
            }
            (Phase::Data, ToReceiver::Block { len }) => {
                let Some(c) = self.current.as_mut() else {
                    return Err(ProtocolError::Unexpected {
                        got,
                        expected: "no file is open",
                    });
                };
                if len == 0 || len as usize > BLOCK || c.pos + len as u64 > c.size {
                    return Err(ProtocolError::File {
                        index: c.index,
                        what: format!("block of {len} bytes at {} of a file of {}", c.pos, c.size),
                    });
                }
                let offset = c.pos;
                c.pos += len as u64;
                Ok(Action::Write {
                    index: c.index,
                    offset,
                    len,
                })
            }
            (Phase::Data, ToReceiver::End { index, blake3 }) => match self.current {
                Some(c) if c.index == index && c.pos == c.size => {
                    self.current = None;
                    Ok(Action::Finish { index, blake3 })
                }
                Some(c) => Err(ProtocolError::File {
                    index,
                    what: format!(
                        "ended at byte {} of {} (file {} is open)",
                        c.pos, c.size, c.index
                    ),
                }),
                None => Err(ProtocolError::Unexpected {
                    got,
                    expected: "no file is open",
                }),
            },
            (Phase::Data, ToReceiver::Skip { index, reason }) => {
                check_reason(&reason)?;
                match self.current {
                    Some(c) if c.index == index => self.current = None,
                    Some(c) => {
                        return Err(ProtocolError::File {
                            index,
                            what: format!("skipped while file {} is open", c.index),
                        });
                    }
                    None => {
                        self.take_unsent(index)?;
                    }
                }
                Ok(Action::Skipped { index, reason })
            }
            (Phase::Data, ToReceiver::Done) => {
                if self.current.is_some() || self.sent_count != self.files.len() {
                    return Err(ProtocolError::Invalid(format!(
                        "done after {} of {} files",
                        self.sent_count,
                        self.files.len()
                    )));
                }
                self.phase = Phase::Done;
                Ok(Action::Done)
            }
            (phase, _) => Err(ProtocolError::Unexpected {
                got,
                expected: match phase {
                    Phase::Head => "waiting for the offer",
                    Phase::Entries => "reading the offer's entries",
                    Phase::Decide => "the offer awaits a decision",
                    Phase::Data => "receiving files",
                    Phase::Done => "the transfer is done",
                },
            }),
        }
    }

    /// Marks selected file `index` as sent and returns its size; fails for a
    /// file that was not selected or was sent already.
    fn take_unsent(&mut self, index: u32) -> Result<u64, ProtocolError> {
        let Ok(pos) = self.files.binary_search(&index) else {
            return Err(ProtocolError::File {
                index,
                what: "not a file the receiver accepted".into(),
            });
        };
        if std::mem::replace(&mut self.sent[pos], true) {
            return Err(ProtocolError::File {
                index,
                what: "sent twice".into(),
            });
        }
        self.sent_count += 1;
        Ok(self
            .manifest
            .as_ref()
            .and_then(|m| m.entry(index))
            .and_then(|e| e.size())
            .expect("selected files are files of the manifest"))
    }

    fn finish_offer_if_complete(&mut self) -> Result<Action, ProtocolError> {
        if self.entries.len() < self.expected as usize {
            return Ok(Action::Continue);
        }
        let m = Manifest::new(std::mem::take(&mut self.entries))?;
        if m.total_bytes() != self.total_bytes {
            return Err(ProtocolError::Invalid(format!(
                "offer announces {} bytes, its entries hold {}",
                self.total_bytes,
                m.total_bytes()
            )));
        }
        self.manifest = Some(m);
        self.phase = Phase::Decide;
        Ok(Action::Offer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::transfer::Entry;

    fn offered(entries: Vec<Entry>) -> State {
        let total = entries.iter().filter_map(|e| e.size()).sum();
        let mut s = State::new();
        let n = entries.len() as u32;
        assert_eq!(
            s.on_message(ToReceiver::Offer {
                id: TransferId(1),
                entries: n,
                total_bytes: total,
            })
            .unwrap(),
            if n == 0 {
                Action::Offer
            } else {
                Action::Continue
            }
        );
        if n > 0 {
            assert_eq!(
                s.on_message(ToReceiver::Entries(entries)).unwrap(),
                Action::Offer
            );
        }
        s
    }

    fn two_files() -> State {
        let mut s = offered(vec![
            Entry::dir("d"),
            Entry::file("d/a", 10),
            Entry::file("d/b", 0),
        ]);
        s.accept(&[true; 3], BTreeMap::new());
        s
    }

    #[test]
    fn a_well_formed_stream_is_accepted() {
        let mut s = two_files();
        assert_eq!(s.files(), [1, 2]);
        let steps = [
            (
                ToReceiver::Start {
                    index: 1,
                    offset: 0,
                },
                Action::Open {
                    index: 1,
                    offset: 0,
                    size: 10,
                },
            ),
            (
                ToReceiver::Block { len: 6 },
                Action::Write {
                    index: 1,
                    offset: 0,
                    len: 6,
                },
            ),
            (
                ToReceiver::Block { len: 4 },
                Action::Write {
                    index: 1,
                    offset: 6,
                    len: 4,
                },
            ),
            (
                ToReceiver::End {
                    index: 1,
                    blake3: [0; 32],
                },
                Action::Finish {
                    index: 1,
                    blake3: [0; 32],
                },
            ),
            (
                ToReceiver::Skip {
                    index: 2,
                    reason: "gone".into(),
                },
                Action::Skipped {
                    index: 2,
                    reason: "gone".into(),
                },
            ),
            (ToReceiver::Done, Action::Done),
        ];
        for (msg, want) in steps {
            assert_eq!(s.on_message(msg).unwrap(), want);
        }
        assert!(s.on_message(ToReceiver::Done).is_err());
    }

    #[test]
    fn files_travel_in_any_order_but_each_once() {
        let mut s = two_files();
        let steps = [
            ToReceiver::Start {
                index: 2,
                offset: 0,
            },
            ToReceiver::End {
                index: 2,
                blake3: [0; 32],
            },
            ToReceiver::Start {
                index: 1,
                offset: 0,
            },
            ToReceiver::Block { len: 10 },
            ToReceiver::End {
                index: 1,
                blake3: [0; 32],
            },
        ];
        for msg in steps {
            s.on_message(msg).unwrap();
        }
        let again = s
            .on_message(ToReceiver::Start {
                index: 2,
                offset: 0,
            })
            .unwrap_err();
        assert!(again.to_string().contains("sent twice"), "{again}");
        let mut s = two_files();
        s.on_message(ToReceiver::Skip {
            index: 2,
            reason: "gone".into(),
        })
        .unwrap();
        assert!(
            s.on_message(ToReceiver::Skip {
                index: 2,
                reason: "gone".into(),
            })
            .is_err()
        );
        // Done only once every selected file travelled.
        assert!(s.on_message(ToReceiver::Done).is_err());
    }

    #[test]
    fn data_beyond_a_file_is_refused() {
        let mut s = two_files();
        s.on_message(ToReceiver::Start {
            index: 1,
            offset: 0,
        })
        .unwrap();
        assert!(s.on_message(ToReceiver::Block { len: 11 }).is_err());
        let mut s = two_files();
        s.on_message(ToReceiver::Start {
            index: 1,
            offset: 0,
        })
        .unwrap();
        s.on_message(ToReceiver::Block { len: 5 }).unwrap();
        assert!(
            s.on_message(ToReceiver::End {
                index: 1,
                blake3: [0; 32]
            })
            .is_err()
        );
        let mut s = two_files();
        assert!(s.on_message(ToReceiver::Block { len: 1 }).is_err());
        assert!(s.on_message(ToReceiver::Done).is_err());
    }

    #[test]
    fn resume_offsets_beyond_what_we_hold_are_refused() {
        let mut s = offered(vec![Entry::file("a", 100)]);
        s.accept(&[true], BTreeMap::from([(0, 40)]));
        assert!(
            s.on_message(ToReceiver::Start {
                index: 0,
                offset: 41
            })
            .is_err()
        );
        let mut s = offered(vec![Entry::file("a", 100)]);
        s.accept(&[true], BTreeMap::from([(0, 40)]));
        assert_eq!(
            s.on_message(ToReceiver::Start {
                index: 0,
                offset: 40
            })
            .unwrap(),
            Action::Open {
                index: 0,
                offset: 40,
                size: 100
            }
        );
    }

    #[test]
    fn unselected_files_are_not_expected() {
        let mut s = offered(vec![Entry::file("a", 1), Entry::file("b", 1)]);
        s.accept(&[false, true], BTreeMap::new());
        assert!(
            s.on_message(ToReceiver::Start {
                index: 0,
                offset: 0
            })
            .is_err()
        );
    }

    #[test]
    fn a_malicious_offer_is_refused_before_any_decision() {
        let mut s = State::new();
        s.on_message(ToReceiver::Offer {
            id: TransferId(1),
            entries: 1,
            total_bytes: 1,
        })
        .unwrap();
        let err = s
            .on_message(ToReceiver::Entries(vec![Entry::file("../../etc/x", 1)]))
            .unwrap_err();
        assert!(err.to_string().contains("climbs"), "{err}");
        let mut s = State::new();
        s.on_message(ToReceiver::Offer {
            id: TransferId(1),
            entries: 1,
            total_bytes: 5,
        })
        .unwrap();
        assert!(
            s.on_message(ToReceiver::Entries(vec![Entry::file("a", 1)]))
                .is_err()
        );
        let mut s = State::new();
        assert!(
            s.on_message(ToReceiver::Offer {
                id: TransferId(1),
                entries: u32::MAX,
                total_bytes: 0
            })
            .is_err()
        );
    }

    /// An untrusted peer's offer is refused at the first frame past its budget,
    /// before the entries that frame carries are kept; a trusted peer's same
    /// offer passes.
    #[test]
    fn an_offer_past_its_budget_is_refused_before_it_is_held() {
        let budget = OfferBudget {
            entries: 1_000,
            bytes: 64 << 10,
        };
        let mut s = State::with_budget(budget);
        assert!(
            s.on_message(ToReceiver::Offer {
                id: TransferId(1),
                entries: 1_001,
                total_bytes: 1_001,
            })
            .is_err(),
            "more entries than the budget"
        );

        // 500 entries of ~1 kB names: within the count, far past the bytes.
        let x = "x".repeat(250);
        let long = |i: usize| Entry::file(format!("{i:04}/{x}/{x}/{x}/{x}"), 1);
        let mut s = State::with_budget(budget);
        s.on_message(ToReceiver::Offer {
            id: TransferId(1),
            entries: 500,
            total_bytes: 500,
        })
        .unwrap();
        let mut err = None;
        for chunk in (0..500).collect::<Vec<_>>().chunks(10) {
            let before = s.offer_cost();
            match s.on_message(ToReceiver::Entries(
                chunk.iter().map(|&i| long(i)).collect(),
            )) {
                Ok(_) => assert!(s.offer_cost() <= budget.bytes),
                Err(e) => {
                    assert_eq!(s.offer_cost(), before, "the refused frame is not kept");
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("the offer went past its byte budget");
        assert!(err.to_string().contains("at most 64 KiB"), "{err}");

        let mut s = State::with_budget(OfferBudget::TRUSTED);
        s.on_message(ToReceiver::Offer {
            id: TransferId(1),
            entries: 500,
            total_bytes: 500,
        })
        .unwrap();
        let all: Vec<Entry> = (0..500).map(long).collect();
        assert_eq!(
            s.on_message(ToReceiver::Entries(all)).unwrap(),
            Action::Offer
        );
    }
}
