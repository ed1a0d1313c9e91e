//! The on-disk layout: every table and every key name, in one place (as
//! etcd's `server/storage/schema`, `bucket.go` and `alarm.go`).
//!
//! A data dir (RocksDB: one column family per table, named [`Table::name`])
//! and a snapshot ([`crate::dump`], tables by the same names) hold exactly
//! this. Changing a name or an encoding here makes existing data dirs and
//! snapshots unreadable: the layout only ever grows.
//!
//! | table     | key                                                        | value                                                      | owner |
//! |-----------|------------------------------------------------------------|------------------------------------------------------------|-------|
//! | `key`     | revision: `main` u64, `_`, `sub` u64, plus `t` for a tombstone (17 or 18 bytes) | the key-value: format byte `1`, create and mod revision, version, lease (i64 each), key length u32, key, value | MVCC (`mvcc::revision`, `mvcc::kv`) |
//! | `meta`    | [`META_CONSISTENT_INDEX`] `consistent_index`               | u64: raft index of the last applied entry                  | MVCC (`mvcc::meta`) |
//! | `meta`    | [`META_TERM`] `term`                                       | u64: raft term of that entry                               | MVCC (`mvcc::meta`) |
//! | `meta`    | [`META_SCHEDULED_COMPACT`] `scheduledCompactRev`           | i64: revision of the last compaction applied               | MVCC (`mvcc::meta`) |
//! | `meta`    | [`META_FINISHED_COMPACT`] `finishedCompactRev`             | i64: revision of the last compaction physically done       | MVCC (`mvcc::meta`) |
//! | `meta`    | [`alarm_key`]: `alarm/`, member ID u64, alarm type i32     | empty: the alarm is active                                 | alarms (server) |
//! | `lease`   | [`lease_key`]: lease ID i64                                | i64: granted TTL in seconds                                | lessor (server) |
//! | `members` | [`MembersKey::Member`]: `m`, member ID u64                 | `metastorepb.MemberRecord` (protobuf, `internal.proto`)    | membership (server) |
//! | `members` | [`MembersKey::Removed`]: `r`, member ID u64                | empty: the ID was removed for good                         | membership (server) |
//! | `members` | [`MembersKey::ClusterId`]: `cluster_id`                    | u64: the cluster ID                                        | membership (server) |
//! | `auth`    | [`AuthKey::Enabled`] `authEnabled`                         | one byte: `1` auth is enabled, `0` disabled (etcd's values) | auth (server) |
//! | `auth`    | [`AuthKey::Revision`] `authRevision`                       | u64: the auth revision (absent: 1, as etcd's new store)    | auth (server) |
//! | `auth`    | [`AuthKey::User`]: `u/`, user name                         | `authpb.User` (protobuf, `auth.proto`)                     | auth (server) |
//! | `auth`    | [`AuthKey::Role`]: `r/`, role name                         | `authpb.Role` (protobuf, `auth.proto`)                     | auth (server) |
//! | `index`   | slot byte `0` or `1`, then the key                          | the key's revision history (`mvcc::key_index`'s encoding)  | stored key index (`mvcc::stored_index`) |
//! | `index`   | [`INDEX_SLOT`] `\xffslot`                                  | one byte: the slot that holds the complete index           | stored key index |
//! | `index`   | [`INDEX_KEYS`] `\xffkeys`                                  | u64: keys in that slot                                     | stored key index |
//! | `index`   | byte `2` or `3` (2 + the slot), lease ID i64, then the key | empty: the key exists and has that lease (`mvcc::lease_rows`) | stored key index |
//! | `index`   | [`INDEX_LEASES`] `\xffleases`                              | one byte: the slot whose lease rows are complete           | stored key index |
//!
//! Every integer, in keys and values, is big-endian, so byte order is
//! numeric order for the non-negative ones (revisions scan in order).
//! Example: the alarm NOSPACE (1) of member `0x8e9e05c52164694d` is the meta
//! key `alarm/` `8e 9e 05 c5 21 64 69 4d` `00 00 00 01`.
//!
//! Invariants:
//! - Each key belongs to one owner, and the keys of different owners in a
//!   table never collide: in `meta` the alarms have their own prefix, which
//!   no other meta name starts with; in `members` the kinds differ in their
//!   first byte (`m`, `r`, `c`); in `auth` likewise (`a`, `u`, `r`), and
//!   [`AUTH_USER_PREFIX`]..[`AUTH_USER_END`] (resp. the role pair) holds
//!   exactly the users (roles), in name order.
//! - Scanning `meta` over [`ALARM_PREFIX`]..[`ALARM_END`] visits exactly the
//!   alarm keys.
//! - The meta names are etcd's where etcd has the same record, so a data
//!   dir reads like etcd's buckets; values are not etcd's (no bbolt, no
//!   protobuf for a revision's key-value).
//! - Decoders return `None` on a key of another shape, never panic: the
//!   owner decides whether that is corruption.
//! - `index` is derived from `key` (the stored key index, see
//!   `mvcc::stored_index`): it is never dumped ([`Table::dumped`]), a restore
//!   empties it, and a store rebuilds it when [`INDEX_SLOT`] is absent (its
//!   lease rows when [`INDEX_LEASES`] does not name the slot in use).

/// The tables (column families / buckets) an engine holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// MVCC revisions: encoded revision -> encoded key-value (see `mvcc::kv`).
    Key,
    /// Store-wide metadata: applied index, compaction progress (see
    /// `mvcc::meta`), and the alarms.
    Meta,
    /// Leases, owned by the lease layer.
    Lease,
    /// Users, roles and the auth switch, owned by the auth layer.
    Auth,
    /// Cluster membership, owned by the membership layer.
    Members,
    /// The stored key index (key -> revision history), derived from
    /// [`Table::Key`]; see the module docs.
    Index,
}

const ALL_TABLES: [Table; 6] = [Table::Key, Table::Meta, Table::Lease, Table::Auth, Table::Members, Table::Index];

impl Table {
    /// Stable name, used in dumps and as the RocksDB column family name.
    pub fn name(&self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Auth => "auth",
            Table::Members => "members",
            Table::Index => "index",
        }
    }

    /// Every table an engine holds, in a fixed order.
    pub fn all() -> &'static [Table] {
        &ALL_TABLES
    }

    /// The tables a dump holds, in the order dumps use: all but the
    /// derived [`Table::Index`].
    pub fn dumped() -> &'static [Table] {
        &ALL_TABLES[..5]
    }

    /// The dumped table with the given [`Table::name`], if any.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::dumped().iter().copied().find(|t| t.name() == name)
    }

    /// Dense index in `0..Table::all().len()`, for array-backed engines.
    pub fn index(&self) -> usize {
        match self {
            Table::Key => 0,
            Table::Meta => 1,
            Table::Lease => 2,
            Table::Auth => 3,
            Table::Members => 4,
            Table::Index => 5,
        }
    }
}

// ---- meta ----

/// Meta key of the applied raft index (etcd's `MetaConsistentIndexKeyName`).
pub const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// Meta key of the applied raft term (etcd's `MetaTermKeyName`).
pub const META_TERM: &[u8] = b"term";
/// Meta key of the last scheduled (applied) compaction revision (etcd's
/// `ScheduledCompactKeyName`).
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
/// Meta key of the last finished compaction revision (etcd's
/// `FinishedCompactKeyName`).
pub const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";

/// True for the entries that hold the applied index ([`META_CONSISTENT_INDEX`]
/// and [`META_TERM`]): a restore writes them last, so a partial restore
/// carries none.
pub fn is_applied_index(table: Table, key: &[u8]) -> bool {
    table == Table::Meta && (key == META_CONSISTENT_INDEX || key == META_TERM)
}

// ---- stored key index ----

/// Index key of the slot byte that holds the complete stored key index;
/// sorts after every slot's keys.
pub const INDEX_SLOT: &[u8] = b"\xffslot";
/// Index key of the number of keys in that slot.
pub const INDEX_KEYS: &[u8] = b"\xffkeys";
/// Index key of the slot whose lease rows are complete (absent in data
/// dirs written before lease rows existed).
pub const INDEX_LEASES: &[u8] = b"\xffleases";

// ---- alarms (in meta) ----

const ALARM_PREFIX_BYTES: [u8; 6] = *b"alarm/";
const ALARM_KEY_LEN: usize = ALARM_PREFIX_BYTES.len() + 8 + 4;

/// Every alarm key starts with this (in [`Table::Meta`]).
pub const ALARM_PREFIX: &[u8] = &ALARM_PREFIX_BYTES;
/// The first key after every alarm key: [`ALARM_PREFIX`]..`ALARM_END` is
/// the alarms' range.
pub const ALARM_END: &[u8] = &prefix_end(ALARM_PREFIX_BYTES);

/// The smallest key greater than every key that starts with `prefix`
/// (its last byte plus one; a prefix ending in 0xff fails to compile).
const fn prefix_end<const N: usize>(prefix: [u8; N]) -> [u8; N] {
    let mut end = prefix;
    assert!(N > 0 && end[N - 1] != 0xff, "the prefix has no end of the same length");
    end[N - 1] += 1;
    end
}

/// The meta key of `alarm` (an `etcdserverpb.AlarmType`) raised for `member`.
pub fn alarm_key(member: u64, alarm: i32) -> Vec<u8> {
    [ALARM_PREFIX, &member.to_be_bytes(), &alarm.to_be_bytes()].concat()
}

/// The (member, alarm type) of an alarm key; None for any other key.
pub fn decode_alarm_key(key: &[u8]) -> Option<(u64, i32)> {
    if key.len() != ALARM_KEY_LEN {
        return None;
    }
    let rest = key.strip_prefix(ALARM_PREFIX)?;
    let (member, alarm) = rest.split_at(8);
    Some((u64::from_be_bytes(member.try_into().ok()?), i32::from_be_bytes(alarm.try_into().ok()?)))
}

// ---- lease ----

/// The [`Table::Lease`] key of lease `id`.
pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The lease ID of a [`Table::Lease`] key; None if it is not one.
pub fn decode_lease_key(key: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(key.try_into().ok()?))
}

// ---- members ----

const MEMBER_TAG: u8 = b'm';
const REMOVED_TAG: u8 = b'r';
/// The [`Table::Members`] key of the cluster ID.
pub const MEMBERS_CLUSTER_ID: &[u8] = b"cluster_id";

/// A key of [`Table::Members`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembersKey {
    /// The cluster ID.
    ClusterId,
    /// A member's record, by member ID.
    Member(u64),
    /// A member ID removed for good.
    Removed(u64),
}

impl MembersKey {
    pub fn encode(&self) -> Vec<u8> {
        let tagged = |tag: u8, id: u64| [&[tag][..], &id.to_be_bytes()].concat();
        match *self {
            MembersKey::ClusterId => MEMBERS_CLUSTER_ID.to_vec(),
            MembersKey::Member(id) => tagged(MEMBER_TAG, id),
            MembersKey::Removed(id) => tagged(REMOVED_TAG, id),
        }
    }

    /// The key `key` is; None if it is none of them.
    pub fn decode(key: &[u8]) -> Option<MembersKey> {
        if key == MEMBERS_CLUSTER_ID {
            return Some(MembersKey::ClusterId);
        }
        let (&tag, id) = key.split_first()?;
        let id = u64::from_be_bytes(id.try_into().ok()?);
        match tag {
            MEMBER_TAG => Some(MembersKey::Member(id)),
            REMOVED_TAG => Some(MembersKey::Removed(id)),
            _ => None,
        }
    }
}

// ---- auth ----

const AUTH_USER_PREFIX_BYTES: [u8; 2] = *b"u/";
const AUTH_ROLE_PREFIX_BYTES: [u8; 2] = *b"r/";
/// Every user key starts with this (in [`Table::Auth`]).
pub const AUTH_USER_PREFIX: &[u8] = &AUTH_USER_PREFIX_BYTES;
/// The first key after every user key.
pub const AUTH_USER_END: &[u8] = &prefix_end(AUTH_USER_PREFIX_BYTES);
/// Every role key starts with this (in [`Table::Auth`]).
pub const AUTH_ROLE_PREFIX: &[u8] = &AUTH_ROLE_PREFIX_BYTES;
/// The first key after every role key.
pub const AUTH_ROLE_END: &[u8] = &prefix_end(AUTH_ROLE_PREFIX_BYTES);
/// The [`Table::Auth`] key of the auth switch (etcd's `enableFlagKey`).
pub const AUTH_ENABLED: &[u8] = b"authEnabled";
/// The [`Table::Auth`] key of the auth revision (etcd's `revisionKey`).
pub const AUTH_REVISION: &[u8] = b"authRevision";

/// A key of [`Table::Auth`]. Names are any bytes (etcd allows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKey {
    Enabled,
    Revision,
    User(Vec<u8>),
    Role(Vec<u8>),
}

impl AuthKey {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            AuthKey::Enabled => AUTH_ENABLED.to_vec(),
            AuthKey::Revision => AUTH_REVISION.to_vec(),
            AuthKey::User(name) => [AUTH_USER_PREFIX, name].concat(),
            AuthKey::Role(name) => [AUTH_ROLE_PREFIX, name].concat(),
        }
    }

    /// The key `key` is; None if it is none of them.
    pub fn decode(key: &[u8]) -> Option<AuthKey> {
        match key {
            AUTH_ENABLED => Some(AuthKey::Enabled),
            AUTH_REVISION => Some(AuthKey::Revision),
            _ => {
                if let Some(name) = key.strip_prefix(AUTH_USER_PREFIX) {
                    Some(AuthKey::User(name.to_vec()))
                } else {
                    key.strip_prefix(AUTH_ROLE_PREFIX).map(|name| AuthKey::Role(name.to_vec()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_keys_round_trip_and_ranges_hold_their_kind() {
        assert_eq!(AuthKey::Enabled.encode(), b"authEnabled");
        assert_eq!(AuthKey::Revision.encode(), b"authRevision");
        assert_eq!(AuthKey::User(b"root".to_vec()).encode(), b"u/root");
        assert_eq!(AuthKey::Role(b"root".to_vec()).encode(), b"r/root");
        let keys = [
            AuthKey::Enabled,
            AuthKey::Revision,
            AuthKey::User(Vec::new()),
            AuthKey::User(b"\xff\x00a".to_vec()),
            AuthKey::Role(b"r/x".to_vec()),
        ];
        for k in &keys {
            assert_eq!(AuthKey::decode(&k.encode()).as_ref(), Some(k));
            let e = k.encode();
            let in_users = AUTH_USER_PREFIX <= &e[..] && &e[..] < AUTH_USER_END;
            let in_roles = AUTH_ROLE_PREFIX <= &e[..] && &e[..] < AUTH_ROLE_END;
            assert_eq!(in_users, matches!(k, AuthKey::User(_)), "{k:?}");
            assert_eq!(in_roles, matches!(k, AuthKey::Role(_)), "{k:?}");
        }
        for bad in [&b""[..], b"u", b"x/a", b"authEnable"] {
            assert_eq!(AuthKey::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn table_names_round_trip_and_indexes_are_dense() {
        for (i, t) in Table::all().iter().enumerate() {
            let dumped = *t != Table::Index;
            assert_eq!(Table::from_name(t.name()), dumped.then_some(*t));
            assert_eq!(t.index(), i);
        }
        assert_eq!(Table::from_name("nope"), None);
        let names: Vec<_> = Table::all().iter().map(|t| t.name()).collect();
        assert_eq!(names, ["key", "meta", "lease", "auth", "members", "index"]);
        assert_eq!(Table::dumped(), &Table::all()[..5]);
    }

    /// The bytes existing data dirs hold: these must never change.
    #[test]
    fn encodings_are_the_stored_bytes() {
        assert_eq!(META_CONSISTENT_INDEX, b"consistent_index");
        assert_eq!(META_TERM, b"term");
        assert_eq!(META_SCHEDULED_COMPACT, b"scheduledCompactRev");
        assert_eq!(META_FINISHED_COMPACT, b"finishedCompactRev");
        assert_eq!(alarm_key(0x0102_0304_0506_0708, 1), b"alarm/\x01\x02\x03\x04\x05\x06\x07\x08\x00\x00\x00\x01");
        assert_eq!(ALARM_END, b"alarm0");
        assert_eq!(lease_key(0x1234), [0, 0, 0, 0, 0, 0, 0x12, 0x34]);
        assert_eq!(MembersKey::Member(5).encode(), b"m\0\0\0\0\0\0\0\x05");
        assert_eq!(MembersKey::Removed(5).encode(), b"r\0\0\0\0\0\0\0\x05");
        assert_eq!(MembersKey::ClusterId.encode(), b"cluster_id");
    }

    #[test]
    fn keys_round_trip() {
        for member in [0, 1, 0x8e9e_05c5_2164_694d, u64::MAX] {
            for alarm in [0, 1, 2, -1, i32::MAX] {
                assert_eq!(decode_alarm_key(&alarm_key(member, alarm)), Some((member, alarm)));
            }
            for k in [MembersKey::Member(member), MembersKey::Removed(member)] {
                assert_eq!(MembersKey::decode(&k.encode()), Some(k));
            }
        }
        assert_eq!(MembersKey::decode(&MembersKey::ClusterId.encode()), Some(MembersKey::ClusterId));
        for id in [1, -1, i64::MIN, i64::MAX, 0x7e6f_05c5_2164_694d] {
            assert_eq!(decode_lease_key(&lease_key(id)), Some(id));
        }
    }

    #[test]
    fn decoders_refuse_other_shapes() {
        let alarm = alarm_key(7, 1);
        for bad in [&b""[..], b"alarm/", &alarm[..alarm.len() - 1], &[&alarm[..], b"x"].concat(), META_TERM] {
            assert_eq!(decode_alarm_key(bad), None, "{bad:?}");
        }
        let mut other_prefix = alarm.clone();
        other_prefix[0] = b'b';
        assert_eq!(decode_alarm_key(&other_prefix), None);
        for bad in [&b""[..], b"m", b"m\0\0\0\0\0\0\0", b"x\0\0\0\0\0\0\0\x01", b"cluster_i", b"m\0\0\0\0\0\0\0\0\0"] {
            assert_eq!(MembersKey::decode(bad), None, "{bad:?}");
        }
        for bad in [&b""[..], &[0; 7], &[0; 9]] {
            assert_eq!(decode_lease_key(bad), None);
        }
    }

    /// The range end is right for every key the engine may hold in meta:
    /// alarm keys fall inside, the other meta names and keys just around
    /// the prefix fall outside.
    #[test]
    fn the_alarm_range_holds_exactly_the_alarm_keys() {
        let inside = |k: &[u8]| ALARM_PREFIX <= k && k < ALARM_END;
        for member in [0, 1, u64::MAX] {
            for alarm in [0, 1, 2, -1, i32::MIN, i32::MAX] {
                assert!(inside(&alarm_key(member, alarm)));
            }
        }
        let outside: [&[u8]; 9] = [
            META_CONSISTENT_INDEX,
            META_TERM,
            META_SCHEDULED_COMPACT,
            META_FINISHED_COMPACT,
            b"alarm",
            b"alarm.",
            b"alarm0",
            b"alarm0\0",
            b"alarm\xff",
        ];
        for k in outside {
            assert!(!inside(k), "{:?}", String::from_utf8_lossy(k));
            assert_eq!(decode_alarm_key(k), None);
        }
        // Anything under the prefix is in the range, whatever follows.
        assert!(inside(b"alarm/"));
        assert!(inside(b"alarm/\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"));
    }
}
