//! The full 16 × 6 tile of a weight product on AVX2 + FMA, written in assembly.
//!
//! Why by hand: `gemm-f32`'s own 16 × 6 FMA microkernel (the one [`super::packed`] otherwise
//! calls for full tiles) takes the activation row stride at run time and LLVM turns its six
//! broadcasts per depth step into a serial chain of pointer additions: 56 instructions per
//! two steps, 4.7 per cycle at the FMA units' pace. That is within a Zen 3 core's dispatch
//! width when it runs alone, but on a cloud host whose other hardware thread of the core is busy
//! (the machines this project is measured on), the two threads share the dispatch slots and the
//! kernel falls to about 65 % of the FMA peak, where a loop of bare FMAs keeps its full rate.
//! Here the six activation rows are reached from two base registers by scaled-index addressing
//! with immediate offsets, four depth steps per loop: 83 instructions per four steps (3.5 per
//! cycle), the arithmetic unchanged: the same multiply-adds in the same order per output, so
//! every output equals `gemm-f32`'s bit for bit (tested). Measured in isolation on a 2-core Zen 3
//! under KVM, both cores running it at once (interleaved with `gemm-f32`'s, 100 rounds): 86-94
//! GFLOP/s per core against 69-87 (README "Speed", session 19).
#![allow(unsafe_code)]

/// One depth step `+ $b` bytes into the activation rows, `+ $a` bytes into the packed strip:
/// two strip loads, six broadcasts (rows 0-2 from `{b0}`, rows 3-5 from `{b3}`, `{s}` bytes
/// apart), twelve multiply-adds into `ymm0..ymm11` (row `j` in `ymm(2j)`, `ymm(2j+1)`).
#[rustfmt::skip]
macro_rules! step {
    ($a:literal, $b:literal) => {
        concat!(
            "vmovups ymm12, [{a} + ", $a, "]\n",
            "vmovups ymm13, [{a} + ", $a, " + 32]\n",
            "vbroadcastss ymm14, [{b0} + ", $b, "]\n",
            "vfmadd231ps ymm0, ymm12, ymm14\n",
            "vfmadd231ps ymm1, ymm13, ymm14\n",
            "vbroadcastss ymm15, [{b0} + {s} + ", $b, "]\n",
            "vfmadd231ps ymm2, ymm12, ymm15\n",
            "vfmadd231ps ymm3, ymm13, ymm15\n",
            "vbroadcastss ymm14, [{b0} + {s}*2 + ", $b, "]\n",
            "vfmadd231ps ymm4, ymm12, ymm14\n",
            "vfmadd231ps ymm5, ymm13, ymm14\n",
            "vbroadcastss ymm15, [{b3} + ", $b, "]\n",
            "vfmadd231ps ymm6, ymm12, ymm15\n",
            "vfmadd231ps ymm7, ymm13, ymm15\n",
            "vbroadcastss ymm14, [{b3} + {s} + ", $b, "]\n",
            "vfmadd231ps ymm8, ymm12, ymm14\n",
            "vfmadd231ps ymm9, ymm13, ymm14\n",
            "vbroadcastss ymm15, [{b3} + {s}*2 + ", $b, "]\n",
            "vfmadd231ps ymm10, ymm12, ymm15\n",
            "vfmadd231ps ymm11, ymm13, ymm15\n",
        )
    };
}

/// Output row `$row` (`[{$base} $idx]`) from registers `ymm$r0`, `ymm$r1`: added to what is
/// there (`add`) or written over it (`put`).
#[rustfmt::skip]
macro_rules! row_out {
    (add, $base:literal, $idx:literal, $r0:literal, $r1:literal) => {
        concat!(
            "vaddps ymm", $r0, ", ymm", $r0, ", [", $base, $idx, "]\n",
            "vaddps ymm", $r1, ", ymm", $r1, ", [", $base, $idx, " + 32]\n",
            row_out!(put, $base, $idx, $r0, $r1),
        )
    };
    (put, $base:literal, $idx:literal, $r0:literal, $r1:literal) => {
        concat!(
            "vmovups [", $base, $idx, "], ymm", $r0, "\n",
            "vmovups [", $base, $idx, " + 32], ymm", $r1, "\n",
        )
    };
}

/// `out[j][c] = Σ_p strip[p·16 + c] · rows[j·rs + p]` for `j < 6`, `c < 16`, `p < depth`
/// (`accumulate`: added to `out` instead), `out[j][c]` at `dst + j·ds + c`.
///
/// The sum over `p` runs in order from zero, one fused multiply-add per step, as
/// `gemm-f32`'s kernel runs it; adding to `out` comes after the sum.
///
/// # Safety
/// The CPU must have AVX2 and FMA. `strip` must be readable for `16·depth` values, `rows` at
/// `j·rs + p` for `j < 6`, `p < depth`, and `dst` readable (when `accumulate`) and writable at
/// `j·ds + c` for `j < 6`, `c < 16`; `rs` and `ds` (in elements) times 4 must not overflow.
///
/// # Shapes
/// - `strip`: `[depth, 16]`, `rows`: `[6, depth]` (row stride `rs`), `dst`: `[6, 16]` (row
///   stride `ds`)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile(
    depth: usize,
    strip: *const f32,
    rows: *const f32,
    rs: usize,
    dst: *mut f32,
    ds: usize,
    accumulate: bool,
) {
    // SAFETY: the caller vouches for every address the loop reads (`strip` for `16·depth`
    // values, the six rows for `depth` values each) and the tile it writes; the registers it
    // changes are declared, it touches no stack and leaves the flags as clobbered (default).
    unsafe {
        std::arch::asm!(
            "vxorps ymm0, ymm0, ymm0",
            "vxorps ymm1, ymm1, ymm1",
            "vxorps ymm2, ymm2, ymm2",
            "vxorps ymm3, ymm3, ymm3",
            "vxorps ymm4, ymm4, ymm4",
            "vxorps ymm5, ymm5, ymm5",
            "vxorps ymm6, ymm6, ymm6",
            "vxorps ymm7, ymm7, ymm7",
            "vxorps ymm8, ymm8, ymm8",
            "vxorps ymm9, ymm9, ymm9",
            "vxorps ymm10, ymm10, ymm10",
            "vxorps ymm11, ymm11, ymm11",
            // Four steps per iteration, then the rest one at a time.
            "test {n}, {n}",
            "jz 3f",
            ".p2align 5",
            "2:",
            step!("0", "0"),
            step!("64", "4"),
            step!("128", "8"),
            step!("192", "12"),
            "add {a}, 256",
            "add {b0}, 16",
            "add {b3}, 16",
            "dec {n}",
            "jnz 2b",
            "3:",
            "test {r}, {r}",
            "jz 5f",
            "4:",
            step!("0", "0"),
            "add {a}, 64",
            "add {b0}, 4",
            "add {b3}, 4",
            "dec {r}",
            "jnz 4b",
            "5:",
            // Output rows 0-2 from `{d}`, rows 3-5 from `{b3}` = `{d}` + 3 rows.
            "lea {b3}, [{d} + {ds}*2]",
            "add {b3}, {ds}",
            "test {acc}, {acc}",
            "jz 6f",
            row_out!(add, "{d}", "", "0", "1"),
            row_out!(add, "{d}", " + {ds}", "2", "3"),
            row_out!(add, "{d}", " + {ds}*2", "4", "5"),
            row_out!(add, "{b3}", "", "6", "7"),
            row_out!(add, "{b3}", " + {ds}", "8", "9"),
            row_out!(add, "{b3}", " + {ds}*2", "10", "11"),
            "jmp 7f",
            "6:",
            row_out!(put, "{d}", "", "0", "1"),
            row_out!(put, "{d}", " + {ds}", "2", "3"),
            row_out!(put, "{d}", " + {ds}*2", "4", "5"),
            row_out!(put, "{b3}", "", "6", "7"),
            row_out!(put, "{b3}", " + {ds}", "8", "9"),
            row_out!(put, "{b3}", " + {ds}*2", "10", "11"),
            "7:",
            "vzeroupper",
            a = inout(reg) strip => _,
            b0 = inout(reg) rows => _,
            b3 = inout(reg) rows.wrapping_add(3 * rs) => _,
            s = in(reg) rs * 4,
            n = inout(reg) depth / 4 => _,
            r = inout(reg) depth % 4 => _,
            d = in(reg) dst,
            ds = in(reg) ds * 4,
            acc = in(reg) usize::from(accumulate),
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn the_tile_equals_gemm_f32s_kernel_bit_for_bit() {
        if !super::super::avx2_fma() {
            eprintln!("no AVX2 + FMA here: the tile is never called");
            return;
        }
        let ukr = gemm_f32::microkernel::fma::f32::UKR[1][5];
        for depth in [0usize, 1, 3, 4, 7, 64, 257, 768] {
            let rs = depth + 5;
            let strip: Vec<f32> = (0..16 * depth).map(|i| ((i * 7) % 13) as f32 * 0.137 - 0.61).collect();
            let rows: Vec<f32> = (0..6 * rs).map(|i| ((i * 3) % 11) as f32 * 0.093 - 0.4).collect();
            for accumulate in [false, true] {
                let start: Vec<f32> = (0..6 * 20).map(|i| (i as f32 * 0.31).sin()).collect();
                let (mut ours, mut theirs) = (start.clone(), start.clone());
                // SAFETY: AVX2 + FMA checked above; every buffer holds what each kernel reads
                // and writes (6 rows of 16 at stride 20; 6 rows of `depth` at stride `rs`).
                unsafe {
                    super::tile(depth, strip.as_ptr(), rows.as_ptr(), rs, ours.as_mut_ptr(), 20, accumulate);
                    ukr(
                        16,
                        6,
                        depth,
                        theirs.as_mut_ptr(),
                        strip.as_ptr(),
                        rows.as_ptr(),
                        20,
                        1,
                        16,
                        1,
                        rs as isize,
                        if accumulate { 1.0 } else { 0.0 },
                        1.0,
                        u8::from(accumulate),
                        false,
                        false,
                        false,
                        std::ptr::null(),
                    );
                }
                assert_eq!(
                    ours.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    theirs.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "depth {depth}, accumulate {accumulate}"
                );
                // Outside the 16 columns of each row nothing was written.
                for (j, row) in ours.chunks(20).enumerate() {
                    assert_eq!(&row[16..], &start[j * 20 + 16..j * 20 + 20], "row {j}");
                }
            }
        }
    }
}
