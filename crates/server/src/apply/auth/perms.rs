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

/// The keys one type of permission covers, as sorted, disjoint intervals
/// (overlapping and touching ones merged): etcd's `rangePermCache` entry.
/// A check is then one binary search: a range is covered by the union iff
/// one merged interval holds all of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage(Vec<Interval>);

impl Coverage {
    pub fn new<'a>(perms: impl IntoIterator<Item = &'a Permission>, wanted: PermType) -> Self {
        let mut ivs: Vec<Interval> = perms.into_iter().filter(|p| grants(p, wanted)).map(interval_of).collect();
        ivs.sort();
        let mut merged: Vec<Interval> = Vec::with_capacity(ivs.len());
        for (b, e) in ivs {
            match merged.last_mut() {
                // Unbounded already: it holds everything after.
                Some((_, None)) => {}
                Some((_, Some(last))) if b.as_slice() <= last.as_slice() => {
                    if e.as_ref().is_none_or(|e| e > last) {
                        merged.last_mut().expect("just matched").1 = e;
                    }
                }
                _ => merged.push((b, e)),
            }
        }
        Coverage(merged)
    }

    /// Whether `key` (range end empty), or `[key, range_end)` (`"\0"`: to
    /// the end), is covered. An empty range (end not above the key) is.
    pub fn permits(&self, key: &[u8], range_end: &[u8]) -> bool {
        let end = if range_end.is_empty() || is_open_ended(range_end) { None } else { Some(range_end) };
        if end.is_some_and(|end| end <= key) {
            return true;
        }
        let i = self.0.partition_point(|(b, _)| b.as_slice() <= key);
        let Some((_, holder_end)) = i.checked_sub(1).map(|i| &self.0[i]) else {
            return false;
        };
        let Some(holder_end) = holder_end else {
            return true;
        };
        if range_end.is_empty() {
            key < holder_end.as_slice()
        } else {
            end.is_some_and(|end| end <= holder_end.as_slice())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `perms` permit `wanted` on `key` (range end empty) or on
    /// `[key, range_end)` (`"\0"`: to the end).
    fn permits<'a>(
        perms: impl IntoIterator<Item = &'a Permission>,
        key: &[u8],
        range_end: &[u8],
        wanted: PermType,
    ) -> bool {
        Coverage::new(perms, wanted).permits(key, range_end)
    }

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

    #[test]
    fn coverage_merges_overlapping_and_touching_intervals() {
        let r = PermType::Read;
        let perms =
            [perm(r, b"c", b"e"), perm(r, b"a", b"c"), perm(r, b"b", b"d"), perm(r, b"x", b""), perm(r, b"x\0", b"y")];
        let c = Coverage::new(&perms, r);
        assert_eq!(
            c,
            Coverage(vec![(b"a".to_vec(), Some(b"e".to_vec())), (b"x".to_vec(), Some(b"y".to_vec()))]),
            "[a,c) [b,d) [c,e) are one; x and [x\\0, y) touch"
        );
        let open = Coverage::new(&[perm(r, b"m", b"\0"), perm(r, b"n", b"p"), perm(r, b"a", b"b")], r);
        assert_eq!(open, Coverage(vec![(b"a".to_vec(), Some(b"b".to_vec())), (b"m".to_vec(), None)]));
    }

    /// The merged coverage answers as the plain definition does: a key is
    /// permitted iff some interval holds it, a range iff every key in it is
    /// (checked over all ranges of a small alphabet).
    #[test]
    fn coverage_agrees_with_a_key_by_key_check() {
        let r = PermType::Read;
        let keys: Vec<Vec<u8>> = ["a", "b", "b\0", "c", "d", "e", "f"].iter().map(|k| k.as_bytes().to_vec()).collect();
        let sets: Vec<Vec<Permission>> = vec![
            vec![perm(r, b"b", b"d")],
            vec![perm(r, b"a", b"b"), perm(r, b"b", b""), perm(r, b"b\0", b"d")],
            vec![perm(r, b"c", b"\0"), perm(r, b"a", b"")],
            vec![perm(r, b"b", b""), perm(r, b"d", b"f")],
        ];
        for perms in &sets {
            let c = Coverage::new(perms, r);
            let holds = |k: &[u8]| {
                perms.iter().map(interval_of).any(|(b, e)| b.as_slice() <= k && e.is_none_or(|e| k < e.as_slice()))
            };
            for k in &keys {
                assert_eq!(c.permits(k, b""), holds(k), "{perms:?} key {k:?}");
                for end in &keys {
                    if end > k {
                        let every = keys.iter().filter(|x| *x >= k && *x < end).all(|x| holds(x));
                        // Keys between the alphabet's letters matter too:
                        // only a covered gap counts, which the merged
                        // intervals decide; the sampled keys bound it.
                        if !every {
                            assert!(!c.permits(k, end), "{perms:?} [{k:?}, {end:?})");
                        }
                    }
                }
            }
        }
    }
}
