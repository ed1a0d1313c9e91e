//! Replay: folds the records of every live segment, in order, into a
//! [`WalContents`].
//!
//! Rules (etcd's WAL semantics plus snapshot markers):
//! - Entry `e` with `e.index <= last` replaces that entry and drops everything
//!   after it (a raft log overwrite); `e.index == last + 1` appends. Entries at
//!   or below the snapshot marker are ignored.
//! - A local snapshot marker `(S, T)` drops entries `<= S` and keeps the rest
//!   (if the log holds entry `S`, its term must be `T`). An installed marker
//!   (a snapshot from the leader) drops every entry, exactly as
//!   `MemStorage::apply_snapshot` does; the log restarts at `S + 1`.
//! - Releasing segments removes a prefix of the history, so replay may start
//!   mid-log, and may find entries missing before an entry (a *gap*). A gap is
//!   legitimate only when a later marker covers it: an installed marker
//!   always (it discards the whole log before it), a local one when its
//!   index >= the last missing entry (the released entries were all at or
//!   below it). A raft overwrite at or below the first entry after a gap
//!   replaces everything after the gap, so only the entries below the
//!   overwrite remain missing (a retained segment may open with a stale
//!   entry that a later overwrite replaced). An uncovered gap at the end of
//!   replay is corruption. This also catches a missing first segment (the
//!   log must start at 1 or after a marker).
//! - A release cut short by a crash leaves a suffix of the released
//!   segments (they are removed oldest first, each removal durable before
//!   the next); the rules above hold for any such suffix.
//! - Markers never move backwards; the latest hard state record wins.
//! - Conf states: of the records that carry their raft index (type 5), the
//!   one with the highest index wins, whatever the record order (a conf
//!   change applied while a snapshot of an older index was being written is
//!   recorded before that snapshot's marker, yet is newer than it); the
//!   caller compares that index with the snapshot's. A legacy record (type
//!   3, no index) replaces the conf state as it is read, and
//!   `conf_state_after_snapshot` tells whether it came after the latest
//!   marker, as before; a later indexed record replaces it.
//!
//! Example: entries 1..=10 (term 1), then 6..=8 (term 2) replay as
//! 1..=5 (term 1), 6..=8 (term 2).

use raft::eraftpb::{ConfState, Entry, HardState};

use super::record::Record;
use super::WalContents;

/// Accumulates replayed records.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    hard_state: Option<HardState>,
    conf_state: Option<ConfState>,
    /// Index of `conf_state`; None for a legacy record.
    conf_state_index: Option<u64>,
    conf_state_after_snapshot: bool,
    snapshot: Option<(u64, u64)>,
    /// Contiguous entries.
    entries: Vec<Entry>,
    /// Missing entries up to this index must be covered by a later marker.
    uncovered_gap: Option<u64>,
}

impl Replay {
    /// Applies one record; an `Err` carries the reason the log is corrupt.
    pub(crate) fn apply(&mut self, rec: Record) -> Result<(), String> {
        match rec {
            Record::Entry(e) => {
                self.entry(e);
                Ok(())
            }
            Record::HardState(hs) => {
                self.hard_state = Some(hs);
                Ok(())
            }
            Record::ConfState(cs) => {
                self.conf_state = Some(cs);
                self.conf_state_index = None;
                self.conf_state_after_snapshot = true;
                Ok(())
            }
            Record::ConfStateAt { index, conf_state } => {
                if self.conf_state.is_none() || self.conf_state_index.is_none_or(|held| held <= index) {
                    self.conf_state = Some(conf_state);
                    self.conf_state_index = Some(index);
                    self.conf_state_after_snapshot = true;
                }
                Ok(())
            }
            // Sync claims matter only to the segment scan.
            Record::Synced(_) => Ok(()),
            Record::SnapshotMarker { index, term, installed } => self.marker(index, term, installed),
        }
    }

    fn entry(&mut self, e: Entry) {
        let snap_index = self.snapshot.map_or(0, |(i, _)| i);
        if e.index <= snap_index {
            return;
        }
        let expected = self.entries.last().map_or(snap_index + 1, |l| l.index + 1);
        if e.index > expected {
            // Entries expected..e.index are missing: released, if a later
            // marker covers them (checked in `marker` and `finish`).
            let needs = e.index - 1;
            self.uncovered_gap = Some(self.uncovered_gap.map_or(needs, |g| g.max(needs)));
            self.entries.clear();
            self.entries.push(e);
            return;
        }
        let first = self.entries.first().map_or(e.index, |f| f.index);
        if e.index <= first && self.uncovered_gap.is_some() {
            // The overwrite replaces the whole run after the gap: only the
            // entries below it are missing now.
            self.uncovered_gap = (e.index - 1 > snap_index).then_some(e.index - 1);
        }
        // Entries are contiguous from `first`, so this keeps those < e.index.
        let keep = usize::try_from(e.index.saturating_sub(first)).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
        self.entries.push(e);
    }

    fn marker(&mut self, index: u64, term: u64, installed: bool) -> Result<(), String> {
        if let Some((pi, pt)) = self.snapshot {
            if index < pi || (index == pi && term != pt) {
                return Err(format!("snapshot marker ({index}, {term}) goes back from ({pi}, {pt})"));
            }
        }
        if installed {
            self.entries.clear();
        } else {
            if let Some(actual) = self.term_of(index) {
                if actual != term {
                    return Err(format!("local snapshot marker ({index}, {term}) but entry {index} has term {actual}"));
                }
            }
            let first = self.entries.first().map_or(index + 1, |e| e.index);
            let drop = usize::try_from((index + 1).saturating_sub(first)).unwrap_or(usize::MAX);
            self.entries.drain(..drop.min(self.entries.len()));
        }
        // An installed marker discards the whole log before it, missing
        // entries included; a local one covers those up to its index.
        if installed || self.uncovered_gap.is_some_and(|g| g <= index) {
            self.uncovered_gap = None;
        }
        self.snapshot = Some((index, term));
        self.conf_state_after_snapshot = false;
        Ok(())
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        if let Some((si, st)) = self.snapshot {
            if si == index {
                return Some(st);
            }
        }
        let first = self.entries.first()?.index;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(pos).map(|e| e.term)
    }

    /// Finishes replay; an `Err` carries the reason the log is corrupt.
    pub(crate) fn finish(self) -> Result<WalContents, String> {
        if let Some(needs) = self.uncovered_gap {
            return Err(format!("entries up to index {needs} are missing and no snapshot marker covers them"));
        }
        Ok(WalContents {
            hard_state: self.hard_state,
            conf_state: self.conf_state,
            conf_state_index: self.conf_state_index,
            conf_state_after_snapshot: self.conf_state_after_snapshot,
            snapshot: self.snapshot,
            entries: self.entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Record {
        Record::Entry(Entry { index, term, ..Default::default() })
    }

    fn local(index: u64, term: u64) -> Record {
        Record::SnapshotMarker { index, term, installed: false }
    }

    fn installed(index: u64, term: u64) -> Record {
        Record::SnapshotMarker { index, term, installed: true }
    }

    fn ids(c: &WalContents) -> Vec<(u64, u64)> {
        c.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    fn replay(records: Vec<Record>) -> Result<WalContents, String> {
        let mut r = Replay::default();
        for rec in records {
            r.apply(rec)?;
        }
        r.finish()
    }

    #[test]
    fn overwrite_drops_suffix() {
        let mut recs: Vec<Record> = (1..=10).map(|i| ent(i, 1)).collect();
        recs.extend((6..=8).map(|i| ent(i, 2)));
        let c = replay(recs).unwrap();
        let want: Vec<_> = (1..=5).map(|i| (i, 1)).chain((6..=8).map(|i| (i, 2))).collect();
        assert_eq!(ids(&c), want);
    }

    #[test]
    fn uncovered_gaps_are_corruption() {
        assert!(replay(vec![ent(1, 1), ent(3, 1)]).is_err());
        assert!(replay(vec![ent(5, 1), ent(6, 1)]).is_err(), "missing start");
        assert!(replay(vec![installed(4, 1), ent(6, 1)]).is_err());
        assert!(replay(vec![ent(5, 1), local(3, 1)]).is_err(), "marker too low");
    }

    #[test]
    fn released_prefix_is_covered_by_a_later_marker() {
        // Segments holding 1..=95 were released after marker 100.
        let c = replay(vec![ent(96, 1), ent(97, 1), local(50, 1), ent(98, 1), local(100, 1)]);
        assert_eq!(c.unwrap().snapshot, Some((100, 1)));
        // The retained segment starts with an old marker, then a gap that
        // the next marker covers.
        let c = replay(vec![local(150, 2), ent(201, 3), local(201, 3)]).unwrap();
        assert_eq!(c.snapshot, Some((201, 3)));
        assert!(c.entries.is_empty());
    }

    #[test]
    fn an_overwrite_below_a_gap_lowers_what_a_marker_must_cover() {
        // Segments holding 1..=21 were released after marker 19; the first
        // retained one starts with a stale entry 22 (term 2) that a raft
        // overwrite from 11 (term 3) replaced. Only 1..=10 are missing now.
        let mut recs = vec![ent(22, 2)];
        recs.extend((11..=19).map(|i| ent(i, 3)));
        recs.push(local(19, 3));
        let c = replay(recs).unwrap();
        assert_eq!(c.snapshot, Some((19, 3)));
        assert!(c.entries.is_empty());
        // Entries below the overwrite still need a covering marker.
        let mut recs = vec![ent(22, 2)];
        recs.extend((11..=19).map(|i| ent(i, 3)));
        recs.push(local(9, 1));
        assert!(replay(recs).is_err(), "10 is missing and marker 9 does not cover it");
    }

    #[test]
    fn local_marker_keeps_later_entries() {
        let mut recs: Vec<Record> = (3..=9).map(|i| ent(i, 2)).collect();
        recs.push(local(5, 2));
        recs.push(ent(10, 3));
        let c = replay(recs).unwrap();
        assert_eq!(c.snapshot, Some((5, 2)));
        assert_eq!(ids(&c), (6..=9).map(|i| (i, 2)).chain([(10, 3)]).collect::<Vec<_>>());
        // A local marker whose term contradicts the log is corruption.
        assert!(replay(vec![ent(1, 1), ent(2, 1), local(2, 2)]).is_err());
    }

    #[test]
    fn installed_marker_clears_the_log() {
        let mut recs: Vec<Record> = (1..=9).map(|i| ent(i, 1)).collect();
        recs.push(installed(7, 3));
        recs.push(ent(8, 3));
        let c = replay(recs).unwrap();
        assert_eq!(c.snapshot, Some((7, 3)));
        assert_eq!(ids(&c), vec![(8, 3)]);
    }

    #[test]
    fn markers_never_regress() {
        assert!(replay(vec![installed(20, 4), local(20, 4)]).is_ok());
        assert!(replay(vec![installed(20, 4), local(19, 4)]).is_err());
        assert!(replay(vec![installed(20, 4), installed(20, 5)]).is_err());
    }

    #[test]
    fn conf_state_ordering_is_tracked() {
        let cs = || Record::ConfState(ConfState::default());
        let before = replay(vec![cs(), installed(1, 1)]).unwrap();
        let after = replay(vec![installed(1, 1), cs()]).unwrap();
        assert!(!before.conf_state_after_snapshot);
        assert!(after.conf_state_after_snapshot);
        assert_eq!(after.conf_state_index, None, "a legacy record has no index");
    }

    fn cs_at(index: u64, voters: &[u64]) -> Record {
        Record::ConfStateAt { index, conf_state: ConfState { voters: voters.to_vec(), ..Default::default() } }
    }

    #[test]
    fn the_conf_state_with_the_highest_index_wins_whatever_the_order() {
        // A conf change at 8 persisted while the snapshot at 5 was written:
        // its record precedes the marker, yet it is the newer conf state.
        let c = replay(vec![ent(1, 1), cs_at(0, &[1]), cs_at(8, &[1, 2, 3]), local(5, 1)]).unwrap();
        assert_eq!(c.snapshot, Some((5, 1)));
        assert_eq!(c.conf_state_index, Some(8));
        assert_eq!(c.conf_state.unwrap().voters, vec![1, 2, 3]);
        // The marker's copy of an older conf state does not win either.
        let c = replay(vec![cs_at(8, &[1, 2, 3]), cs_at(3, &[1]), installed(9, 2)]).unwrap();
        assert_eq!((c.conf_state_index, c.conf_state.unwrap().voters), (Some(8), vec![1, 2, 3]));
        // An indexed record replaces a legacy one (an upgraded WAL).
        let legacy = Record::ConfState(ConfState { voters: vec![7], ..Default::default() });
        let c = replay(vec![legacy, local(5, 1), cs_at(2, &[1, 2])]).unwrap();
        assert_eq!((c.conf_state_index, c.conf_state.unwrap().voters), (Some(2), vec![1, 2]));
    }
}
