//! etcd's HashKV: CRC-32C over the bucket name `key`, then every stored
//! (revision key, marshaled mvccpb.KeyValue) up to a revision, where
//! revisions at or below the compacted one count only if they are the live
//! revision of their key at that revision (etcd's `kvindex.Keep(rev)`), and
//! a tombstone at exactly the compacted revision is skipped (etcd versions
//! disagree on keeping it). Members with the same history give the same hash
//! as etcd, which is what `etcdctl endpoint hashkv` and corruption checks
//! compare.

use prost::Message;
use std::collections::HashSet;
use storage::mvcc::kv::decode_kv;
use storage::mvcc::revision::RevisionKey;

use storage::{Engine, KeyRange, MvccStore, RangeOptions, Table};

use crate::range::to_pb_kv;

/// CRC-32C (Castagnoli), reflected, as Go's `crc32.MakeTable(crc32.Castagnoli)`.
pub struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        Crc32c { table, crc: !0 }
    }
}

impl Crc32c {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.crc = self.table[((self.crc ^ b as u32) & 0xff) as usize] ^ (self.crc >> 8);
        }
    }
    pub fn finish(&self) -> u32 {
        !self.crc
    }
}

pub fn hash_kv(mvcc: &MvccStore, rev: i64, compact_rev: i64) -> Result<u32, String> {
    let engine: &dyn Engine = mvcc.engine().as_ref();
    let live = mvcc
        .range(&KeyRange::from_etcd(&[0], &[0]), RangeOptions { rev, ..Default::default() })
        .map_err(|e| e.to_string())?;
    let keep: HashSet<(Vec<u8>, i64)> =
        live.kvs.into_iter().filter(|kv| kv.mod_revision <= compact_rev).map(|kv| (kv.key, kv.mod_revision)).collect();
    let mut h = Crc32c::default();
    h.update(b"key");
    let mut err = None;
    engine
        .scan(Table::Key, &[], None, &mut |k, v| {
            let rk = match RevisionKey::decode(k) {
                Ok(rk) => rk,
                Err(e) => {
                    err = Some(e.to_string());
                    return false;
                }
            };
            if rk.rev.main > rev {
                return false;
            }
            if rk.rev.main == compact_rev && rk.tombstone {
                return true;
            }
            match decode_kv(v) {
                Ok(kv) if rk.rev.main <= compact_rev && !keep.contains(&(kv.key.clone(), rk.rev.main)) => true,
                Ok(kv) => {
                    h.update(k);
                    h.update(&to_pb_kv(kv).encode_to_vec());
                    true
                }
                Err(e) => {
                    err = Some(e.to_string());
                    false
                }
            }
        })
        .map_err(|e| e.to_string())?;
    match err {
        Some(e) => Err(e),
        None => Ok(h.finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        let mut h = Crc32c::default();
        h.update(b"123456789");
        assert_eq!(h.finish(), 0xE306_9283);
    }
}
