//! A member's identity on disk: its member ID and cluster ID, written on the
//! first start. A member that joined an existing cluster got its ID from
//! `MemberAdd`, which its flags cannot reproduce, so restarts read it here.

use std::path::Path;

use crate::config::{Member, ServerConfig};
use crate::transport::peer::client::{fetch_members, Dialer, PeerCallError};

const ID_FILE: &str = "id";
/// How long a joining member keeps asking the cluster for its membership.
const JOIN_ATTEMPTS: usize = 20;
const JOIN_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: malformed member id file")]
    Malformed { path: String },
    #[error("cannot join the cluster: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("cannot join the cluster: {0}")]
    Unreachable(#[from] PeerCallError),
    #[error("cannot join the cluster: no member with peer URLs {0} in the cluster; add it first (etcdctl member add)")]
    NotAdded(String),
}

fn read(path: &Path) -> Result<Option<(u64, u64)>, IdentityError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IdentityError::Io { path: path.display().to_string(), source }),
    };
    let mut parts = text.split_whitespace().map(|s| u64::from_str_radix(s, 16));
    match (parts.next(), parts.next()) {
        (Some(Ok(m)), Some(Ok(c))) => Ok(Some((m, c))),
        _ => Err(IdentityError::Malformed { path: path.display().to_string() }),
    }
}

fn write(path: &Path, member: u64, cluster: u64) -> Result<(), IdentityError> {
    raftlog::durable::write_file(path, format!("{member:x} {cluster:x}\n").as_bytes())
        .map_err(|source| IdentityError::Io { path: path.display().to_string(), source })
}

/// Settles `cfg.member_id` / `cfg.cluster_id` (and, for a joining member,
/// the current members) before the node starts.
pub async fn resolve(cfg: &mut ServerConfig) -> Result<(), IdentityError> {
    let path = cfg.member_dir().join(ID_FILE);
    if let Some((member, cluster)) = read(&path)? {
        cfg.member_id = member;
        cfg.cluster_id = cluster;
        return Ok(());
    }
    let has_log = cfg.member_dir().join("wal").is_dir();
    if cfg.join_existing && !has_log {
        join(cfg).await?;
    }
    write(&path, cfg.member_id, cfg.cluster_id)
}

/// Asks the other members who we are: the member whose peer URLs are ours
/// (added beforehand with `etcdctl member add`).
async fn join(cfg: &mut ServerConfig) -> Result<(), IdentityError> {
    let others: Vec<String> =
        cfg.members.iter().filter(|m| m.name != cfg.name).flat_map(|m| m.peer_urls.clone()).collect();
    let dialer = Dialer::new(cfg)?;
    let mut last = PeerCallError::NoUrls;
    for _ in 0..JOIN_ATTEMPTS {
        match fetch_members(&others, &dialer).await {
            Ok(resp) => {
                let mut mine = cfg.advertise_peer_urls.clone();
                mine.sort();
                let me = resp.members.iter().find(|m| {
                    let mut urls = m.peer_urls.clone();
                    urls.sort();
                    urls == mine
                });
                let Some(me) = me else {
                    return Err(IdentityError::NotAdded(cfg.advertise_peer_urls.join(",")));
                };
                cfg.member_id = me.id;
                cfg.cluster_id = resp.cluster_id;
                cfg.members = resp
                    .members
                    .iter()
                    .map(|m| Member {
                        name: m.name.clone(),
                        id: m.id,
                        peer_urls: m.peer_urls.clone(),
                        client_urls: m.client_urls.clone(),
                    })
                    .collect();
                tracing::info!(member_id = %format!("{:x}", me.id), "joining an existing cluster");
                return Ok(());
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
    Err(IdentityError::Unreachable(last))
}
