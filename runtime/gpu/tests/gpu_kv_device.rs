//! `kv::DeviceBlockStore`: the KV pools in (simulated or CUDA) device memory.
//!
//! * Differential: random `BlockManager` operations drive the byte store (`BlockStore`, the
//!   reference) and the device store side by side; after every operation every live sequence
//!   reads back the KV the model wrote, identically from both, and on the simulator (whose memory
//!   starts zeroed, like the byte store's) every block of both pools is byte-identical.
//! * Round trips: swap out then in preserves every slot; copy-on-write copies produce identical
//!   contents; prefix-cache hits read identical contents — in both copy modes.
//! * Batching and ordering on the simulator's trace: a contiguous swap is one copy, and the
//!   compute stream waits for the copies (and the copies for the compute stream).
//! * Errors: an oversized pool is `OutOfDeviceMemory` naming the sizes; bad ids move nothing.
//!
//! The `cuda_*` tests are `#[ignore]`d (CI has no GPU; `run-cuda-tests.sh` runs them) and return
//! early, saying why, when no CUDA device can be opened. `FARMEM_STRESS=1` runs more cases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use farmem_gpu::device::{ComputeStep, Device, DeviceRange, SimConfig, SimDevice, SimEngine};
use farmem_gpu::kv::{
    BlockCopy, BlockId, BlockManager, BlockStore, CopyMode, DeviceBlockStore, GroupId, KvConfig,
    KvStore, Residence, SeqId, SlotRef, TokenId,
};
use farmem_gpu::ErrorKind;
use proptest::prelude::*;

mod gpu_kv_support;
use gpu_kv_support::{op, pick_seq, prefix_hash, prompt, Op};

mod cuda_support;
use cuda_support::gpu;

// ---- the model and the differential harness -------------------------------------------------

/// The KV bytes a model writes for the token at `position`: `n` bytes that depend on the whole
/// prefix (as real keys and values do), so a wrong hit, lost swap or bad copy shows.
fn kv_bytes(tokens: &[TokenId], salt: Option<u64>, position: usize, n: usize) -> Vec<u8> {
    let mut z = prefix_hash(tokens, salt, position);
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            z as u8
        })
        .collect()
}

/// A fixed pseudo-random op list (for the CUDA test, which runs outside proptest).
fn seeded_ops(seed: u64, n: usize) -> Vec<Op> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let pick = next() as usize;
            match next() % 13 {
                0 | 1 => Op::Allocate {
                    doc: (next() % 3) as u8,
                    shared: (next() % 14) as usize,
                    own: (next() % 6) as usize,
                    salted: next() % 5 == 0,
                },
                2..=6 => Op::Append {
                    pick,
                    token: (next() % 4) as u32,
                },
                7 => Op::Fork { pick },
                8 => Op::Free { pick },
                9 | 10 => Op::SwapOut { pick },
                _ => Op::SwapIn { pick },
            }
        })
        .collect()
}

/// One manager, the reference byte store and the store under test, driven together.
struct Diff<S: KvStore> {
    m: BlockManager,
    reference: BlockStore,
    store: S,
    seqs: BTreeMap<SeqId, Option<u64>>,
    next_group: u64,
    slot: usize,
}

impl<S: KvStore> Diff<S> {
    fn new(cfg: KvConfig, slot: usize, store: S) -> Diff<S> {
        Diff {
            reference: BlockStore::new(&cfg, slot).unwrap(),
            m: BlockManager::new(cfg).unwrap(),
            store,
            seqs: BTreeMap::new(),
            next_group: 0,
            slot,
        }
    }

    fn pick_seq(&self, pick: usize) -> Option<SeqId> {
        pick_seq(&self.seqs, pick)
    }

    fn write_from(&mut self, seq: SeqId, from: usize) {
        let tokens = self.m.tokens(seq).unwrap().to_vec();
        let salt = self.seqs[&seq];
        for pos in from..tokens.len() {
            let slot = self.m.slot(seq, pos).unwrap();
            let kv = kv_bytes(&tokens, salt, pos, self.slot);
            self.reference.write_slot(slot, &kv).unwrap();
            self.store.write_slot(slot, &kv).unwrap();
        }
    }

    fn read(&self, slot: SlotRef) -> Vec<u8> {
        let mut out = vec![0; self.slot];
        self.store.read_slot_to(slot, &mut out).unwrap();
        out
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Allocate {
                doc,
                shared,
                own,
                salted,
            } => {
                let prompt = prompt(doc, shared, own, self.next_group);
                let salt = salted.then_some(7);
                let group = GroupId(self.next_group);
                self.next_group += 1;
                if let Ok(a) = self.m.allocate(group, &prompt, salt) {
                    self.seqs.insert(a.seq, salt);
                    // A prefix-cache hit hands out device blocks already holding this KV.
                    for pos in 0..a.cached_tokens {
                        let got = self.read(self.m.slot(a.seq, pos).unwrap());
                        assert_eq!(got, kv_bytes(&prompt, salt, pos, self.slot), "cache hit");
                    }
                    self.write_from(a.seq, a.cached_tokens);
                }
            }
            Op::Append { pick, token } => {
                let Some(seq) = self.pick_seq(pick) else {
                    return;
                };
                if let Ok(o) = self.m.append_token(seq, token) {
                    let copies: Vec<BlockCopy> = o.copy.into_iter().collect();
                    self.reference.copy_blocks(&copies).unwrap();
                    KvStore::copy_blocks(&mut self.store, &copies).unwrap();
                    let len = self.m.tokens(seq).unwrap().len();
                    self.write_from(seq, len - 1);
                }
            }
            Op::Fork { pick } => {
                let Some(seq) = self.pick_seq(pick) else {
                    return;
                };
                if let Ok(child) = self.m.fork(seq) {
                    let salt = self.seqs[&seq];
                    self.seqs.insert(child, salt);
                }
            }
            Op::Free { pick } => {
                let Some(seq) = self.pick_seq(pick) else {
                    return;
                };
                self.m.free(seq).unwrap();
                self.seqs.remove(&seq);
            }
            Op::SwapOut { pick } => {
                let Some(seq) = self.pick_seq(pick) else {
                    return;
                };
                let g = self.m.group_of(seq).unwrap();
                if let Ok(copies) = self.m.swap_out(g) {
                    self.reference.swap_out(&copies).unwrap();
                    KvStore::swap_out(&mut self.store, &copies).unwrap();
                }
            }
            Op::SwapIn { pick } => {
                let Some(seq) = self.pick_seq(pick) else {
                    return;
                };
                let g = self.m.group_of(seq).unwrap();
                if let Ok(copies) = self.m.swap_in(g) {
                    self.reference.swap_in(&copies).unwrap();
                    KvStore::swap_in(&mut self.store, &copies).unwrap();
                }
            }
        }
    }

    /// Every live token reads back its KV from both stores; with `whole_pools`, every block of
    /// both pools is byte-identical too.
    fn check(&self, whole_pools: bool) {
        let cfg = self.m.config().clone();
        let bb = self.slot * cfg.block_size;
        let mut got = vec![0u8; bb];
        let mut want = vec![0u8; bb];
        for (&seq, &salt) in &self.seqs {
            let tokens = self.m.tokens(seq).unwrap();
            let table = self.m.block_table(seq).unwrap();
            let resident = self.m.residence(seq).unwrap();
            for (i, &b) in table.iter().enumerate() {
                match resident {
                    Residence::Device => {
                        self.store.device_block_to(b, &mut got).unwrap();
                        self.reference.device_block_to(b, &mut want).unwrap();
                    }
                    Residence::Host => {
                        self.store.host_block_to(b, &mut got).unwrap();
                        self.reference.host_block_to(b, &mut want).unwrap();
                    }
                }
                let used = (tokens.len() - i * cfg.block_size).min(cfg.block_size);
                for off in 0..used {
                    let pos = i * cfg.block_size + off;
                    let kv = kv_bytes(tokens, salt, pos, self.slot);
                    let r = off * self.slot..(off + 1) * self.slot;
                    assert_eq!(&want[r.clone()], &kv[..], "reference: {seq} position {pos}");
                    assert_eq!(&got[r], &kv[..], "{seq} ({resident:?}) position {pos}");
                }
            }
        }
        if whole_pools {
            for b in 0..cfg.num_device_blocks as u32 {
                self.store.device_block_to(BlockId(b), &mut got).unwrap();
                self.reference
                    .device_block_to(BlockId(b), &mut want)
                    .unwrap();
                assert_eq!(got, want, "device block {b}");
            }
            for b in 0..cfg.num_host_blocks as u32 {
                self.store.host_block_to(BlockId(b), &mut got).unwrap();
                self.reference.host_block_to(BlockId(b), &mut want).unwrap();
                assert_eq!(got, want, "host block {b}");
            }
        }
    }
}

fn sim() -> Arc<SimDevice> {
    Arc::new(SimDevice::new(SimConfig::default()).unwrap())
}

fn traced_sim() -> Arc<SimDevice> {
    Arc::new(
        SimDevice::new(SimConfig {
            trace: true,
            ..SimConfig::default()
        })
        .unwrap(),
    )
}

fn cases() -> u32 {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        2048
    } else {
        96
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The device store and the byte store agree after every operation, in both copy modes.
    #[test]
    fn device_store_matches_the_byte_store(
        ops in proptest::collection::vec(op(2), 1..70),
        block_size in 1usize..6,
        device in 4usize..28,
        host in 0usize..20,
        caching in any::<bool>(),
        per_block in any::<bool>(),
        slot in 1usize..13,
    ) {
        let cfg = KvConfig {
            block_size,
            watermark: 0.0,
            enable_prefix_caching: caching,
            ..KvConfig::new(device, host)
        };
        let mut store = DeviceBlockStore::new(sim(), &cfg, slot).unwrap();
        if per_block {
            store.set_copy_mode(CopyMode::PerBlock);
        }
        let mut d = Diff::new(cfg, slot, store);
        for op in &ops {
            d.apply(op);
            d.check(true);
        }
        let seqs: Vec<SeqId> = d.seqs.keys().copied().collect();
        for seq in seqs {
            d.m.free(seq).unwrap();
        }
        prop_assert_eq!(d.m.num_free_device_blocks(), device);
    }
}

// ---- scripted round trips ----------------------------------------------------------------------

/// A group of two sequences sharing a prefix; `b` diverged by copy-on-write.
fn forked_group<S: KvStore>(d: &mut Diff<S>) -> (SeqId, SeqId) {
    d.apply(&Op::Allocate {
        doc: 1,
        shared: 10,
        own: 3,
        salted: false,
    });
    let a = *d.seqs.keys().last().unwrap();
    let b = d.m.fork(a).unwrap();
    d.seqs.insert(b, None);
    let o = d.m.append_token(b, 3).unwrap();
    let c = o
        .copy
        .expect("the shared partial last block is copied on write");
    d.reference.copy_blocks(&[c]).unwrap();
    KvStore::copy_blocks(&mut d.store, &[c]).unwrap();
    // The copy is identical to its source before the new token lands.
    let bb = d.store.block_bytes();
    let (mut src, mut dst) = (vec![0; bb], vec![0; bb]);
    d.store.device_block_to(c.src, &mut src).unwrap();
    d.store.device_block_to(c.dst, &mut dst).unwrap();
    assert_eq!(src, dst, "copy-on-write copy differs from its source");
    d.write_from(b, 13);
    (a, b)
}

fn round_trip<S: KvStore>(d: &mut Diff<S>, whole_pools: bool) {
    let (a, _b) = forked_group(d);
    d.check(whole_pools);
    let g = d.m.group_of(a).unwrap();
    let out = d.m.swap_out(g).unwrap();
    d.reference.swap_out(&out).unwrap();
    KvStore::swap_out(&mut d.store, &out).unwrap();
    // Scribble over the whole device pool: the swap-in must not rely on stale device bytes.
    d.apply(&Op::Allocate {
        doc: 2,
        shared: 0,
        own: 5,
        salted: true,
    });
    let junk = *d.seqs.keys().last().unwrap();
    for t in 0..40 {
        d.apply(&Op::Append {
            pick: d.seqs.keys().position(|&s| s == junk).unwrap(),
            token: t,
        });
    }
    d.check(whole_pools);
    d.m.free(junk).unwrap();
    d.seqs.remove(&junk);
    let back = d.m.swap_in(g).unwrap();
    d.reference.swap_in(&back).unwrap();
    KvStore::swap_in(&mut d.store, &back).unwrap();
    d.check(whole_pools);
    // A prefix-cache hit on the swapped-in prompt reads the same KV.
    d.apply(&Op::Allocate {
        doc: 1,
        shared: 10,
        own: 0,
        salted: false,
    });
    d.check(whole_pools);
}

fn round_trip_config() -> KvConfig {
    KvConfig {
        block_size: 4,
        watermark: 0.0,
        ..KvConfig::new(16, 16)
    }
}

#[test]
fn swap_cow_and_prefix_hits_preserve_contents_in_both_modes() {
    for mode in [CopyMode::Coalesced, CopyMode::PerBlock] {
        let cfg = round_trip_config();
        let mut store = DeviceBlockStore::new(sim(), &cfg, 24).unwrap();
        store.set_copy_mode(mode);
        let mut d = Diff::new(cfg, 24, store);
        round_trip(&mut d, true);
        assert!(d.m.prefix_cache_stats().hits > 0, "{mode:?}: no prefix hit");
    }
}

#[test]
fn works_over_a_dyn_device() {
    let dev: Arc<dyn Device> = sim();
    let cfg = round_trip_config();
    let store: DeviceBlockStore<dyn Device> = DeviceBlockStore::new(dev, &cfg, 8).unwrap();
    let mut d = Diff::new(cfg, 8, store);
    round_trip(&mut d, true);
}

/// The scheduler's per-step copy lists (swap-out, swap-in, copy-on-write, in that order, several
/// groups per step under swap preemption) executed on both stores keep them byte-identical. Every
/// device slot starts with distinct bytes so that every copy is visible.
#[test]
fn scheduler_step_copies_keep_both_stores_identical() {
    use farmem_gpu::kv::{PreemptionMode, Request, Scheduler, SchedulerConfig};
    let kv = KvConfig {
        block_size: 4,
        watermark: 0.0,
        ..KvConfig::new(14, 40)
    };
    let slot = 6;
    let mut reference = BlockStore::new(&kv, slot).unwrap();
    let mut store = DeviceBlockStore::new(sim(), &kv, slot).unwrap();
    for b in 0..kv.num_device_blocks as u32 {
        for offset in 0..kv.block_size {
            let at = SlotRef {
                block: BlockId(b),
                offset,
            };
            let bytes = kv_bytes(&[b, offset as u32], None, 1, slot);
            reference.write_slot(at, &bytes).unwrap();
            store.write_slot(at, &bytes).unwrap();
        }
    }
    let cfg = SchedulerConfig {
        max_num_seqs: 8,
        max_batched_tokens: 64,
        preemption: PreemptionMode::Swap,
    };
    let mut s = Scheduler::new(kv.clone(), cfg).unwrap();
    for i in 0..10u32 {
        let prompt: Vec<TokenId> = (0..3 + i % 5).map(|t| (i % 2) * 50 + t).collect();
        let n = 1 + (i as usize % 3);
        let r = Request {
            id: GroupId(u64::from(i)),
            prompt,
            output_len: 10 + i as usize,
            n,
            salt: None,
        };
        s.add_request(r).unwrap();
    }
    let (mut swapped, mut cow, mut steps) = (0, 0, 0);
    while !s.is_idle() {
        let out = s.step().unwrap();
        reference.swap_out(&out.swap_out).unwrap();
        KvStore::swap_out(&mut store, &out.swap_out).unwrap();
        reference.swap_in(&out.swap_in).unwrap();
        KvStore::swap_in(&mut store, &out.swap_in).unwrap();
        reference.copy_blocks(&out.copies).unwrap();
        KvStore::copy_blocks(&mut store, &out.copies).unwrap();
        swapped += out.swap_out.len() + out.swap_in.len();
        cow += out.copies.len();
        same_pools(&reference, &store, &kv);
        steps += 1;
        assert!(steps < 5_000, "no progress");
    }
    assert!(
        swapped > 0 && cow > 0,
        "swaps {swapped}, copy-on-writes {cow}: tune the load"
    );
    same_pools(&reference, &store, &kv);
}

/// Both stores hold the same bytes in every block of both pools.
fn same_pools(reference: &BlockStore, store: &impl KvStore, kv: &KvConfig) {
    let bb = store.block_bytes();
    let (mut got, mut want) = (vec![0u8; bb], vec![0u8; bb]);
    for b in 0..kv.num_device_blocks as u32 {
        store.device_block_to(BlockId(b), &mut got).unwrap();
        reference.device_block_to(BlockId(b), &mut want).unwrap();
        assert_eq!(got, want, "device block {b}");
    }
    for b in 0..kv.num_host_blocks as u32 {
        store.host_block_to(BlockId(b), &mut got).unwrap();
        reference.host_block_to(BlockId(b), &mut want).unwrap();
        assert_eq!(got, want, "host block {b}");
    }
}

// ---- batching and ordering, on the simulator's trace ------------------------------------------

#[test]
fn a_contiguous_swap_is_one_copy_each_way_and_per_block_mode_is_one_per_block() {
    let cfg = KvConfig {
        enable_prefix_caching: false,
        watermark: 0.0,
        ..KvConfig::new(32, 32)
    };
    for (mode, per_swap) in [(CopyMode::Coalesced, 1), (CopyMode::PerBlock, 8)] {
        let dev = traced_sim();
        let mut store = DeviceBlockStore::new(dev.clone(), &cfg, 16).unwrap();
        store.set_copy_mode(mode);
        let mut m = BlockManager::new(cfg.clone()).unwrap();
        let prompt: Vec<TokenId> = (0..8 * 16).collect();
        m.allocate(GroupId(0), &prompt, None).unwrap();
        dev.clear_trace().unwrap();
        let out = m.swap_out(GroupId(0)).unwrap();
        assert_eq!(out.len(), 8);
        KvStore::swap_out(&mut store, &out).unwrap();
        let back = m.swap_in(GroupId(0)).unwrap();
        KvStore::swap_in(&mut store, &back).unwrap();
        store.synchronize().unwrap();
        let trace = dev.trace().unwrap();
        let count = |e| trace.iter().filter(|op| op.engine == e).count();
        assert_eq!(
            count(SimEngine::ToHost),
            per_swap,
            "{mode:?} swap-out copies"
        );
        assert_eq!(
            count(SimEngine::ToDevice),
            per_swap,
            "{mode:?} swap-in copies"
        );
        let bytes: u64 = trace.iter().map(|op| op.bytes).sum();
        assert_eq!(bytes, 2 * 8 * 16 * 16, "{mode:?}: every byte once each way");
        assert_eq!(store.copies_issued(), 2 * per_swap as u64);
    }
}

#[test]
fn compute_waits_for_copies_and_copies_wait_for_compute() {
    let dev = traced_sim();
    let cfg = KvConfig {
        enable_prefix_caching: false,
        ..KvConfig::new(8, 8)
    };
    let mut store = DeviceBlockStore::new(dev.clone(), &cfg, 1024).unwrap();
    let compute = store.compute_stream();
    fn step(store: &DeviceBlockStore<SimDevice>) -> ComputeStep<'_> {
        let pool = store.device_pool().unwrap();
        ComputeStep {
            reads: Some(DeviceRange {
                buffer: pool,
                offset: 0,
                bytes: pool.bytes(),
            }),
            checksum_into: None,
            work: Duration::from_micros(300),
        }
    }
    // A model step writing KV, then a swap-out: the copy starts after the step ends.
    dev.launch(compute, &step(&store)).unwrap();
    let moves = [BlockCopy {
        src: BlockId(2),
        dst: BlockId(5),
    }];
    KvStore::swap_out(&mut store, &moves).unwrap();
    // The next model step starts after the swap-out's copy ends.
    dev.launch(compute, &step(&store)).unwrap();
    KvStore::swap_in(&mut store, &moves).unwrap();
    dev.launch(compute, &step(&store)).unwrap();
    dev.synchronize_stream(compute).unwrap();
    let trace = dev.trace().unwrap();
    let kinds: Vec<SimEngine> = trace.iter().map(|op| op.engine).collect();
    assert_eq!(
        kinds,
        [
            SimEngine::Compute,
            SimEngine::ToHost,
            SimEngine::Compute,
            SimEngine::ToDevice,
            SimEngine::Compute
        ]
    );
    for pair in trace.windows(2) {
        assert!(
            pair[1].start_ps >= pair[0].end_ps,
            "{:?} started before {:?} ended",
            pair[1],
            pair[0]
        );
    }
}

// ---- errors and resources ------------------------------------------------------------------------

#[test]
fn an_oversized_pool_is_out_of_device_memory_with_the_sizes() {
    let dev = Arc::new(
        SimDevice::new(SimConfig {
            capacity_bytes: 1 << 20,
            ..SimConfig::default()
        })
        .unwrap(),
    );
    let cfg = KvConfig::new(300, 4);
    let err = DeviceBlockStore::new(dev.clone(), &cfg, 256)
        .err()
        .expect("a pool of 300 × 4 KiB does not fit in 1 MiB");
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory);
    let msg = err.to_string();
    assert!(msg.contains("300 blocks"), "{msg}");
    assert!(msg.contains("1228800 bytes"), "{msg}");
    assert!(msg.contains("num_device_blocks"), "{msg}");
    assert_eq!(dev.allocated_bytes(), 0, "nothing left allocated");
    assert_eq!(
        DeviceBlockStore::new(dev.clone(), &cfg, 0)
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::InvalidArgument)
    );
}

#[test]
fn bad_arguments_are_errors_that_move_nothing() {
    let dev = traced_sim();
    let cfg = KvConfig::new(4, 2);
    let mut store = DeviceBlockStore::new(dev.clone(), &cfg, 4).unwrap();
    let slot = SlotRef {
        block: BlockId(3),
        offset: 15,
    };
    store.write_slot(slot, &[1, 2, 3, 4]).unwrap();
    let mut out = [0u8; 4];
    store.read_slot_to(slot, &mut out).unwrap();
    assert_eq!(out, [1, 2, 3, 4]);
    let invalid = |r: farmem_gpu::Result<()>| {
        assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::InvalidArgument));
    };
    invalid(store.write_slot(slot, &[1, 2, 3]));
    invalid(store.read_slot_to(slot, &mut [0u8; 3]));
    let outside = SlotRef {
        block: BlockId(4),
        offset: 0,
    };
    invalid(store.write_slot(outside, &[0; 4]));
    invalid(store.read_slot_to(SlotRef { offset: 16, ..slot }, &mut out));
    dev.clear_trace().unwrap();
    let ok = BlockCopy {
        src: BlockId(0),
        dst: BlockId(1),
    };
    let bad_host = BlockCopy {
        src: BlockId(0),
        dst: BlockId(2),
    };
    invalid(KvStore::swap_out(&mut store, &[ok, bad_host]));
    invalid(KvStore::swap_in(
        &mut store,
        &[
            ok,
            BlockCopy {
                src: BlockId(2),
                dst: BlockId(0),
            },
        ],
    ));
    invalid(KvStore::copy_blocks(
        &mut store,
        &[
            ok,
            BlockCopy {
                src: BlockId(4),
                dst: BlockId(0),
            },
        ],
    ));
    invalid(KvStore::copy_blocks(
        &mut store,
        &[BlockCopy {
            src: BlockId(1),
            dst: BlockId(1),
        }],
    ));
    invalid(store.host_block_to(BlockId(2), &mut [0u8; 64]));
    invalid(store.device_block_to(BlockId(0), &mut [0u8; 63]));
    assert!(
        dev.trace().unwrap().is_empty(),
        "a rejected batch enqueued copies"
    );
    assert_eq!(store.copies_issued(), 0);
    KvStore::swap_out(&mut store, &[]).unwrap();
    assert_eq!(store.copies_issued(), 0, "an empty batch copies nothing");
}

#[test]
fn one_allocation_per_pool_and_drop_frees_them() {
    let dev = sim();
    let cfg = KvConfig::new(10, 6);
    let store = DeviceBlockStore::new(dev.clone(), &cfg, 32).unwrap();
    let block = 32 * 16;
    assert_eq!(store.device_pool_bytes(), 10 * block);
    assert_eq!(store.host_pool_bytes(), 6 * block);
    assert_eq!(dev.allocation_count().unwrap(), 1);
    assert_eq!(dev.pinned_allocation_count().unwrap(), 1);
    assert_eq!(dev.allocated_bytes(), 10 * block);
    drop(store);
    assert_eq!(dev.allocated_bytes(), 0);
    // A host pool of zero blocks is fine (only the staging block is pinned).
    let store = DeviceBlockStore::new(dev.clone(), &KvConfig::new(2, 0), 8).unwrap();
    assert_eq!(store.host_pool_bytes(), 0);
}

// ---- CUDA --------------------------------------------------------------------------------------

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_swap_cow_and_prefix_hits_preserve_contents() {
    let Some(dev) = gpu().map(Arc::new) else {
        return;
    };
    // One layer of an OPT-13B-like model per slot: 2 (K, V) × 5120 × 2 bytes.
    let slot = 2 * 5120 * 2;
    for mode in [CopyMode::Coalesced, CopyMode::PerBlock] {
        let cfg = round_trip_config();
        let mut store = DeviceBlockStore::new(dev.clone(), &cfg, slot).unwrap();
        store.set_copy_mode(mode);
        let mut d = Diff::new(cfg, slot, store);
        // Device memory starts with whatever was there: compare the written slots only.
        round_trip(&mut d, false);
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_device_store_matches_the_byte_store_under_random_operations() {
    let Some(dev) = gpu().map(Arc::new) else {
        return;
    };
    for (seed, mode) in [
        (7, CopyMode::Coalesced),
        (8, CopyMode::PerBlock),
        (9, CopyMode::Coalesced),
    ] {
        let cfg = KvConfig {
            block_size: 4,
            watermark: 0.0,
            ..KvConfig::new(24, 16)
        };
        let mut store = DeviceBlockStore::new(dev.clone(), &cfg, 1000).unwrap();
        store.set_copy_mode(mode);
        let mut d = Diff::new(cfg, 1000, store);
        for op in seeded_ops(seed, 400) {
            d.apply(&op);
            d.check(false);
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run runtime/gpu/run-cuda-tests.sh"]
fn cuda_an_oversized_pool_is_out_of_device_memory() {
    let Some(dev) = gpu().map(Arc::new) else {
        return;
    };
    let blocks = (dev.capacity_bytes() / (1 << 20)) as usize * 2;
    let cfg = KvConfig::new(blocks, 1);
    // 64 KiB slots × 16 = 1 MiB blocks: twice the GPU.
    let err = DeviceBlockStore::new(dev.clone(), &cfg, 64 << 10)
        .err()
        .expect("a pool twice the GPU's memory cannot be allocated");
    assert_eq!(err.kind(), ErrorKind::OutOfDeviceMemory, "{err}");
    assert!(
        err.to_string().contains(&format!("{blocks} blocks")),
        "{err}"
    );
    assert_eq!(dev.allocated_bytes(), 0);
}
