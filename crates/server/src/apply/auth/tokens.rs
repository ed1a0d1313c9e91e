//! etcd's simple tokens: `<16 random letters>.<raft index>`. The member
//! that receives an Authenticate chooses the letters (randomness stays out
//! of apply); applying the entry on every member records the token for
//! the user, so any member accepts it once it has applied that index.
//!
//! Invariants: tokens live in memory only (a restart forgets them, as in
//! etcd); a token expires `--auth-token-ttl` after it was issued or last
//! used; disabling auth drops every token, deleting a user or changing its
//! password drops that user's. Expiry times are this member's clock: they
//! never influence the replicated state, only whether this member still
//! accepts a token. The map is bounded by the live tokens: expired ones
//! are swept whenever one is issued.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;

/// etcd's `defaultSimpleTokenLength`.
const PREFIX_LEN: usize = 16;
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

pub struct SimpleTokens {
    ttl: Duration,
    /// token -> (user, expiry)
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> Self {
        SimpleTokens { ttl, tokens: Mutex::new(HashMap::new()) }
    }

    /// A fresh random prefix (etcd's `genTokenPrefix`).
    pub fn gen_prefix() -> String {
        let mut rng = rand::thread_rng();
        (0..PREFIX_LEN).map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char).collect()
    }

    /// The token an Authenticate entry applied at `index` gives.
    pub fn token(prefix: &str, index: u64) -> String {
        format!("{prefix}.{index}")
    }

    /// The raft index a token names; None if it is not a simple token.
    pub fn index_of(token: &str) -> Option<u64> {
        let (prefix, index) = token.split_once('.')?;
        if index.contains('.') || prefix.contains('.') {
            return None;
        }
        index.parse().ok()
    }

    /// Records a token (at apply).
    pub fn assign(&self, token: String, user: String) {
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, (_, expiry)| *expiry > now);
        tokens.insert(token, (user, now + self.ttl));
    }

    /// The user of a live token, whose life this use extends.
    pub fn lookup(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        let (user, expiry) = tokens.get_mut(token)?;
        if *expiry <= now {
            tokens.remove(token);
            return None;
        }
        *expiry = now + self.ttl;
        Some(user.clone())
    }

    pub fn invalidate_user(&self, user: &str) {
        self.tokens.lock().retain(|_, (u, _)| u != user);
    }

    /// Keeps only the tokens whose user `keep` accepts.
    pub fn retain_users(&self, keep: impl Fn(&str) -> bool) {
        self.tokens.lock().retain(|_, (u, _)| keep(u));
    }

    pub fn clear(&self) {
        self.tokens.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_are_extended_and_are_dropped_per_user() {
        let prefix = SimpleTokens::gen_prefix();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_ne!(prefix, SimpleTokens::gen_prefix());
        let t = SimpleTokens::token(&prefix, 42);
        assert_eq!(SimpleTokens::index_of(&t), Some(42));
        for bad in ["", "abc", "a.b", "a.1.2", ".x"] {
            assert_eq!(SimpleTokens::index_of(bad), None, "{bad}");
        }

        let tokens = SimpleTokens::new(Duration::from_millis(300));
        tokens.assign(t.clone(), "alice".into());
        tokens.assign("b.7".into(), "bob".into());
        assert_eq!(tokens.lookup(&t).as_deref(), Some("alice"));
        assert_eq!(tokens.lookup("nope.1"), None);
        // Used every 100 ms, a 300 ms token stays alive past its first TTL.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(tokens.lookup(&t).as_deref(), Some("alice"));
        }
        assert_eq!(tokens.lookup("b.7"), None, "bob's token was not used and expired");
        tokens.invalidate_user("alice");
        assert_eq!(tokens.lookup(&t), None);
        tokens.assign("c.8".into(), "carol".into());
        tokens.clear();
        assert_eq!(tokens.lookup("c.8"), None);
    }
}
