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

use api::EtcdError;
use parking_lot::Mutex;
use rand::Rng;

use super::jwt::JwtKeys;
use super::AuthInfo;

/// The token provider `--auth-token` chose (etcd's `TokenProvider`).
pub enum Tokens {
    Simple(SimpleTokens),
    Jwt(Box<JwtKeys>),
}

impl Tokens {
    /// The token an Authenticate applied at `index` gives `user`, the auth
    /// store being at `revision`. Simple tokens are recorded here; a JWT
    /// token is only signed (a member with the public key alone cannot).
    pub fn assign(&self, prefix: &str, index: u64, user: String, revision: u64) -> Result<String, EtcdError> {
        match self {
            Tokens::Simple(t) => {
                let token = SimpleTokens::token(prefix, index);
                t.assign(token.clone(), user);
                Ok(token)
            }
            Tokens::Jwt(k) => k.assign(&user, revision),
        }
    }

    /// The raft index this member must have applied before it can know a
    /// token: a simple token's (`InvalidAuthToken` if it is not shaped as
    /// one), none for a JWT token, which carries everything.
    pub fn index_to_wait_for(&self, token: &str) -> Result<Option<u64>, EtcdError> {
        match self {
            Tokens::Simple(_) => SimpleTokens::index_of(token).map(Some).ok_or(EtcdError::InvalidAuthToken),
            Tokens::Jwt(_) => Ok(None),
        }
    }

    /// Who a token names (extending a simple token's life); a simple
    /// token is as new as the store (`revision`), a JWT token as its claims.
    pub fn info(&self, token: &str, revision: u64) -> Option<AuthInfo> {
        match self {
            Tokens::Simple(t) => t.lookup(token).map(|user| AuthInfo { user, revision }),
            Tokens::Jwt(k) => k.info(token),
        }
    }

    /// Drops a user's tokens. JWT tokens cannot be taken back: they live
    /// until they expire, and an auth change makes them old (etcd's too).
    pub fn invalidate_user(&self, user: &str) {
        if let Tokens::Simple(t) = self {
            t.invalidate_user(user);
        }
    }

    pub fn retain_users(&self, keep: impl Fn(&str) -> bool) {
        if let Tokens::Simple(t) = self {
            t.retain_users(keep);
        }
    }

    pub fn clear(&self) {
        if let Tokens::Simple(t) = self {
            t.clear();
        }
    }
}

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
