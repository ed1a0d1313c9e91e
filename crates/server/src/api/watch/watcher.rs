//! One watcher: what it watches, where it is in history, and how its
//! responses are shaped (filters, prev_kv, fragmentation).

use api::pb::etcdserverpb::{watch_create_request::FilterType, WatchCreateRequest, WatchResponse};
use api::pb::mvccpb;
use prost::Message;
use storage::{Event, EventKind, KeyRange};

use crate::apply::range::to_pb_kv;

pub struct Watcher {
    pub id: i64,
    range: KeyRange,
    /// The next revision this watcher has not seen; grows only.
    pub next_rev: i64,
    no_put: bool,
    no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
    /// Events went out since the last progress tick.
    pub sent_since_tick: bool,
    /// Its history was compacted away and it was told so; like etcd, it
    /// keeps its ID (and gets no events) until the client cancels it.
    pub compacted: bool,
}

/// Why a create request is refused, with etcd's cancel reason.
pub enum CreateError {
    EmptyRange,
    NegativeStart,
}

impl CreateError {
    pub fn reason(&self) -> &'static str {
        match self {
            CreateError::EmptyRange => "mvcc: watcher range is empty",
            CreateError::NegativeStart => "etcdserver: mvcc: required revision has been compacted",
        }
    }
}

impl Watcher {
    /// Builds a watcher from etcd's request conventions: an empty key means
    /// `\0` (the smallest key), an empty range end one key, `\0` every key
    /// from `key` on. `start_revision` 0 means "after the current revision".
    pub fn new(id: i64, req: &WatchCreateRequest, current: i64) -> Result<Watcher, CreateError> {
        if req.start_revision < 0 {
            return Err(CreateError::NegativeStart);
        }
        let key: &[u8] = if req.key.is_empty() { &[0] } else { &req.key };
        if !req.range_end.is_empty() && req.range_end != [0] && key >= req.range_end.as_slice() {
            return Err(CreateError::EmptyRange);
        }
        let filters = |f: FilterType| req.filters.contains(&(f as i32));
        Ok(Watcher {
            id,
            range: KeyRange::from_etcd(key, &req.range_end),
            next_rev: if req.start_revision == 0 { current + 1 } else { req.start_revision },
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            sent_since_tick: false,
            compacted: false,
        })
    }

    /// Everything up to `current` delivered, and not waiting for a future
    /// start revision.
    pub fn synced(&self, current: i64) -> bool {
        !self.compacted && self.next_rev == current + 1
    }

    /// Still has events up to `rev` to receive.
    pub fn behind(&self, rev: i64) -> bool {
        !self.compacted && self.next_rev <= rev
    }

    pub fn wants(&self, ev: &Event) -> bool {
        ev.kv.mod_revision >= self.next_rev
            && self.range.contains(&ev.kv.key)
            && match ev.kind {
                EventKind::Put => !self.no_put,
                EventKind::Delete => !self.no_delete,
            }
    }

    pub fn to_pb(&self, ev: &Event) -> mvccpb::Event {
        mvccpb::Event {
            r#type: match ev.kind {
                EventKind::Put => mvccpb::event::EventType::Put as i32,
                EventKind::Delete => mvccpb::event::EventType::Delete as i32,
            },
            kv: Some(to_pb_kv(ev.kv.clone())),
            prev_kv: if self.prev_kv { ev.prev_kv.clone().map(to_pb_kv) } else { None },
        }
    }
}

/// etcd's `sendFragments`: a response over `max_bytes` with more than one
/// event is split; every piece but the last has `fragment` set.
pub fn fragments(wr: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if wr.encoded_len() < max_bytes || wr.events.len() < 2 {
        return vec![wr];
    }
    let mut out = Vec::new();
    let mut events = wr.events.clone().into_iter().peekable();
    while events.peek().is_some() {
        let mut cur = WatchResponse { events: Vec::new(), fragment: true, ..wr.clone() };
        while let Some(ev) = events.peek() {
            cur.events.push(ev.clone());
            if cur.events.len() > 1 && cur.encoded_len() >= max_bytes {
                cur.events.pop();
                break;
            }
            events.next();
        }
        if events.peek().is_none() {
            cur.fragment = false;
        }
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, rev: i64, kind: EventKind) -> Event {
        Event {
            kind,
            kv: storage::KeyValue { key: key.into(), mod_revision: rev, value: vec![b'x'; 100], ..Default::default() },
            prev_kv: None,
        }
    }

    #[test]
    fn create_rules() {
        let req = WatchCreateRequest { key: b"b".to_vec(), range_end: b"a".to_vec(), ..Default::default() };
        assert!(matches!(Watcher::new(0, &req, 5), Err(CreateError::EmptyRange)));
        let req = WatchCreateRequest { key: b"a".to_vec(), start_revision: -1, ..Default::default() };
        assert!(matches!(Watcher::new(0, &req, 5), Err(CreateError::NegativeStart)));
        let w = Watcher::new(0, &WatchCreateRequest { key: b"a".to_vec(), ..Default::default() }, 5).ok().unwrap();
        assert_eq!(w.next_rev, 6);
        assert!(w.synced(5));
        assert!(w.wants(&ev("a", 6, EventKind::Put)));
        assert!(!w.wants(&ev("a", 5, EventKind::Put)), "already past revision 5");
        assert!(!w.wants(&ev("ab", 6, EventKind::Put)));
    }

    #[test]
    fn filters_and_prefix() {
        let req = WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            filters: vec![FilterType::Nodelete as i32],
            ..Default::default()
        };
        let w = Watcher::new(1, &req, 1).ok().unwrap();
        assert!(w.wants(&ev("ab", 2, EventKind::Put)));
        assert!(!w.wants(&ev("ab", 2, EventKind::Delete)));
        assert!(!w.wants(&ev("b", 2, EventKind::Put)));
    }

    #[test]
    fn fragments_split_and_mark() {
        let w = Watcher::new(1, &WatchCreateRequest { key: b"a".to_vec(), ..Default::default() }, 1).ok().unwrap();
        let events: Vec<_> = (0..10).map(|i| w.to_pb(&ev("a", 2 + i, EventKind::Put))).collect();
        let wr = WatchResponse { watch_id: 1, events, ..Default::default() };
        let parts = fragments(wr.clone(), 300);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts.last().unwrap().fragment);
        let total: usize = parts.iter().map(|p| p.events.len()).sum();
        assert_eq!(total, 10);
        assert_eq!(fragments(wr, 1 << 20).len(), 1);
    }
}
