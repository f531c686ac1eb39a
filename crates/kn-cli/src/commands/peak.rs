//! The machine `kn-cli bench` runs on: its CPU model and its measured float32 FMA peak.
//!
//! Speed figures of this project are ratios measured side by side; a fraction of the FMA peak
//! is the one absolute figure that carries from one CPU to another (a Zen 1 splits 256-bit
//! FMAs, a Zen 3 or an AVX-512 Xeon has two full-width units per core). No crate measures a
//! peak, so this is a tight loop of independent fused multiply-adds on every core at once, in
//! the widest vector width the CPU has (runtime detection), the way peak-FLOPS probes do it.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

/// A measured peak.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Peak {
    /// Instruction set of the loop: `avx512f`, `avx2+fma`, or `scalar` (no SIMD FMA found).
    pub isa: &'static str,
    /// Threads that ran the loop at once.
    pub threads: usize,
    /// float32 GFLOP/s of all threads together (an FMA counts 2).
    pub gflop_per_second: f64,
}

/// The CPU's model name (`/proc/cpuinfo`), or `None` where it cannot be read.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Measures the peak with `threads` threads at once, for about `time` per round, best of three
/// rounds (the first warms the cores up).
pub fn measure(threads: usize, time: Duration) -> Peak {
    let isa = isa();
    let threads = threads.max(1);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let flops: Vec<(f64, f64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(move || run_for(isa, time))).collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        // Each thread's rate over its own time, summed: threads start a little apart.
        let total: f64 = flops.iter().map(|(f, secs)| f / secs).sum();
        best = best.max(total);
    }
    Peak { isa, threads, gflop_per_second: best / 1e9 }
}

/// The widest FMA this CPU runs.
fn isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
    }
    "scalar"
}

/// Runs the loop for about `time`; returns (flops, seconds).
fn run_for(isa: &'static str, time: Duration) -> (f64, f64) {
    const ITERS: usize = 1 << 16;
    let start = Instant::now();
    let mut flops = 0.0;
    let mut sink = 0.0f32;
    while start.elapsed() < time {
        let (f, s) = match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa()` returned "avx512f" only after detecting the feature at run time.
            "avx512f" => unsafe { x86::fma512(ITERS) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa()` returned "avx2+fma" only after detecting both features.
            "avx2+fma" => unsafe { x86::fma256(ITERS) },
            _ => scalar(ITERS),
        };
        flops += f;
        sink += s;
    }
    std::hint::black_box(sink);
    (flops, start.elapsed().as_secs_f64())
}

/// Scalar multiply-adds in 8 independent chains (no SIMD FMA on this CPU).
fn scalar(iters: usize) -> (f64, f32) {
    let mut acc = [1.0f32; 8];
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    for _ in 0..iters {
        for x in &mut acc {
            *x = x.mul_add(a, b);
        }
    }
    ((iters * 8 * 2) as f64, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 16 independent chains of 16-lane FMAs: enough to cover a 4-cycle latency on two units.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma512(iters: usize) -> (f64, f32) {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 16];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for x in acc {
            sum = _mm512_add_ps(sum, x);
        }
        ((iters * 16 * 16 * 2) as f64, _mm512_reduce_add_ps(sum))
    }

    /// 12 independent chains of 8-lane FMAs (12 of the 16 vector registers).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma256(iters: usize) -> (f64, f32) {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for x in acc {
            sum = _mm256_add_ps(sum, x);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        ((iters * 12 * 8 * 2) as f64, lanes.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peak_is_positive_and_the_isa_named() {
        let p = super::measure(1, std::time::Duration::from_millis(20));
        assert!(p.gflop_per_second > 0.1, "{p:?}");
        assert!(["avx512f", "avx2+fma", "scalar"].contains(&p.isa));
    }
}
