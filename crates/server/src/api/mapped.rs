//! [`MappedBuf`]: a fixed-capacity byte buffer in an anonymous memory
//! mapping of its own, for large replies held only until they are copied
//! into tonic's buffer (`range_reply`).
//!
//! Why not a `Vec`: memory the allocator gets back stays resident in its
//! free lists for a while, so freeing a 20 MiB reply's chunks while copying
//! them out did not lower the process's peak (measured: a 20 MiB range
//! raised RSS by 41-47 MiB). An unmapped buffer leaves the process at once.
//! Each mapping counts against `vm.max_map_count` (65,530 by default);
//! 1 MiB buffers keep a 30 MiB reply to 30 of them, and should the kernel
//! refuse one, that range fails with an I/O error, not the process.
//!
//! Invariants: `ptr` is the start of a private read-write mapping of `cap`
//! bytes owned by this value alone and unmapped exactly once, on drop;
//! `len <= cap` bytes from `ptr` are initialised (the rest are the kernel's
//! zero pages, never read through this type).

use std::io;
use std::ptr::NonNull;

pub struct MappedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone (no aliasing pointers
// escape except through `&self`/`&mut self` borrows).
unsafe impl Send for MappedBuf {}
// SAFETY: shared access is read-only (`as_slice`).
unsafe impl Sync for MappedBuf {}

impl MappedBuf {
    /// A buffer of `cap` bytes (at least one).
    pub fn with_capacity(cap: usize) -> io::Result<MappedBuf> {
        let cap = cap.max(1);
        // SAFETY: asks for a fresh private anonymous mapping; it touches no
        // memory of ours and is checked for failure below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(MappedBuf { ptr, cap, len: 0 })
    }

    /// Bytes that still fit.
    pub fn spare(&self) -> usize {
        self.cap - self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`, which must fit ([`Self::spare`]); panics otherwise,
    /// as writing past the mapping would be memory corruption.
    pub fn push(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.spare(), "{} bytes do not fit in {}", bytes.len(), self.spare());
        // SAFETY: `len + bytes.len() <= cap`, so the destination lies inside
        // the mapping, which `bytes` (a borrow of other memory) cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.len), bytes.len()) };
        self.len += bytes.len();
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised (invariant).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping this value owns, once; nothing borrows
        // it any more. A failure could only leak it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.cap) };
    }
}

impl std::fmt::Debug for MappedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedBuf({} of {} bytes)", self.len, self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_is_pushed_up_to_its_capacity() {
        let mut b = MappedBuf::with_capacity(10).unwrap();
        assert!(b.is_empty());
        b.push(b"hello");
        b.push(b"world");
        assert_eq!((b.as_slice(), b.spare()), (&b"helloworld"[..], 0));
        b.push(b"");
        let big = vec![7u8; 3 << 20];
        let mut m = MappedBuf::with_capacity(big.len()).unwrap();
        m.push(&big);
        assert_eq!(m.as_slice(), &big[..]);
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn refuses_to_write_past_its_end() {
        let mut b = MappedBuf::with_capacity(4).unwrap();
        b.push(b"12345");
    }
}
