//! Lowering a background thread's scheduling priority (nice), so that on
//! shared cores the raft thread goes first, then apply, then compaction.

/// Sets the calling thread's nice value to `nice`. Best effort for callers:
/// on an error the thread keeps running at its current priority.
pub fn lower_current_thread(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid and setpriority only read their integer arguments.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
