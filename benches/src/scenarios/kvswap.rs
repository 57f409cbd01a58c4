//! `farmem-bench kvswap`: swapping a sequence group's KV cache out to pinned host memory and back
//! in over the copy engine (vLLM's preemption by swapping, PagedAttention §4.5), with the
//! copies batched and coalesced (`farmem_gpu::kv::DeviceBlockStore`, one DMA per run of
//! consecutive blocks) vs one copy per block (vLLM's `swap_blocks` loop).
//!
//! # What runs
//!
//! A `BlockManager` (prefix caching off, so a swap-in copies every block) holds one group whose
//! prompt fills `--blocks` blocks of `--block-size` tokens; each sample swaps it out and back in
//! through a `DeviceBlockStore`, timed with events on the store's copy stream. Two KV shapes of an
//! OPT-13B-like model (`--layers` 40 × 2 (K, V) × `--hidden` 5120 × 2 bytes per value):
//!
//! * **stack**: a slot holds a token's KV of every layer (800 KiB), so a 16-token block is
//!   12.5 MiB and the default group of 32 blocks is 400 MiB each way;
//! * **layer**: a slot holds one layer's KV (20 KiB, a 320 KiB block): vLLM keeps one cache
//!   tensor per layer and swaps each separately, so this is one layer's share of a swap, where
//!   per-copy overheads weigh more;
//! * **layer_frag**: the layer shape with the group's blocks interleaved with another group's
//!   (two sequences decoding side by side take alternate blocks), so no two are consecutive and
//!   coalescing has nothing to merge: the limit of the technique, reported as measured.
//!
//! Backends: the simulated GPU always (default config, PCIe 3.0 ×16 at 12 GB/s with 5 µs per
//! copy: its times are exact model times, identical on every run), and CUDA when built with
//! `--features cuda` and a GPU is present (device event time; one untimed round first).
//!
//! # Figures
//!
//! Per backend, shape and mode: median swap-out and swap-in times, copies per swap, and the
//! effective bandwidth (bytes moved both ways / (swap-out + swap-in time)); per backend and shape
//! the speedup of coalesced over per-block. Target: coalescing never loses (speedup ≥ 1.0 within
//! 2 % noise on CUDA).

use std::sync::Arc;

use clap::Parser;
use farmem_gpu::device::{CudaDevice, Device, SimConfig, SimDevice};
use farmem_gpu::kv::{BlockManager, CopyMode, DeviceBlockStore, GroupId, KvConfig, KvStore};

use crate::{median, ratio, Report, Result, Scenario};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "kvswap",
    about: "KV-cache swap out/in over the copy engine: coalesced batched copies vs one per block",
    run,
};

#[derive(Parser, Debug)]
#[command(name = "farmem-bench kvswap", about = SCENARIO.about)]
struct Args {
    /// Blocks of the swapped sequence group.
    #[arg(long, default_value_t = 32)]
    blocks: usize,
    /// Tokens per block.
    #[arg(long, default_value_t = 16)]
    block_size: usize,
    /// Transformer layers of the model.
    #[arg(long, default_value_t = 40)]
    layers: usize,
    /// Hidden size (keys and values are each `hidden` values per layer and token).
    #[arg(long, default_value_t = 5120)]
    hidden: usize,
    /// Bytes per value (2 for fp16).
    #[arg(long, default_value_t = 2)]
    value_bytes: usize,
    /// Swap round trips measured per backend, shape and mode (medians are reported).
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Skip the CUDA backend even when it is available.
    #[arg(long)]
    no_cuda: bool,
}

const MODES: [(CopyMode, &str); 2] = [
    (CopyMode::Coalesced, "coalesced"),
    (CopyMode::PerBlock, "per_block"),
];

fn run(args: &[String]) -> Result<Report> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    let samples = args.samples.max(1);
    let blocks = args.blocks.max(1);
    let layer_slot = 2 * args.hidden.max(1) * args.value_bytes.max(1);
    let shapes = [
        ("stack", layer_slot * args.layers.max(1)),
        ("layer", layer_slot),
        ("layer_frag", layer_slot),
    ];
    let mut report = Report::new(
        "kvswap",
        &[
            "backend",
            "shape",
            "mode",
            "block_KiB",
            "copies/swap",
            "swap_out_us",
            "swap_in_us",
            "GB/s",
            "speedup",
        ],
    );
    report.figure("samples", samples as u64);
    report.figure("blocks", blocks as u64);
    report.figure("block_size_tokens", args.block_size as u64);
    for (name, slot) in shapes {
        report.figure(&format!("{name}_slot_bytes"), slot as u64);
    }

    let sim = Arc::new(SimDevice::new(SimConfig::default())?);
    report.note(format!("sim: {}", sim.describe()));
    let sim: Arc<dyn Device> = sim;
    for (name, slot) in shapes {
        measure(&mut report, "sim", &sim, name, slot, &args, samples)?;
    }

    if args.no_cuda {
        report.note("cuda: skipped (--no-cuda)");
    } else {
        match CudaDevice::new(0) {
            Ok(gpu) => {
                report.note(format!("cuda: {}", gpu.describe()));
                let gpu: Arc<dyn Device> = Arc::new(gpu);
                for (name, slot) in shapes {
                    measure(&mut report, "cuda", &gpu, name, slot, &args, samples)?;
                }
            }
            Err(e) => report.note(format!("cuda: skipped ({e})")),
        }
    }
    Ok(report)
}

/// Swaps one group out and in `samples` times per mode and reports the medians.
fn measure(
    report: &mut Report,
    backend: &str,
    device: &Arc<dyn Device>,
    shape: &str,
    slot: usize,
    args: &Args,
    samples: usize,
) -> Result<()> {
    let blocks = args.blocks.max(1);
    let fragmented = shape.ends_with("_frag");
    let device_blocks = if fragmented { 2 * blocks } else { blocks };
    let cfg = KvConfig {
        block_size: args.block_size,
        watermark: 0.0,
        enable_prefix_caching: false,
        ..KvConfig::new(device_blocks, blocks)
    };
    let mut store = DeviceBlockStore::new(device.clone(), &cfg, slot)?;
    let mut manager = BlockManager::new(cfg.clone())?;
    let group = GroupId(0);
    if fragmented {
        // Two sequences decoding side by side take alternate blocks off the free list, so the
        // swapped group's blocks are 0, 2, 4, ...: no two consecutive, nothing to coalesce.
        let a = manager.allocate(group, &[0], None)?.seq;
        let b = manager.allocate(GroupId(1), &[0], None)?.seq;
        for t in 1..(blocks * cfg.block_size) as u32 {
            manager.append_token(a, t)?;
            manager.append_token(b, t)?;
        }
    } else {
        let prompt: Vec<u32> = (0..(blocks * cfg.block_size) as u32).collect();
        manager.allocate(group, &prompt, None)?;
    }
    let block_bytes = store.block_bytes() as u64;
    let bytes = blocks as u64 * block_bytes;
    let stream = store.copy_stream();
    let events = [
        device.create_event()?,
        device.create_event()?,
        device.create_event()?,
    ];
    // out_us[mode], in_us[mode], copies[mode]
    let mut out_us = vec![Vec::new(); MODES.len()];
    let mut in_us = vec![Vec::new(); MODES.len()];
    let mut copies = vec![0u64; MODES.len()];
    // One untimed round first (first touch of pinned pages, clocks), then the samples,
    // interleaving the modes so drift hits both alike.
    for round in 0..=samples {
        for (k, &(mode, _)) in MODES.iter().enumerate() {
            store.set_copy_mode(mode);
            let before = store.copies_issued();
            device.record_event(events[0], stream)?;
            let out = manager.swap_out(group)?;
            store.swap_out(&out)?;
            device.record_event(events[1], stream)?;
            let back = manager.swap_in(group)?;
            store.swap_in(&back)?;
            device.record_event(events[2], stream)?;
            device.synchronize_event(events[2])?;
            if round > 0 {
                out_us[k].push(device.elapsed(events[0], events[1])?.as_secs_f64() * 1e6);
                in_us[k].push(device.elapsed(events[1], events[2])?.as_secs_f64() * 1e6);
                copies[k] = (store.copies_issued() - before) / 2;
            }
        }
    }
    let med_total: Vec<f64> = (0..MODES.len())
        .map(|k| median(&out_us[k]) + median(&in_us[k]))
        .collect();
    let speedup = ratio(med_total[1], med_total[0]);
    for (k, &(_, mode)) in MODES.iter().enumerate() {
        let (o, i) = (median(&out_us[k]), median(&in_us[k]));
        // Bytes over microseconds is MB/s; / 1e3 gives GB/s.
        let gb_per_s = ratio(2.0 * bytes as f64, o + i) / 1e3;
        report.row(&[
            backend.to_string(),
            shape.to_string(),
            mode.to_string(),
            format!("{:.0}", block_bytes as f64 / 1024.0),
            copies[k].to_string(),
            format!("{o:.1}"),
            format!("{i:.1}"),
            format!("{gb_per_s:.2}"),
            if k == 0 {
                format!("{speedup:.3}")
            } else {
                String::new()
            },
        ]);
        let p = format!("{backend}_{shape}_{mode}");
        report.figure_f64(&format!("{p}_swap_out_us"), o);
        report.figure_f64(&format!("{p}_swap_in_us"), i);
        report.figure_f64(&format!("{p}_gb_per_s"), gb_per_s);
        report.figure(&format!("{p}_copies_per_swap"), copies[k]);
    }
    report.figure(&format!("{backend}_{shape}_bytes_per_swap"), bytes);
    if fragmented {
        // Nothing to coalesce: the modes issue the same copies, so only noise separates them.
        report.figure_f64(&format!("{backend}_{shape}_coalesced_speedup"), speedup);
        return Ok(());
    }
    report.figure_f64(&format!("{backend}_{shape}_coalesced_speedup"), speedup);
    let slack = if backend == "sim" { 1.0 } else { 0.98 };
    report.target(
        &format!("{backend}_{shape}_coalescing_never_loses"),
        &format!(
            "{backend} {shape}: coalesced swap out+in {:.1} us <= per-block {:.1} us{}",
            med_total[0],
            med_total[1],
            if slack < 1.0 { " (+2% noise)" } else { "" }
        ),
        speedup >= slack,
    );
    Ok(())
}
