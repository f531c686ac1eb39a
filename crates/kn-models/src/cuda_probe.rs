//! A check that the CUDA driver and NVRTC load and see a GPU, before the cuda backend is used.
//!
//! cudarc (under CubeCL) panics on a worker thread when it cannot load `libcuda` or finds no
//! device, which leaves the caller a channel error instead of a cause. This asks the driver
//! itself, through the same dynamic loading (`libloading`, which cudarc uses), and returns an
//! error naming what is missing. Written by hand: no crate offers a non-panicking probe.

use libloading::{Library, Symbol};

/// The CUDA driver's names, as cudarc searches them (most specific first).
const DRIVER: &[&str] = &["libcuda.so.1", "libcuda.so"];
/// NVRTC, which CubeCL compiles its kernels with (CUDA 13 and 12 wheels and toolkits).
const NVRTC: &[&str] = &["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"];

fn open(names: &[&str]) -> Option<Library> {
    // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's driver and
    // NVRTC, which cudarc loads the same way moments later.
    #[allow(unsafe_code)]
    names.iter().find_map(|n| unsafe { Library::new(*n) }.ok())
}

/// `Ok(n)`: the driver and NVRTC load and the driver sees `n >= 1` GPUs; else why not.
pub fn probe() -> Result<usize, String> {
    let hint = "install the NVIDIA driver and CUDA's NVRTC, or put their folders on LD_LIBRARY_PATH";
    let driver = open(DRIVER)
        .ok_or_else(|| format!("the cuda backend cannot load the CUDA driver ({}): {hint}", DRIVER.join(", ")))?;
    open(NVRTC).ok_or_else(|| format!("the cuda backend cannot load NVRTC ({}): {hint}", NVRTC.join(", ")))?;
    // SAFETY: `cuInit(unsigned int) -> CUresult` and `cuDeviceGetCount(int*) -> CUresult` are the
    // driver API's C signatures (CUresult is a C enum, an i32); `count` outlives the call.
    #[allow(unsafe_code)]
    let count = unsafe {
        let init: Symbol<unsafe extern "C" fn(u32) -> i32> =
            driver.get(b"cuInit\0").map_err(|e| format!("the CUDA driver has no cuInit: {e}"))?;
        let code = init(0);
        if code != 0 {
            return Err(format!(
                "the CUDA driver failed to initialise (CUresult {code}): is a GPU visible to this process?"
            ));
        }
        let get: Symbol<unsafe extern "C" fn(*mut i32) -> i32> =
            driver.get(b"cuDeviceGetCount\0").map_err(|e| format!("the CUDA driver has no cuDeviceGetCount: {e}"))?;
        let mut count = 0i32;
        let code = get(&mut count);
        if code != 0 {
            return Err(format!("the CUDA driver could not count its GPUs (CUresult {code})"));
        }
        count
    };
    match usize::try_from(count) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("the CUDA driver sees no GPU".into()),
    }
}
