//! Permission ranges, with etcd's rules (`range_perm_cache.go`):
//!
//! - a permission is a single key when its range end is empty, a range
//!   `[key, range_end)` when `key < range_end`, and every key from `key` on
//!   when the range end is `"\0"` (etcdctl's `--from-key`; key `"\0"` with
//!   end `"\0"` is every key); an empty key, or an end not above the key
//!   (other than `"\0"`), is not a valid permission;
//! - a request for one key is permitted when any permission of the right
//!   type holds it; a request for a range when the union of those
//!   permissions covers the whole range (`"\0"` as its end: up to the end
//!   of the key space);
//! - READWRITE counts as both READ and WRITE.
//!
//! Example: READ on `[a, c)` and READ on `[c, e)` together permit reading
//! `[b, d)`, not `[b, f)`.

use api::pb::authpb::{permission::Type as PermType, Permission};

/// etcd's `isOpenEnded`: `"\0"` as a range end means "to the end".
pub fn is_open_ended(range_end: &[u8]) -> bool {
    range_end == [0]
}

/// etcd's `isValidPermissionRange`.
pub fn is_valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    if key.is_empty() {
        return false;
    }
    range_end.is_empty() || key < range_end || is_open_ended(range_end)
}

/// A half-open interval of keys; `None` as its end: unbounded.
type Interval = (Vec<u8>, Option<Vec<u8>>);

fn interval_of(p: &Permission) -> Interval {
    if p.range_end.is_empty() {
        // A single key: [key, key + "\0").
        let mut end = p.key.clone();
        end.push(0);
        (p.key.clone(), Some(end))
    } else if is_open_ended(&p.range_end) {
        (p.key.clone(), None)
    } else {
        (p.key.clone(), Some(p.range_end.clone()))
    }
}

fn grants(p: &Permission, wanted: PermType) -> bool {
    let t = PermType::try_from(p.perm_type).ok();
    t == Some(PermType::Readwrite) || t == Some(wanted)
}

/// Whether `perms` permit `wanted` on `key` (range end empty) or on
/// `[key, range_end)` (`"\0"`: to the end).
pub fn permits<'a>(
    perms: impl IntoIterator<Item = &'a Permission>,
    key: &[u8],
    range_end: &[u8],
    wanted: PermType,
) -> bool {
    let mut ivs: Vec<Interval> = perms.into_iter().filter(|p| grants(p, wanted)).map(interval_of).collect();
    if range_end.is_empty() {
        return ivs.iter().any(|(b, e)| b.as_slice() <= key && e.as_ref().is_none_or(|e| key < e.as_slice()));
    }
    let end = if is_open_ended(range_end) { None } else { Some(range_end) };
    // Sweep the intervals in order of their start, extending the covered
    // prefix [key, reached) until it passes the end.
    ivs.sort();
    let mut reached: Option<Vec<u8>> = Some(key.to_vec());
    for (b, e) in ivs {
        let Some(r) = reached.as_ref() else { break };
        if end.is_some_and(|end| r.as_slice() >= end) {
            return true;
        }
        if b.as_slice() > r.as_slice() {
            return false; // a gap before this interval
        }
        match e {
            None => reached = None,
            Some(e) if e.as_slice() > r.as_slice() => reached = Some(e),
            Some(_) => {}
        }
    }
    match (reached, end) {
        (None, _) => true,
        (Some(r), Some(end)) => r.as_slice() >= end,
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &[u8], end: &[u8]) -> Permission {
        Permission { perm_type: t as i32, key: key.to_vec(), range_end: end.to_vec() }
    }

    #[test]
    fn valid_ranges_follow_etcd() {
        assert!(is_valid_permission_range(b"a", b""));
        assert!(is_valid_permission_range(b"a", b"b"));
        assert!(is_valid_permission_range(b"a", b"\0"));
        assert!(is_valid_permission_range(b"\0", b"\0"));
        assert!(!is_valid_permission_range(b"", b""));
        assert!(!is_valid_permission_range(b"", b"\0"));
        assert!(!is_valid_permission_range(b"b", b"a"));
        assert!(!is_valid_permission_range(b"a", b"a"));
    }

    #[test]
    fn single_keys_ranges_and_from_key() {
        let r = PermType::Read;
        let w = PermType::Write;
        let perms = [perm(r, b"k", b""), perm(PermType::Readwrite, b"a", b"c"), perm(r, b"c", b"e")];
        assert!(permits(&perms, b"k", b"", r));
        assert!(!permits(&perms, b"k", b"", w), "READ is not WRITE");
        assert!(!permits(&perms, b"k0", b"", r), "a single key is only itself");
        assert!(permits(&perms, b"k", b"k\0", r), "[k, k\\0) is the key k");
        assert!(!permits(&perms, b"k", b"l", r));
        assert!(permits(&perms, b"b", b"d", r), "covered by two adjacent intervals");
        assert!(!permits(&perms, b"b", b"f", r));
        assert!(permits(&perms, b"a", b"c", w), "READWRITE grants WRITE");
        assert!(!permits(&perms, b"a", b"d", w));
        assert!(!permits(&perms, b"a", b"\0", r), "from-key needs an unbounded permission");

        let from = [perm(r, b"m", b"\0")];
        assert!(permits(&from, b"m", b"\0", r));
        assert!(permits(&from, b"zzz", b"", r));
        assert!(permits(&from, b"n", b"p", r));
        assert!(!permits(&from, b"l", b"", r));
        assert!(!permits(&from, b"l", b"\0", r));

        let all = [perm(w, b"\0", b"\0")];
        assert!(permits(&all, b"\0", b"\0", w), "\\0..\\0 is every key");
        assert!(permits(&all, b"anything", b"", w));
        assert!(!permits(&all, b"anything", b"", r));
        assert!(!permits(&[], b"a", b"", r));
    }
}
