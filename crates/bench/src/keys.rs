//! Keys, values and a small PRNG for the workloads.
//!
//! A key is its key number in zero-padded decimal, exactly `key_size` bytes:
//! key 42 of size 8 is `00000042`. So `put` and `range` over the same
//! `--key-size`/`--key-space-size` touch the same keys, and keys are readable
//! in etcdctl. Watch values start with the put's sequence number in
//! `SEQ_DIGITS` decimal digits so a watcher can tell which put an event is.
//!
//! With `--k8s-keys` a key is shaped like Kubernetes' registry instead
//! ([`k8s_key`]): `/registry/<resource>/<namespace>/<name>`, 40-80 bytes,
//! one key in ten a pod, names scattered over the key order.

/// Digits of the sequence number at the start of a watch-latency value.
pub const SEQ_DIGITS: usize = 12;

/// Decimal digits needed to print `n`.
pub fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// `n` in zero-padded decimal, `size` bytes. The caller checked `digits(n) <= size`.
pub fn format_key(n: u64, size: usize) -> Vec<u8> {
    format!("{n:0size$}").into_bytes()
}

/// Resources of [`k8s_key`], by key number modulo 10: pods are a tenth.
const K8S_RESOURCES: [&str; 10] = [
    "pods",
    "configmaps",
    "secrets",
    "services/specs",
    "events",
    "serviceaccounts",
    "leases",
    "replicasets",
    "endpointslices",
    "deployments",
];

/// Key number `n` shaped like a Kubernetes registry key:
/// `/registry/<resource>/ns-<0000-0999>/<resource-ish>-<16 hex>`. The hex
/// part is a bijective mix of `n`, so keys are distinct and a sequential
/// load inserts them in scattered key order, as a real cluster does.
pub fn k8s_key(n: u64) -> Vec<u8> {
    let resource = K8S_RESOURCES[(n % 10) as usize];
    let name = resource.rsplit('/').next().unwrap_or(resource);
    let ns = (n / 10) % 1000;
    format!("/registry/{resource}/ns-{ns:04}/{name}-{:016x}", mix(n)).into_bytes()
}

/// splitmix64's finalizer: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Which key an operation writes or reads.
#[derive(Debug, Clone, Copy)]
pub struct KeyGen {
    pub key_size: usize,
    pub key_space_size: u64,
    pub sequential: bool,
    /// Keys shaped by [`k8s_key`] instead of zero-padded numbers.
    pub k8s: bool,
    /// Added to the operation number of sequential keys.
    pub offset: u64,
}

impl KeyGen {
    /// The key for operation `i` (sequential) or a random one of the key space.
    pub fn key(&self, i: u64, rng: &mut Rng) -> Vec<u8> {
        let n = if self.sequential {
            self.offset.wrapping_add(i) % self.key_space_size
        } else {
            rng.below(self.key_space_size)
        };
        if self.k8s {
            k8s_key(n)
        } else {
            format_key(n, self.key_size)
        }
    }
}

/// A value of `size` printable bytes, the same for every operation (as etcd's tool does).
pub fn value(size: usize, rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..size).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect()
}

/// A watch-latency value: the sequence number, then padding up to `size` bytes.
pub fn seq_value(seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{seq:0SEQ_DIGITS$}").into_bytes();
    v.resize(size.max(SEQ_DIGITS), b'x');
    v
}

/// The sequence number at the start of a watch-latency value.
pub fn parse_seq(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v.get(..SEQ_DIGITS)?).ok()?.parse().ok()
}

/// xorshift64*: fast, good enough for choosing keys; not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so nearby seeds give unrelated streams; never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// A seed from the clock and `salt` (the worker number).
    pub fn seeded(salt: u64) -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64);
        Rng::new(t.unwrap_or(0) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (bias is negligible here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_keys() {
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(99_999), 5);
        assert_eq!(digits(u64::MAX), 20);
        assert_eq!(format_key(42, 8), b"00000042");
        assert_eq!(format_key(0, 1), b"0");
    }

    #[test]
    fn k8s_keys_are_distinct_registry_paths_of_40_to_80_bytes() {
        assert_eq!(k8s_key(0), b"/registry/pods/ns-0000/pods-0000000000000000");
        assert!(k8s_key(13).starts_with(b"/registry/services/specs/ns-0001/specs-"));
        let keys: std::collections::HashSet<Vec<u8>> = (0..100_000).map(k8s_key).collect();
        assert_eq!(keys.len(), 100_000);
        assert!(keys.iter().all(|k| (40..=80).contains(&k.len())), "lengths");
        let pods = keys.iter().filter(|k| k.starts_with(b"/registry/pods/")).count();
        assert_eq!(pods, 10_000);
        // Sequential numbers land far apart in key order.
        assert!(k8s_key(10)[28..] > k8s_key(20)[28..] || k8s_key(20)[28..] > k8s_key(30)[28..]);
    }

    #[test]
    fn sequential_keys_wrap_the_key_space() {
        let g = KeyGen { key_size: 4, key_space_size: 3, sequential: true, k8s: false, offset: 0 };
        let mut rng = Rng::new(1);
        let keys: Vec<Vec<u8>> = (0..5).map(|i| g.key(i, &mut rng)).collect();
        assert_eq!(
            keys,
            vec![b"0000".to_vec(), b"0001".to_vec(), b"0002".to_vec(), b"0000".to_vec(), b"0001".to_vec()]
        );
        let shifted = KeyGen { offset: 2, ..g };
        assert_eq!(shifted.key(0, &mut rng), b"0002");
        assert_eq!(shifted.key(1, &mut rng), b"0000");
    }

    #[test]
    fn random_keys_stay_in_the_key_space_and_spread() {
        let g = KeyGen { key_size: 2, key_space_size: 10, sequential: false, k8s: false, offset: 0 };
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for i in 0..10_000 {
            let k = g.key(i, &mut rng);
            assert_eq!(k.len(), 2);
            let n: usize = std::str::from_utf8(&k).unwrap().parse().unwrap();
            seen[n] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn values_and_sequence_numbers() {
        let mut rng = Rng::new(3);
        assert_eq!(value(256, &mut rng).len(), 256);
        let v = seq_value(1234, 32);
        assert_eq!(v.len(), 32);
        assert_eq!(parse_seq(&v), Some(1234));
        assert_eq!(seq_value(5, 1).len(), SEQ_DIGITS);
        assert_eq!(parse_seq(b"short"), None);
        assert_eq!(parse_seq(b"abcdefghijklmnop"), None);
    }

    #[test]
    fn rng_is_deterministic_per_seed() {
        let a: Vec<u64> = {
            let mut r = Rng::new(9);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(9);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
