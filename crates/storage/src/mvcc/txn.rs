//! [`WriteTxn`]: the single writer's transaction, as etcd's `storeTxnWrite`.
//!
//! A txn started at store revision `B` (its *begin revision*) writes every
//! change at main revision `B+1`; the n-th change gets sub revision n.
//! Changes are buffered in the txn: readers of the store see nothing until
//! [`WriteTxn::commit`], which writes all changes plus the applied index in one
//! engine batch (with the key index's histories when it is stored), appends
//! them to the key index, and only then publishes `B+1`
//! as the current revision. Dropping a txn without committing discards it.
//!
//! Reads inside the txn see its own earlier writes: once it has a change, its
//! current revision is `B+1` (etcd: `rev = begin+1 if there were changes`).
//!
//! Worked example on an empty store (revision 1):
//! `put(a)` -> change 2.0, `a` version 1 created 2; `put(a)` -> 2.1 version 2;
//! `delete_range(a)` -> 2.2 tombstone; `put(a)` -> 2.3 version 1 created 2
//! (a new generation, same main revision). After commit the store is at
//! revision 2 and `a` is at version 1, `mod_revision` 2.
//!
//! Invariant: the txn holds the store's writer mutex for its whole life, so
//! the key index and engine cannot change under it, except for concurrent
//! reads and the background compactor deleting revisions below the compact
//! revision (which no read of the txn, at or above it, can see).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;

use crate::engine::WriteBatch;
use crate::schema::Table;

use super::error::MvccError;
use super::kv::{encode_kv, Event, EventKind, KeyValue};
use super::meta::{self, AppliedIndex};
use super::range::{KeyRange, RangeOptions, RangeResult};
use super::revision::{Revision, RevisionKey};
use super::store::{limit_of, MvccStore};
use super::stored_index::IndexChange;

/// A key visible in the txn's current view.
enum Hit {
    /// Unchanged by this txn: the revision it has at the begin revision.
    Base(Revision),
    /// Put by this txn.
    Pending(KeyValue),
}

/// A write transaction; see the module docs.
pub struct WriteTxn<'a> {
    store: &'a MvccStore,
    writer: MutexGuard<'a, ()>,
    begin: i64,
    changes: Vec<Event>,
    /// Latest state of every key this txn touched: Some = put, None = deleted.
    pending: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// First engine failure hit by `put` (which cannot return it); `commit`
    /// reports it and writes nothing.
    failure: Option<MvccError>,
}

impl<'a> WriteTxn<'a> {
    pub(super) fn new(store: &'a MvccStore, writer: MutexGuard<'a, ()>) -> Self {
        let begin = store.current_rev.load(Ordering::Acquire);
        WriteTxn { store, writer, begin, changes: Vec::new(), pending: BTreeMap::new(), failure: None }
    }

    /// Store revision when txn started.
    pub fn begin_revision(&self) -> i64 {
        self.begin
    }

    /// The revision reads in this txn are at.
    fn view_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    fn pending_in<'s>(&'s self, range: &'s KeyRange) -> impl Iterator<Item = (&'s Vec<u8>, &'s Option<KeyValue>)> + 's {
        range.bounds().into_iter().flat_map(move |b| self.pending.range::<[u8], _>(b))
    }

    /// Every key of `range` in the txn's current view, ascending.
    fn view(&self, range: &KeyRange) -> Result<Vec<(Vec<u8>, Hit)>, MvccError> {
        let mut base = Vec::new();
        self.store.index().visit(range, self.begin, |k, at| {
            base.push((k.to_vec(), at.modified));
            true
        })?;
        let mut out = Vec::with_capacity(base.len());
        let mut pending = self.pending_in(range).peekable();
        let emit = |out: &mut Vec<(Vec<u8>, Hit)>, k: &Vec<u8>, st: &Option<KeyValue>| {
            if let Some(kv) = st {
                out.push((k.clone(), Hit::Pending(kv.clone())));
            }
        };
        for (key, rev) in base {
            while let Some((pk, st)) = pending.next_if(|(pk, _)| **pk < key) {
                emit(&mut out, pk, st);
            }
            match pending.next_if(|(pk, _)| **pk == key) {
                Some((pk, st)) => emit(&mut out, pk, st),
                None => out.push((key, Hit::Base(rev))),
            }
        }
        for (pk, st) in pending {
            emit(&mut out, pk, st);
        }
        Ok(out)
    }

    fn resolve(&self, hit: Hit) -> Result<KeyValue, MvccError> {
        match hit {
            Hit::Base(rev) => self.store.read_kv(rev),
            Hit::Pending(kv) => Ok(kv),
        }
    }

    /// Reads see this txn's own earlier writes (etcd: rev = begin+1 if there
    /// were changes). `RangeResult::rev` is that revision.
    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult, MvccError> {
        let cur = self.view_rev();
        let rev = self.store.resolve_rev(opts.rev, cur)?;
        if rev <= self.begin || self.pending_in(range).next().is_none() {
            // Nothing of this txn is visible in the answer: the store's index
            // at `rev` (which holds no revision > begin yet) is the view.
            let mut kvs = Vec::new();
            let totals = self.store.range_at(&self.store.index(), range, opts, cur, &mut kvs)?;
            return Ok(RangeResult { kvs, count: totals.count, rev: totals.rev });
        }
        let hits = self.view(range)?;
        let count = hits.len() as i64;
        let kvs = hits.into_iter().take(limit_of(opts)).map(|(_, h)| self.resolve(h)).collect::<Result<Vec<_>, _>>()?;
        Ok(RangeResult { kvs, count, rev: cur })
    }

    /// The key's latest value in this txn's view.
    fn current_kv(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        if let Some(state) = self.pending.get(key) {
            return Ok(state.clone());
        }
        let at = self.store.index().get(key, self.begin)?;
        match at {
            Some(at) => self.store.read_kv(at.modified).map(Some),
            None => Ok(None),
        }
    }

    /// main revision = begin+1, sub = number of changes so far.
    /// Version/create_revision per etcd generations (new key or key after a
    /// tombstone => version 1, create_revision = this rev).
    ///
    /// If reading the key's previous version fails (engine error), the txn is
    /// poisoned: `commit` returns that error and writes nothing.
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) {
        let main = self.begin + 1;
        let prev = match self.current_kv(key) {
            Ok(prev) => prev,
            Err(e) => {
                self.failure.get_or_insert(e);
                None
            }
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: prev.as_ref().map_or(main, |p| p.create_revision),
            mod_revision: main,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value: value.to_vec(),
            lease,
        };
        self.pending.insert(key.to_vec(), Some(kv.clone()));
        self.changes.push(Event { kind: EventKind::Put, kv, prev_kv: prev });
    }

    /// Deletes every live key in range; returns the deleted kvs (their last
    /// values). Deleting nothing adds no change.
    pub fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>, MvccError> {
        let deleted = self.view(range)?.into_iter().map(|(_, h)| self.resolve(h)).collect::<Result<Vec<_>, _>>()?;
        let main = self.begin + 1;
        for kv in &deleted {
            self.pending.insert(kv.key.clone(), None);
            self.changes.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue { key: kv.key.clone(), mod_revision: main, ..Default::default() },
                prev_kv: Some(kv.clone()),
            });
        }
        Ok(deleted)
    }

    /// In sub-revision order; prev_kv filled (None for a put that created its key).
    pub fn changes(&self) -> &[Event] {
        &self.changes
    }

    /// Writes changes + applied index in ONE engine batch, then updates the key
    /// index, then publishes the new current revision (only if there were
    /// changes) — readers never see half a txn. Returns the events.
    pub fn commit(self, applied: AppliedIndex) -> Result<Vec<Event>, MvccError> {
        self.commit_with(applied, WriteBatch::default())
    }

    /// Like `commit`, with `extra` ops (other tables: leases, members, auth)
    /// written in the same atomic engine batch, so state kept beside the key
    /// space never disagrees with it after a crash.
    pub fn commit_with(self, applied: AppliedIndex, extra: WriteBatch) -> Result<Vec<Event>, MvccError> {
        let WriteTxn { store, writer, begin, changes, failure, pending: _ } = self;
        if let Some(e) = failure {
            return Err(e);
        }
        let main = begin + 1;
        let revision = |sub: usize| Revision::new(main, sub as i64);
        let mut batch = extra;
        for (sub, ev) in changes.iter().enumerate() {
            let (tombstone, value) = match ev.kind {
                EventKind::Put => (false, encode_kv(&ev.kv)),
                EventKind::Delete => (true, encode_kv(&KeyValue { key: ev.kv.key.clone(), ..Default::default() })),
            };
            batch.put(Table::Key, RevisionKey::new(revision(sub), tombstone).encode(), value);
        }
        meta::put_applied(&mut batch, applied);
        let index_changes: Vec<IndexChange<'_>> = changes
            .iter()
            .enumerate()
            .map(|(sub, ev)| IndexChange {
                key: &ev.kv.key,
                rev: revision(sub),
                tombstone: ev.kind == EventKind::Delete,
                lease: ev.kv.lease,
                prev_lease: ev.prev_kv.as_ref().map_or(0, |p| p.lease),
            })
            .collect();
        store.index().write_changes(store.shared.engine.as_ref(), batch, &index_changes)?;
        if !changes.is_empty() {
            store.current_rev.store(main, Ordering::Release);
        }
        *store.applied.lock() = applied;
        drop(writer);
        Ok(changes)
    }
}
