//! What the tests that need a real GPU (`gpu_cuda`, `gpu_share_cuda`, the `cuda_*` tests of
//! `gpu_kv_device`) share: opening the GPU, or saying why the test is skipped, and test bytes.

use farmem_gpu::device::{CudaDevice, Device};

/// CUDA device 0, or `None` after printing why not: the tests return early without a GPU, so
/// running them `--ignored` on a machine without one is not a failure.
pub fn gpu() -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(dev) => {
            eprintln!("running on {}", dev.describe());
            Some(dev)
        }
        Err(e) => {
            eprintln!("SKIPPED: no CUDA device: {e}");
            None
        }
    }
}

/// `n` pseudo-random bytes from `seed` (xorshift), so a misplaced or stale byte shows.
// Not every test file that includes this module writes patterns.
#[allow(dead_code)]
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
