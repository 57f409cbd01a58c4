//! Property tests of `kv::BlockManager` under random operation sequences, with `kv::BlockStore`
//! holding real bytes: after every operation the invariants hold, every live sequence reads back
//! exactly the KV a model would have written for its tokens, and freeing everything leaks nothing.
//!
//! The "model" writes, for the token at position `p`, bytes that depend on the whole prefix
//! `tokens[..=p]` (as real keys and values do), so a wrong prefix-cache hit, a lost swap, or a
//! copy-on-write that wrote into a shared block shows up as a content mismatch.
//!
//! `FARMEM_STRESS=1` runs many more cases.

use std::collections::BTreeMap;

use farmem_gpu::kv::{
    BlockId, BlockManager, BlockStore, GroupId, KvConfig, Residence, SeqId, TokenId,
};
use farmem_gpu::ErrorKind;
use proptest::prelude::*;

mod gpu_kv_support;
use gpu_kv_support::{op, pick_seq, prefix_hash, prompt, Op};

const SLOT_BYTES: usize = 8;

/// The KV bytes a model writes for the token at `position`: a function of the whole prefix.
fn kv_bytes(tokens: &[TokenId], salt: Option<u64>, position: usize) -> [u8; SLOT_BYTES] {
    prefix_hash(tokens, salt, position).to_le_bytes()
}

struct Harness {
    m: BlockManager,
    store: BlockStore,
    /// Live sequences and their salt, as the test sees them.
    seqs: BTreeMap<SeqId, Option<u64>>,
    next_group: u64,
}

impl Harness {
    fn pick_seq(&self, pick: usize) -> Option<SeqId> {
        pick_seq(&self.seqs, pick)
    }

    fn pick_group(&self, pick: usize) -> Option<GroupId> {
        self.pick_seq(pick).map(|s| self.m.group_of(s).unwrap())
    }

    fn write_from(&mut self, seq: SeqId, from: usize) {
        let tokens = self.m.tokens(seq).unwrap().to_vec();
        let salt = self.seqs[&seq];
        for pos in from..tokens.len() {
            let slot = self.m.slot(seq, pos).unwrap();
            // Copy-on-write must have made the written block private.
            assert_eq!(
                self.m.device_ref_count(slot.block),
                1,
                "writing a shared block"
            );
            self.store
                .write_slot(slot, &kv_bytes(&tokens, salt, pos))
                .unwrap();
        }
    }

    fn apply(&mut self, op: &Op) {
        let bs = self.m.config().block_size;
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
                match self.m.allocate(group, &prompt, salt) {
                    Ok(a) => {
                        self.seqs.insert(a.seq, salt);
                        assert_eq!(a.cached_tokens % bs, 0);
                        // Prefix-cache hits hand out blocks already holding this prefix's KV.
                        for pos in 0..a.cached_tokens {
                            let got = self
                                .store
                                .read_slot(self.m.slot(a.seq, pos).unwrap())
                                .unwrap();
                            assert_eq!(got, kv_bytes(&prompt, salt, pos), "cache hit content");
                        }
                        self.write_from(a.seq, a.cached_tokens);
                    }
                    Err(e) if prompt.is_empty() => assert_eq!(e.kind(), ErrorKind::InvalidArgument),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
                        assert!(
                            self.m.num_free_device_blocks()
                                < self.m.config().blocks_for(prompt.len())
                        );
                    }
                }
            }
            Op::Append { pick, token } => {
                let Some(seq) = self.pick_seq(pick) else {
                    return;
                };
                let on_device = self.m.residence(seq).unwrap() == Residence::Device;
                let free_before = self.m.num_free_device_blocks();
                match self.m.append_token(seq, token) {
                    Ok(o) => {
                        assert!(on_device);
                        if let Some(c) = o.copy {
                            assert!(self.m.device_ref_count(c.src) >= 1, "source still alive");
                            self.store.copy_blocks(&[c]).unwrap();
                        }
                        let len = self.m.tokens(seq).unwrap().len();
                        self.write_from(seq, len - 1);
                    }
                    Err(e) if !on_device => assert_eq!(e.kind(), ErrorKind::InvalidArgument),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
                        assert_eq!(free_before, 0);
                    }
                }
            }
            Op::Fork { pick } => {
                let Some(seq) = self.pick_seq(pick) else {
                    return;
                };
                match self.m.fork(seq) {
                    Ok(child) => {
                        let salt = self.seqs[&seq];
                        self.seqs.insert(child, salt);
                        assert_eq!(
                            self.m.block_table(child).unwrap(),
                            self.m.block_table(seq).unwrap()
                        );
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                        assert_eq!(self.m.residence(seq).unwrap(), Residence::Host);
                    }
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
                let Some(g) = self.pick_group(pick) else {
                    return;
                };
                let members = self.m.group_sequences(g).unwrap().to_vec();
                let on_device = members
                    .iter()
                    .all(|&s| self.m.residence(s).unwrap() == Residence::Device);
                let free_host = self.m.num_free_host_blocks();
                match self.m.swap_out(g) {
                    Ok(copies) => {
                        assert!(copies.len() <= free_host);
                        self.store.swap_out(&copies).unwrap();
                    }
                    Err(e) if !on_device => assert_eq!(e.kind(), ErrorKind::InvalidArgument),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::OutOfLocalMemory),
                }
            }
            Op::SwapIn { pick } => {
                let Some(g) = self.pick_group(pick) else {
                    return;
                };
                let members = self.m.group_sequences(g).unwrap().to_vec();
                let on_host = members
                    .iter()
                    .all(|&s| self.m.residence(s).unwrap() == Residence::Host);
                match self.m.swap_in(g) {
                    Ok(copies) => self.store.swap_in(&copies).unwrap(),
                    Err(e) if !on_host => assert_eq!(e.kind(), ErrorKind::InvalidArgument),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory),
                }
            }
        }
    }

    /// Everything the properties promise, checked from the outside.
    fn check(&self) {
        self.m.check_invariants().unwrap();
        let cfg = self.m.config();
        let mut dev_refs = vec![0u32; cfg.num_device_blocks];
        let mut host_refs = vec![0u32; cfg.num_host_blocks];
        for (&seq, &salt) in &self.seqs {
            let tokens = self.m.tokens(seq).unwrap();
            let table = self.m.block_table(seq).unwrap();
            let resident = self.m.residence(seq).unwrap();
            for &b in table {
                match resident {
                    Residence::Device => dev_refs[b.index()] += 1,
                    Residence::Host => host_refs[b.index()] += 1,
                }
            }
            for pos in 0..tokens.len() {
                let (b, off) = (table[pos / cfg.block_size], pos % cfg.block_size);
                let block = match resident {
                    Residence::Device => self.store.device_block(b).unwrap(),
                    Residence::Host => self.store.host_block(b).unwrap(),
                };
                assert_eq!(
                    &block[off * SLOT_BYTES..(off + 1) * SLOT_BYTES],
                    kv_bytes(tokens, salt, pos),
                    "{seq} ({resident:?}) position {pos}"
                );
            }
        }
        // Reference counts equal table references; no block is both free and referenced.
        for (i, &want) in dev_refs.iter().enumerate() {
            assert_eq!(
                self.m.device_ref_count(BlockId(i as u32)),
                want,
                "device block {i}"
            );
        }
        for (i, &want) in host_refs.iter().enumerate() {
            assert_eq!(
                self.m.host_ref_count(BlockId(i as u32)),
                want,
                "host block {i}"
            );
        }
        let referenced = dev_refs.iter().filter(|&&r| r > 0).count();
        assert_eq!(
            referenced + self.m.num_free_device_blocks(),
            cfg.num_device_blocks
        );
        let host_referenced = host_refs.iter().filter(|&&r| r > 0).count();
        assert_eq!(
            host_referenced + self.m.num_free_host_blocks(),
            cfg.num_host_blocks
        );
    }
}

fn cases() -> u32 {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        4096
    } else {
        160
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_operations_keep_every_invariant(
        ops in proptest::collection::vec(op(1), 1..80),
        block_size in 1usize..6,
        device in 4usize..28,
        host in 0usize..20,
        caching in any::<bool>(),
    ) {
        let cfg = KvConfig {
            block_size,
            watermark: 0.0,
            enable_prefix_caching: caching,
            ..KvConfig::new(device, host)
        };
        let mut h = Harness {
            store: BlockStore::new(&cfg, SLOT_BYTES).unwrap(),
            m: BlockManager::new(cfg).unwrap(),
            seqs: BTreeMap::new(),
            next_group: 0,
        };
        for op in &ops {
            h.apply(op);
            h.check();
        }
        // Freeing everything returns every block: the allocator never leaks.
        let all: Vec<SeqId> = h.seqs.keys().copied().collect();
        for seq in all {
            h.m.free(seq).unwrap();
            h.seqs.remove(&seq);
            h.check();
        }
        prop_assert_eq!(h.m.num_free_device_blocks(), device);
        prop_assert_eq!(h.m.num_free_host_blocks(), host);
        prop_assert_eq!(h.m.num_used_device_blocks(), 0);
        prop_assert_eq!(h.m.num_sequences(), 0);
        prop_assert_eq!(h.m.num_groups(), 0);
    }
}

fn request_strategy() -> impl Strategy<Value = (u8, usize, usize, usize, usize)> {
    // (document, shared prefix length, own prompt length, output length, samples)
    (0u8..2, 0usize..12, 1usize..10, 1usize..24, 1usize..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases() / 2))]

    /// The scheduler under random load: every request finishes or is rejected, the manager's
    /// invariants hold after every step, and nothing leaks.
    #[test]
    fn the_scheduler_finishes_everything_without_leaks(
        reqs in proptest::collection::vec(request_strategy(), 1..16),
        device in 6usize..40,
        host in 0usize..40,
        swap in any::<bool>(),
        caching in any::<bool>(),
        max_num_seqs in 1usize..12,
    ) {
        use farmem_gpu::kv::{PreemptionMode, Request, Scheduler, SchedulerConfig};
        let kv = KvConfig {
            block_size: 4,
            watermark: 0.05,
            enable_prefix_caching: caching,
            ..KvConfig::new(device, host)
        };
        let cfg = SchedulerConfig {
            max_num_seqs,
            max_batched_tokens: 64,
            preemption: if swap { PreemptionMode::Swap } else { PreemptionMode::Recompute },
        };
        let mut s = Scheduler::new(kv, cfg).unwrap();
        let mut accepted = 0u64;
        for (i, &(doc, shared, own, output_len, n)) in reqs.iter().enumerate() {
            let mut prompt: Vec<TokenId> = (0..shared as u32).map(|t| u32::from(doc) * 100 + t).collect();
            prompt.extend((0..own as u32).map(|t| 1000 + i as u32 * 16 + t));
            let r = Request { id: GroupId(i as u64), prompt, output_len, n, salt: None };
            match s.add_request(r) {
                Ok(()) => accepted += 1,
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                    prop_assert!(n > max_num_seqs);
                }
            }
        }
        let mut steps = 0;
        while !s.is_idle() {
            let out = s.step().unwrap();
            s.manager().check_invariants().unwrap();
            prop_assert!(out.running_seqs <= max_num_seqs);
            steps += 1;
            prop_assert!(steps < 20_000, "no progress");
        }
        let st = s.stats();
        prop_assert_eq!(st.finished + st.rejected, accepted);
        prop_assert_eq!(s.manager().num_free_device_blocks(), device);
        prop_assert_eq!(s.manager().num_free_host_blocks(), host);
        prop_assert_eq!(s.manager().num_sequences(), 0);
    }
}
