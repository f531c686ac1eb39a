//! The process's allocator told to keep the memory it frees, so that attribution's large
//! temporaries are recycled instead of page-faulted and cleared afresh in every pass.
//!
//! An attribution pass allocates and frees the same few-megabyte arrays (activations of
//! hundreds of rows, `[rows, vocab]` logits, gradients) hundreds of times. glibc's defaults
//! serve each one above its dynamic mmap threshold with a fresh `mmap` and return it with
//! `munmap`, and trim the heap's top back to the kernel as soon as 128 KiB are free, so every
//! pass faults in and zero-fills its arrays again: about 16,600 page faults (65 MB) per gpt2
//! one-prompt IG, about a tenth of its `perf` samples in the kernel's `clear_page` on a 2-core KVM guest
//! (session 15, `perf`). With the heap kept (the mmap threshold at glibc's 64-bit maximum,
//! trimming only above 2 GiB free, the heap grown 256 MiB at a time) steady-state passes
//! fault no page at all, and IG runs 3-5 % faster on bert and gpt2 shapes with the same
//! peak RSS (README "Speed", session 15). Neither jemalloc nor mimalloc did better here
//! (session 14), and this needs no dependency beyond the C library's own `mallopt`.
//!
//! It is a bet on reuse: an allocation served from the kept heap is cleared by `calloc` on
//! the calling thread where a fresh `mmap` came zeroed, so a process that runs one forward
//! pass and exits (`kn-cli predict`: 0.30 -> 0.32 s) loses what many passes gain. A
//! process-wide choice, so only programs call it, for attribution work (kn-cli's `attribute`,
//! `neurons` and `bench`, kn-pararel, the Python module), never the library on its own
//! initiative. Elsewhere than on glibc it does nothing.

/// Makes glibc's `malloc` keep freed memory for reuse (see the module docs); returns whether
/// every setting was accepted (always `false` where the C library is not glibc).
///
/// Call it once, early, before the allocation-heavy work starts; calling it again is harmless.
pub fn retain_freed_memory() -> bool {
    imp::retain_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    /// glibc's largest accepted mmap threshold on 64-bit targets (`HEAP_MAX_SIZE / 2`).
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    /// Free memory at the heap's top is returned to the kernel only above this.
    const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;
    /// The heap grows by this much beyond each request (untouched pages cost no RSS).
    const TOP_PAD: libc::c_int = 256 << 20;

    pub(super) fn retain_freed_memory() -> bool {
        // SAFETY: `mallopt` only records allocator parameters (under the allocator's own
        // lock); it takes plain integers and touches no memory of ours.
        unsafe {
            let mmap = libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1;
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1;
            let pad = libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1;
            mmap && trim && pad
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn retain_freed_memory() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_every_setting() {
        assert!(super::retain_freed_memory());
        // Allocations still work, large ones included.
        let v = vec![1.0f32; 40 << 20];
        assert_eq!(v.iter().map(|&x| f64::from(x)).sum::<f64>(), f64::from(40u32 << 20));
    }
}
