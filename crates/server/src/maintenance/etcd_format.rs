//! etcd's backend layout (`server/storage/schema` in etcd): the bucket
//! names and the value encodings that differ from MetaStore's tables,
//! shared by [`super::etcd_export`] and [`super::etcd_import`].
//!
//! | etcd bucket        | key                        | value                           | MetaStore table |
//! |--------------------|----------------------------|---------------------------------|-----------------|
//! | `key`              | revision (same bytes)      | `mvccpb.KeyValue`               | `key` (own value encoding) |
//! | `meta`             | `consistent_index`, `term` | u64 (same)                      | `meta` |
//! | `meta`             | `scheduledCompactRev`, `finishedCompactRev` | a 17-byte revision | `meta` (i64) |
//! | `alarm`            | `etcdserverpb.AlarmMember` | empty                           | `meta` `alarm/...` |
//! | `lease`            | lease ID (same bytes)      | `leasepb.Lease`                 | `lease` (TTL i64) |
//! | `auth`             | `authEnabled`, `authRevision` | same                         | `auth` |
//! | `authUsers`/`authRoles` | name                  | `authpb.User`/`Role` (same)     | `auth` `u/`/`r/` + name |
//! | `members`          | member ID in hex           | member JSON                     | `members` `m` + ID |
//! | `members_removed`  | member ID in hex           | `removed`                       | `members` `r` + ID |
//! | `cluster`          | `clusterVersion`           | e.g. `3.5.0`                    | (none) |

/// Every bucket etcd 3.4/3.5 creates, which an exported file always has.
pub const BUCKETS: [&[u8]; 10] = [
    b"alarm",
    b"auth",
    b"authRoles",
    b"authUsers",
    b"cluster",
    b"key",
    b"lease",
    b"members",
    b"members_removed",
    b"meta",
];
pub const KEY: &[u8] = b"key";
pub const META: &[u8] = b"meta";
pub const LEASE: &[u8] = b"lease";
pub const ALARM: &[u8] = b"alarm";
pub const AUTH: &[u8] = b"auth";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const AUTH_ROLES: &[u8] = b"authRoles";
pub const MEMBERS: &[u8] = b"members";
pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
pub const CLUSTER: &[u8] = b"cluster";
pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";

/// etcd's `leasepb.Lease` (`lease/leasepb/lease.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeasePb {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// etcd's encoding of a compaction revision in `meta`: the revision
/// {main, 0} as a bucket key (main BE, `_`, sub BE).
pub fn compact_rev_bytes(main: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.extend_from_slice(&main.to_be_bytes());
    b.push(b'_');
    b.extend_from_slice(&0i64.to_be_bytes());
    b
}

/// The main revision of a revision key or of `compact_rev_bytes`; None if
/// it has neither shape.
pub fn rev_main(b: &[u8]) -> Option<i64> {
    if !(b.len() == 17 || (b.len() == 18 && b[17] == b't')) || b[8] != b'_' {
        return None;
    }
    Some(i64::from_be_bytes(b[..8].try_into().ok()?))
}

/// A member as etcd's `membership.Member` marshals to JSON.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
pub struct MemberJson {
    pub id: u64,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default, skip_serializing_if = "std::ops::Not::not")]
    pub is_learner: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

/// The cluster version etcd keeps for the API version we speak
/// (major.minor.0, as etcd's `clusterVersion`).
pub fn cluster_version() -> String {
    let mut parts = api::ETCD_VERSION.split('.');
    format!("{}.{}.0", parts.next().unwrap_or("3"), parts.next().unwrap_or("5"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn encodings_are_etcds() {
        assert_eq!(compact_rev_bytes(5), b"\0\0\0\0\0\0\0\x05_\0\0\0\0\0\0\0\0");
        assert_eq!(rev_main(&compact_rev_bytes(5)), Some(5));
        assert_eq!(rev_main(b"\0\0\0\0\0\0\0\x07_\0\0\0\0\0\0\0\x01t"), Some(7));
        assert_eq!(rev_main(b"\0\0\0\0\0\0\0\x07x\0\0\0\0\0\0\0\x01"), None);
        assert_eq!(rev_main(b"short"), None);
        // leasepb.Lease{ID: 0x1234, TTL: 60} as gogoproto marshals it.
        assert_eq!(LeasePb { id: 0x1234, ttl: 60, remaining_ttl: 0 }.encode_to_vec(), [0x08, 0xb4, 0x24, 0x10, 60]);
        let m = MemberJson {
            id: 10,
            peer_urls: vec!["http://a:2380".into()],
            is_learner: false,
            name: "n".into(),
            client_urls: vec![],
        };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"id":10,"peerURLs":["http://a:2380"],"name":"n"}"#);
        assert_eq!(cluster_version(), "3.5.0");
        let mut sorted = BUCKETS.to_vec();
        sorted.sort();
        assert_eq!(sorted, BUCKETS);
    }
}
