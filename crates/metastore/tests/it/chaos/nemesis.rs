//! The nemesis: faults one at a time on a schedule drawn from a seeded RNG,
//! each healed before the next, so the cluster always regains a quorum and
//! the workload keeps making progress (a run that only waits proves
//! little). Every draw happens whatever the fault meets, so a seed replays
//! the same schedule; "the leader" as a target is resolved at run time.
//!
//! A member that exits when nobody killed it is a crash, reported with its
//! log tail (a full disk may legitimately stop its member: etcd fails stop
//! on a WAL error too; that member is restarted once the disk has room).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::Cluster;

use super::rng::Rng;

/// Bound on a (re)started member becoming ready.
const READY: Duration = Duration::from_secs(30);
/// Size of the tmpfs under the disk-fault member's data dir: room for two
/// preallocated 64 MiB WAL segments and two snapshots of a long soak's
/// state (every revision kept), so only the filler fills it.
const TMPFS_SIZE: &str = "512m";
const FILLER: &str = "chaos-filler";
/// What a member that met the full disk says (the OS's ENOSPC text).
const NO_SPACE: &str = "No space left on device";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Kill,
    Stall,
    Partition,
    Transfer,
    Restart,
    DiskFull,
}

const FAULTS: [Fault; 6] =
    [Fault::Kill, Fault::Stall, Fault::Partition, Fault::Transfer, Fault::Restart, Fault::DiskFull];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill-9",
            Fault::Stall => "sigstop",
            Fault::Partition => "partition",
            Fault::Transfer => "leader-transfer",
            Fault::Restart => "restart",
            Fault::DiskFull => "disk-full",
        }
    }
}

/// A tmpfs mounted on one member's data dir, unmounted when dropped.
pub struct Tmpfs {
    pub member: usize,
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it before the member's first start; None (with the reason)
    /// when that is not possible here.
    pub fn mount(c: &Cluster, member: usize) -> Result<Tmpfs, String> {
        let dir = c.member(member).data_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { member, dir })
    }

    /// Writes a filler file until the tmpfs has no room; its size.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let Ok(mut f) = std::fs::File::create(self.dir.join(FILLER)) else { return 0 };
        let chunk = vec![0u8; 1 << 20];
        let mut n = 0u64;
        while f.write_all(&chunk).is_ok() {
            n += chunk.len() as u64;
        }
        // Fill the last partial chunk's worth too.
        let small = vec![0u8; 4096];
        while f.write_all(&small).is_ok() {
            n += small.len() as u64;
        }
        n
    }

    fn drain(&self) {
        let _ = std::fs::remove_file(self.dir.join(FILLER));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// What the nemesis did and saw.
#[derive(Default)]
pub struct NemesisLog {
    pub injected: BTreeMap<Fault, u64>,
    /// Faults that could not be applied as drawn (e.g. no leader to move).
    pub skipped: u64,
    pub lines: Vec<String>,
    /// Crashes and members that would not restart: violations.
    pub problems: Vec<String>,
    /// Members stopped by a full disk (legal: counted, restarted).
    pub disk_stops: u64,
}

/// One scheduled fault: its kind, the member it hits (`target`), a second
/// member for a leader transfer (`other`), whether five members split 2|3
/// rather than losing one, and how long the fault holds.
struct Draw {
    fault: Fault,
    target: usize,
    other: usize,
    split: bool,
    hold: Duration,
}

pub struct Nemesis {
    rng: Rng,
    pub c: Cluster,
    pub disk: Option<Tmpfs>,
    ids: Vec<u64>,
    start: Instant,
    rt: tokio::runtime::Handle,
    pub log: NemesisLog,
}

impl Nemesis {
    pub fn new(seed: u64, c: Cluster, disk: Option<Tmpfs>, ids: Vec<u64>, start: Instant) -> Nemesis {
        Nemesis {
            rng: Rng::new(seed),
            c,
            disk,
            ids,
            start,
            rt: tokio::runtime::Handle::current(),
            log: NemesisLog::default(),
        }
    }

    fn note(&mut self, line: String) {
        let line = format!("[{:7.1}s] {line}", self.start.elapsed().as_secs_f64());
        println!("chaos: {line}");
        self.log.lines.push(line);
    }

    /// Injects faults until `until` (blocking: run it on a blocking thread).
    pub fn run(&mut self, until: Instant) {
        let n = self.c.len() as u64;
        while Instant::now() < until {
            // Every draw is made up front, whatever happens next.
            let gap = self.rng.millis(300, 1500);
            let fault = FAULTS[self.rng.below(FAULTS.len() as u64) as usize];
            let at_leader = self.rng.below(2) == 0;
            let index = self.rng.below(n) as usize;
            let other = self.rng.below(n) as usize;
            let split = self.rng.below(2) == 0;
            let hold = self.rng.millis(500, 3000);
            std::thread::sleep(gap.min(until.saturating_duration_since(Instant::now())));
            if Instant::now() >= until {
                break;
            }
            let target = if at_leader { self.c.wait_leader(Duration::from_secs(3)).unwrap_or(index) } else { index };
            self.inject(Draw { fault, target, other, split, hold });
            self.reap_crashes();
        }
    }

    fn inject(&mut self, d: Draw) {
        let Draw { fault, target, other, split, hold } = d;
        let n = self.c.len();
        let name = fault.name();
        match fault {
            Fault::Kill => {
                self.note(format!("{name} m{target}, down for {hold:?}"));
                self.c.member_mut(target).kill9();
                std::thread::sleep(hold);
                self.start_member(target);
            }
            Fault::Stall => {
                let Some(pid) = self.c.member(target).pid() else { return self.skip(fault, "not running") };
                self.note(format!("{name} m{target} for {hold:?}"));
                signal(pid, "STOP");
                std::thread::sleep(hold);
                signal(pid, "CONT");
            }
            Fault::Partition => {
                // Five members: a 2|3 split half the time, else one cut off.
                if n >= 5 && split {
                    let minority = [target, (target + 1) % n];
                    let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
                    self.note(format!("{name} {minority:?} | {majority:?} for {hold:?}"));
                    self.c.partition(&[&minority, &majority]);
                } else {
                    self.note(format!("{name}: m{target} isolated for {hold:?}"));
                    self.c.isolate(target);
                }
                std::thread::sleep(hold);
                self.c.heal();
            }
            Fault::Transfer => {
                let Some(leader) = self.c.wait_leader(Duration::from_secs(3)) else {
                    return self.skip(fault, "no leader");
                };
                let to = if other == leader { (other + 1) % n } else { other };
                let url = self.c.member(leader).client_url();
                let id = self.ids[to];
                let moved = self.rt.block_on(async move {
                    let opts = etcd_client::ConnectOptions::new()
                        .with_timeout(Duration::from_secs(5))
                        .with_connect_timeout(Duration::from_secs(2));
                    let mut c = etcd_client::Client::connect([url], Some(opts)).await.map_err(|e| e.to_string())?;
                    c.move_leader(id).await.map(|_| ()).map_err(|e| e.to_string())
                });
                self.note(format!("{name} m{leader} -> m{to}: {}", moved.err().unwrap_or_else(|| "ok".into())));
                std::thread::sleep(hold.min(Duration::from_secs(1)));
            }
            Fault::Restart => {
                self.note(format!("{name} m{target} (SIGTERM, then start)"));
                let _ = self.c.member_mut(target).terminate(Duration::from_secs(10));
                self.start_member(target);
            }
            Fault::DiskFull => {
                let Some(member) = self.disk.as_ref().map(|d| d.member) else {
                    return self.skip(fault, "no tmpfs");
                };
                let filled = self.disk.as_ref().map_or(0, Tmpfs::fill);
                self.note(format!("{name} m{member}: {} MiB filler, for {hold:?}", filled >> 20));
                std::thread::sleep(hold);
                if let Some(d) = &self.disk {
                    d.drain();
                }
                // A member that hit the full disk is stopping (its shutdown
                // takes a grace period); wait for that, so it is not taken
                // for a crash later.
                let said_so = |m: &testkit::member::Member| current_run(&m.log_text()).contains(NO_SPACE);
                if said_so(self.c.member(member)) {
                    let m = self.c.member_mut(member);
                    testkit::wait_until(Duration::from_secs(10), || !m.is_running());
                }
            }
        }
        *self.log.injected.entry(fault).or_default() += 1;
    }

    fn skip(&mut self, fault: Fault, why: &str) {
        self.log.skipped += 1;
        self.note(format!("{} skipped: {why}", fault.name()));
    }

    /// Starts member `i` and waits for it; a member that cannot start is a
    /// problem.
    fn start_member(&mut self, i: usize) {
        let m = self.c.member_mut(i);
        m.spawn();
        if let Err(why) = m.wait_ready(READY) {
            let tail = tail(&m.log_text(), 40);
            self.log.problems.push(format!("m{i} did not restart: {why}\n{tail}"));
            self.note(format!("m{i} did not restart: {why}"));
        }
    }

    /// Members that exited on their own: crashes, unless a full disk
    /// stopped the disk member.
    fn reap_crashes(&mut self) {
        for i in 0..self.c.len() {
            let m = self.c.member_mut(i);
            if m.pid().is_none() || m.is_running() {
                continue;
            }
            let status = m.exit_status();
            let text = m.log_text();
            let disk_member = self.disk.as_ref().is_some_and(|d| d.member == i);
            if disk_member && current_run(&text).contains(NO_SPACE) {
                // Fail-stop on a full disk is what etcd does too.
                self.log.disk_stops += 1;
                self.note(format!("m{i} stopped on the full disk ({status:?}); restarting"));
            } else {
                let tail = tail(&text, 40);
                self.log.problems.push(format!("m{i} exited on its own ({status:?}); log tail:\n{tail}"));
                self.note(format!("m{i} exited on its own ({status:?}); restarting"));
            }
            self.start_member(i);
        }
    }

    /// Undoes everything: every link healed, every member running (a
    /// crashed one is reported first), the disk drained.
    pub fn heal_all(&mut self) {
        self.c.heal();
        if let Some(d) = &self.disk {
            d.drain();
        }
        for i in 0..self.c.len() {
            if let Some(pid) = self.c.member(i).pid() {
                signal(pid, "CONT");
            }
        }
        self.reap_crashes();
        for i in 0..self.c.len() {
            if self.c.member(i).pid().is_none() {
                self.start_member(i);
            }
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// The part of a member's log written by its latest process.
fn current_run(log: &str) -> &str {
    log.rfind("testkit: start #").map_or(log, |i| &log[i..])
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
