//! I/O faults through failpoints (issue 12): a WAL write that fails (EIO),
//! a snapshot file that cannot be written, a crash between recording a
//! leader's snapshot and restoring the engine from it. In each case the
//! member stops rather than go on with state it could not make durable,
//! acknowledges nothing it did not persist, the others carry on, and after
//! a restart without the fault it converges.

use std::path::Path;
use std::time::Duration;

use etcd_client::GetOptions;
use testkit::Cluster;

use crate::faults::{connect, hashes_at, put_all, wait_exit, STOP_BOUND};

fn cluster(n: usize, extra: &[&str]) -> Cluster {
    tokio::task::block_in_place(|| Cluster::start(Path::new(env!("CARGO_BIN_EXE_metastore")), n, extra))
}

/// Keys under `prefix` that member `i` holds (a serializable read: what it
/// applied itself).
async fn count_on(c: &Cluster, i: usize, prefix: &str) -> i64 {
    let mut m = connect(vec![c.member(i).client_url()]).await;
    let opts = GetOptions::new().with_prefix().with_count_only().with_serializable();
    m.get(prefix, Some(opts)).await.expect("count").count()
}

/// A follower's WAL fails on write, then the leader's on fsync: each stops, the
/// cluster keeps its quorum and takes every put, no acknowledged put is
/// lost, and each converges after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_wal_write_error_stops_the_member_and_it_converges() {
    let mut c = cluster(3, &[]);
    put_all(c.endpoints(), "before/", 10, "v").await;
    let leader = tokio::task::block_in_place(|| c.wait_leader(Duration::from_secs(10))).expect("leader");
    let follower = (leader + 1) % 3;
    let mut acked = 10;
    // The follower's write fails, then the leader's fsync.
    for (round, (victim, site)) in [(follower, "wal::write"), (leader, "wal::sync")].into_iter().enumerate() {
        c.member(victim).set_failpoint(site, "error");
        // Through every member, the victim included: whatever it answers
        // must be durable elsewhere (its own WAL fails).
        let prefix = format!("round{round}/");
        let rev = put_all(c.endpoints(), &prefix, 40, "v").await;
        acked += 40;
        let status = wait_exit(&mut c, victim, STOP_BOUND).await;
        assert!(
            status.is_some_and(|s| !s.success()),
            "member {victim} went on with a failing WAL ({status:?}); log:\n{}",
            c.member(victim).log_text()
        );
        assert!(c.member(victim).log_text().contains("writing the WAL failed"), "a clear log line says why");
        tokio::task::block_in_place(|| c.member_mut(victim).start());
        let hashes = hashes_at(&c.endpoints(), rev).await;
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "round {round}: members differ: {hashes:?}");
    }
    for i in 0..3 {
        let mut n = 0;
        for prefix in ["before/", "round0/", "round1/"] {
            n += count_on(&c, i, prefix).await;
        }
        assert_eq!(n, acked, "member {i} holds every acknowledged put");
    }
}

/// A snapshot that cannot be written (a full or failing disk) stops the
/// member, as etcd's "failed to save snapshot" does; a restart keeps every
/// acknowledged put (the WAL still holds them).
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_that_cannot_be_written_stops_the_member_and_loses_nothing() {
    let mut c = cluster(1, &["--snapshot-count", "50"]);
    c.member(0).set_failpoint("snapshot::save", "error");
    let mut client = connect(c.endpoints()).await;
    let mut acked = 0;
    for i in 0..300 {
        match client.put(format!("k/{i:04}"), "v", None).await {
            Ok(_) => acked += 1,
            Err(_) => break,
        }
    }
    let status = wait_exit(&mut c, 0, STOP_BOUND).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the member went on without its snapshot ({status:?}); log:\n{}",
        c.member(0).log_text()
    );
    assert!(acked >= 40, "the first snapshot comes after 50 entries: {acked} puts acknowledged");
    tokio::task::block_in_place(|| c.member_mut(0).start());
    assert!(count_on(&c, 0, "k/").await >= acked, "every acknowledged put survives");
}

/// A member that crashes after recording a leader's snapshot in its log but
/// before restoring its engine from it restores on the next start, and
/// converges.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_while_installing_a_leaders_snapshot_is_recovered() {
    let mut c = cluster(3, &["--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "200"]);
    let leader = tokio::task::block_in_place(|| c.wait_leader(Duration::from_secs(10))).expect("leader");
    let lagging = (leader + 1) % 3;
    tokio::task::block_in_place(|| c.member_mut(lagging).kill9());
    let others: Vec<String> = (0..3).filter(|i| *i != lagging).map(|i| c.member(i).client_url()).collect();
    let rev = put_all(others, "snap/", 600, "v").await;
    c.member_mut(lagging).set_start_failpoints("snapshot::install=panic");
    tokio::task::block_in_place(|| c.member_mut(lagging).spawn());
    let status = wait_exit(&mut c, lagging, Duration::from_secs(30)).await;
    let log = c.member(lagging).log_text();
    assert!(status.is_some_and(|s| !s.success()), "the snapshot was not installed ({status:?}); log:\n{log}");
    assert!(log.contains("failpoint snapshot::install"), "it crashed where the test meant:\n{log}");
    c.member_mut(lagging).set_start_failpoints("");
    tokio::task::block_in_place(|| c.member_mut(lagging).start());
    let hashes = hashes_at(&c.endpoints(), rev).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members differ: {hashes:?}");
    assert_eq!(count_on(&c, lagging, "snap/").await, 600);
}
