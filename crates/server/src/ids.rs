//! Member and cluster IDs computed exactly as etcd computes them, so a
//! MetaStore started with etcd's flags reports the IDs etcd would (the default
//! single member is `8e9e05c52164694d` in cluster `cdf818194e3a8c32`).

use sha1::{Digest, Sha1};

fn first_u64(data: &[u8]) -> u64 {
    let hash = Sha1::digest(data);
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(b)
}

/// etcd `computeMemberID`: sha1(sorted peer URLs joined + cluster token).
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    first_u64(&b)
}

/// etcd `computeMemberID` with a time: what `MemberAdd` uses, so an ID is
/// never reused for a member added again with the same URLs.
pub fn member_id_at(peer_urls: &[String], token: &str, unix_secs: u64) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    b.extend_from_slice(unix_secs.to_string().as_bytes());
    first_u64(&b)
}

/// etcd `RaftCluster.genID`: sha1 of the sorted member IDs, big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    first_u64(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_default_ids() {
        let m = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "cdf818194e3a8c32");
    }
}
