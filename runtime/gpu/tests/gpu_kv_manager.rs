//! Unit tests of each `kv::BlockManager` operation and its error paths, and of `kv::BlockStore`.

use farmem_gpu::kv::{
    hash_block, AllocStatus, BlockCopy, BlockId, BlockManager, BlockStore, GroupId, KvConfig,
    Residence, SeqId, SlotRef, TokenId,
};
use farmem_gpu::ErrorKind;

fn config(device: usize, host: usize, block_size: usize) -> KvConfig {
    KvConfig {
        block_size,
        watermark: 0.0,
        ..KvConfig::new(device, host)
    }
}

fn manager(device: usize, host: usize, block_size: usize) -> BlockManager {
    BlockManager::new(config(device, host, block_size)).unwrap()
}

fn prompt(len: usize, seed: u32) -> Vec<TokenId> {
    (0..len as u32).map(|i| seed * 1000 + i).collect()
}

#[test]
fn config_is_validated() {
    for bad in [
        config(0, 1, 16),
        config(4, 1, 0),
        KvConfig {
            watermark: 1.0,
            ..config(4, 1, 16)
        },
        KvConfig {
            watermark: -0.1,
            ..config(4, 1, 16)
        },
    ] {
        let e = BlockManager::new(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    assert_eq!(config(4, 1, 16).blocks_for(33), 3);
}

#[test]
fn allocate_maps_the_prompt_onto_blocks() {
    let mut m = manager(8, 0, 4);
    let a = m.allocate(GroupId(1), &prompt(10, 1), None).unwrap();
    assert_eq!(a.cached_tokens, 0);
    let table = m.block_table(a.seq).unwrap().to_vec();
    assert_eq!(table.len(), 3);
    assert_eq!(m.num_used_device_blocks(), 3);
    assert_eq!(m.num_free_device_blocks(), 5);
    for &b in &table {
        assert_eq!(m.device_ref_count(b), 1);
    }
    assert_eq!(
        m.slot(a.seq, 9).unwrap(),
        SlotRef {
            block: table[2],
            offset: 1
        }
    );
    assert_eq!(
        m.slot(a.seq, 10).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(m.tokens(a.seq).unwrap(), prompt(10, 1).as_slice());
    assert_eq!(m.residence(a.seq).unwrap(), Residence::Device);
    assert_eq!(m.group_of(a.seq).unwrap(), GroupId(1));
    assert_eq!(m.group_sequences(GroupId(1)).unwrap(), &[a.seq]);
    m.check_invariants().unwrap();
}

#[test]
fn append_allocates_only_when_the_last_block_is_full() {
    let mut m = manager(8, 0, 4);
    let a = m.allocate(GroupId(1), &prompt(6, 1), None).unwrap();
    let before = m.num_used_device_blocks();
    let o1 = m.append_token(a.seq, 7).unwrap(); // slot 6
    let o2 = m.append_token(a.seq, 8).unwrap(); // slot 7: block full
    assert_eq!(m.num_used_device_blocks(), before);
    assert_eq!((o1.slot.offset, o2.slot.offset), (2, 3));
    assert_eq!(o1.copy, None);
    let o3 = m.append_token(a.seq, 9).unwrap(); // slot 8: new block
    assert_eq!(m.num_used_device_blocks(), before + 1);
    assert_eq!(o3.slot.offset, 0);
    assert_eq!(m.block_table(a.seq).unwrap().last(), Some(&o3.slot.block));
    m.check_invariants().unwrap();
}

#[test]
fn fork_shares_every_block_and_copy_on_write_splits_the_last() {
    let mut m = manager(8, 0, 4);
    let a = m.allocate(GroupId(1), &prompt(6, 1), None).unwrap().seq;
    let b = m.fork(a).unwrap();
    assert_eq!(m.group_sequences(GroupId(1)).unwrap(), &[a, b]);
    let table = m.block_table(a).unwrap().to_vec();
    assert_eq!(m.block_table(b).unwrap(), table.as_slice());
    assert!(table.iter().all(|&blk| m.device_ref_count(blk) == 2));
    assert_eq!(m.num_used_device_blocks(), 2, "forking costs no block");

    // The first writer of the shared partial block gets a private copy.
    let o = m.append_token(a, 42).unwrap();
    let cow = o.copy.expect("shared last block must be copied");
    assert_eq!(cow.src, table[1]);
    assert_eq!(o.slot.block, cow.dst);
    assert_ne!(cow.dst, table[1]);
    assert_eq!(m.device_ref_count(table[1]), 1);
    assert_eq!(
        m.device_ref_count(table[0]),
        2,
        "full prefix block stays shared"
    );
    // The second writer now owns the old block alone: no copy.
    let o = m.append_token(b, 43).unwrap();
    assert_eq!(o.copy, None);
    assert_eq!(o.slot.block, table[1]);
    m.check_invariants().unwrap();
}

#[test]
fn can_append_counts_copies_exactly() {
    let mut m = manager(4, 0, 4);
    let a = m.allocate(GroupId(1), &prompt(6, 1), None).unwrap().seq; // 2 blocks
    m.fork(a).unwrap();
    m.fork(a).unwrap();
    // Three writers of one shared partial block: two copies, the last keeps the original.
    assert!(m.can_append(GroupId(1)).unwrap());
    let mut m2 = manager(3, 0, 4);
    let b = m2.allocate(GroupId(1), &prompt(6, 1), None).unwrap().seq;
    m2.fork(b).unwrap();
    m2.fork(b).unwrap();
    assert!(
        !m2.can_append(GroupId(1)).unwrap(),
        "two copies, one free block"
    );
    assert_eq!(
        m2.can_append(GroupId(7)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn free_returns_blocks_and_groups_vanish_with_their_last_sequence() {
    let mut m = manager(8, 0, 4);
    let a = m.allocate(GroupId(1), &prompt(9, 1), None).unwrap().seq;
    let b = m.fork(a).unwrap();
    m.free(a).unwrap();
    assert_eq!(m.num_used_device_blocks(), 3, "b still holds them");
    assert_eq!(m.free(a).unwrap_err().kind(), ErrorKind::NotFound);
    m.free(b).unwrap();
    assert_eq!(m.num_free_device_blocks(), 8);
    assert_eq!(m.num_groups(), 0);
    assert_eq!(
        m.group_sequences(GroupId(1)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    m.check_invariants().unwrap();
}

#[test]
fn impossible_requests_are_errors_and_change_nothing() {
    let mut m = manager(4, 1, 4);
    let e = m.allocate(GroupId(1), &[], None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = m.allocate(GroupId(1), &prompt(17, 1), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
    assert!(e.context().contains("17 tokens"), "{e}");
    assert_eq!(m.num_free_device_blocks(), 4);

    let a = m.allocate(GroupId(1), &prompt(16, 1), None).unwrap().seq;
    let e = m.allocate(GroupId(1), &prompt(1, 2), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "duplicate group");
    let e = m.append_token(a, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfDeviceMemory);
    assert_eq!(
        m.tokens(a).unwrap().len(),
        16,
        "failed append changed nothing"
    );

    let ghost = SeqId(999);
    assert_eq!(
        m.append_token(ghost, 1).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(m.fork(ghost).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        m.block_table(ghost).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        m.swap_out(GroupId(9)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        m.swap_in(GroupId(9)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        m.free_group(GroupId(9)).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Host pool of 1 block cannot take 4.
    assert!(!m.can_swap_out(GroupId(1)).unwrap());
    let e = m.swap_out(GroupId(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfLocalMemory);
    assert_eq!(m.residence(a).unwrap(), Residence::Device);
    assert_eq!(
        m.swap_in(GroupId(1)).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    m.check_invariants().unwrap();
}

#[test]
fn swapped_sequences_refuse_device_operations() {
    let mut m = manager(4, 4, 4);
    let a = m.allocate(GroupId(1), &prompt(5, 1), None).unwrap().seq;
    m.swap_out(GroupId(1)).unwrap();
    assert_eq!(m.residence(a).unwrap(), Residence::Host);
    assert_eq!(
        m.append_token(a, 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(m.fork(a).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(m.slot(a, 0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        m.swap_out(GroupId(1)).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Fill the device so the swap-in cannot fit.
    let b = m.allocate(GroupId(2), &prompt(13, 2), None).unwrap().seq;
    assert!(!m.can_swap_in(GroupId(1)).unwrap());
    assert_eq!(
        m.swap_in(GroupId(1)).unwrap_err().kind(),
        ErrorKind::OutOfDeviceMemory
    );
    assert_eq!(m.residence(a).unwrap(), Residence::Host);
    m.free(b).unwrap();
    m.swap_in(GroupId(1)).unwrap();
    m.free(a).unwrap();
    assert_eq!(m.num_free_host_blocks(), 4);
    assert_eq!(m.num_free_device_blocks(), 4);
    m.check_invariants().unwrap();
}

#[test]
fn can_allocate_keeps_the_watermark() {
    let mut m = BlockManager::new(KvConfig {
        block_size: 4,
        watermark: 0.25,
        ..KvConfig::new(8, 0)
    })
    .unwrap();
    assert_eq!(m.watermark_blocks(), 2);
    assert_eq!(m.can_allocate(&prompt(24, 1), None), AllocStatus::Ok); // 6 + 2 = 8
    assert_eq!(m.can_allocate(&prompt(25, 1), None), AllocStatus::Never); // 7 + 2 > 8
    assert_eq!(m.can_allocate(&[], None), AllocStatus::Never);
    m.allocate(GroupId(1), &prompt(8, 1), None).unwrap();
    assert_eq!(m.can_allocate(&prompt(16, 2), None), AllocStatus::Ok); // 4 + 2 <= 6
    assert_eq!(m.can_allocate(&prompt(17, 2), None), AllocStatus::Later);
}

#[test]
fn prefix_caching_reuses_full_blocks_of_a_matching_prefix() {
    let mut m = manager(16, 0, 4);
    let p = prompt(10, 1); // 2 full blocks + 2 tokens
    let a = m.allocate(GroupId(1), &p, None).unwrap();
    let ta = m.block_table(a.seq).unwrap().to_vec();
    assert_eq!(m.num_cached_blocks(), 2, "only full blocks are cached");

    let mut q = p[..8].to_vec();
    q.extend([77, 78, 79]);
    let b = m.allocate(GroupId(2), &q, None).unwrap();
    assert_eq!(b.cached_tokens, 8);
    let tb = m.block_table(b.seq).unwrap().to_vec();
    assert_eq!(tb[..2], ta[..2]);
    assert_ne!(tb[2], ta[2]);
    assert_eq!(m.device_ref_count(ta[0]), 2);
    let s = m.prefix_cache_stats();
    assert_eq!((s.queries, s.hits, s.misses()), (4, 2, 2));
    assert!((s.hit_rate() - 0.5).abs() < 1e-9);

    // A different salt (another LoRA adapter) must not share.
    let c = m.allocate(GroupId(3), &p, Some(5)).unwrap();
    assert_eq!(c.cached_tokens, 0);
    // A prefix that differs in the first block shares nothing after it either (chained hash).
    let mut d = p.clone();
    d[0] = 9999;
    assert_eq!(m.allocate(GroupId(4), &d, None).unwrap().cached_tokens, 0);
    m.check_invariants().unwrap();
}

#[test]
fn cached_blocks_are_evicted_only_when_the_free_list_is_empty_tail_first() {
    let mut m = manager(4, 0, 4);
    let p = prompt(8, 1);
    let a = m.allocate(GroupId(1), &p, None).unwrap().seq;
    let ta = m.block_table(a).unwrap().to_vec();
    m.free(a).unwrap();
    assert_eq!(m.num_evictable_blocks(), 2);
    assert_eq!(m.num_free_device_blocks(), 4);
    // Two fresh blocks come from the free list; the cached ones survive.
    let b = m.allocate(GroupId(2), &prompt(8, 2), None).unwrap().seq;
    let tb = m.block_table(b).unwrap().to_vec();
    assert!(ta.iter().all(|&blk| m.is_cached(blk)));
    m.free(b).unwrap(); // now 4 evictable, 0 free
                        // The cached prefix is still hit.
    let c = m.allocate(GroupId(3), &p, None).unwrap();
    assert_eq!(c.cached_tokens, 8);
    m.free(c.seq).unwrap();
    // One block needed, free list empty: evict the LRU, which is the tail of the prefix
    // released first.
    let before = m.prefix_cache_stats().evictions;
    let d = m.allocate(GroupId(4), &prompt(3, 4), None).unwrap().seq;
    assert_eq!(m.prefix_cache_stats().evictions, before + 1);
    let taken = m.block_table(d).unwrap()[0];
    assert_eq!(taken, tb[1], "oldest release, last block of its sequence");
    assert!(!m.is_cached(taken));
    assert!(m.is_cached(tb[0]) && m.is_cached(ta[0]) && m.is_cached(ta[1]));
    m.check_invariants().unwrap();
}

#[test]
fn prefix_caching_can_be_disabled() {
    let mut m = BlockManager::new(KvConfig {
        enable_prefix_caching: false,
        ..config(8, 0, 4)
    })
    .unwrap();
    let a = m.allocate(GroupId(1), &prompt(8, 1), None).unwrap().seq;
    m.free(a).unwrap();
    assert_eq!(
        m.allocate(GroupId(2), &prompt(8, 1), None)
            .unwrap()
            .cached_tokens,
        0
    );
    assert_eq!(m.num_cached_blocks(), 0);
    assert_eq!(m.num_evictable_blocks(), 0);
    assert_eq!(m.prefix_cache_stats().queries, 0);
}

#[test]
fn appending_registers_filled_blocks_with_the_chained_hash() {
    let mut m = manager(8, 0, 4);
    let a = m.allocate(GroupId(1), &prompt(3, 1), None).unwrap().seq;
    m.append_token(a, 5).unwrap();
    let block = m.block_table(a).unwrap()[0];
    assert!(m.is_cached(block));
    let mut full = prompt(3, 1);
    full.push(5);
    assert_eq!(
        hash_block(None, &full, None),
        hash_block(None, m.tokens(a).unwrap(), None)
    );
    let b = m.allocate(GroupId(2), &full, None).unwrap();
    assert_eq!(b.cached_tokens, 4);
    assert_eq!(m.block_table(b.seq).unwrap()[0], block);
}

/// KV bytes of the token at `position`, a function of the token and its prefix as in a model.
fn kv_bytes(tokens: &[TokenId], position: usize) -> [u8; 8] {
    hash_block(None, &tokens[..=position], None).0.to_le_bytes()
}

fn write_kv(m: &BlockManager, store: &mut BlockStore, seq: SeqId, from: usize) {
    let tokens = m.tokens(seq).unwrap().to_vec();
    for pos in from..tokens.len() {
        store
            .write_slot(m.slot(seq, pos).unwrap(), &kv_bytes(&tokens, pos))
            .unwrap();
    }
}

fn assert_kv(m: &BlockManager, store: &BlockStore, seq: SeqId) {
    let tokens = m.tokens(seq).unwrap().to_vec();
    for pos in 0..tokens.len() {
        let got = store.read_slot(m.slot(seq, pos).unwrap()).unwrap();
        assert_eq!(got, kv_bytes(&tokens, pos), "{seq} position {pos}");
    }
}

#[test]
fn swap_round_trip_preserves_contents_and_sharing() {
    let cfg = KvConfig {
        enable_prefix_caching: false,
        ..config(8, 8, 4)
    };
    let mut m = BlockManager::new(cfg.clone()).unwrap();
    let mut store = BlockStore::new(&cfg, 8).unwrap();
    let a = m.allocate(GroupId(1), &prompt(6, 1), None).unwrap().seq;
    write_kv(&m, &mut store, a, 0);
    let b = m.fork(a).unwrap();
    let o = m.append_token(b, 11).unwrap();
    store
        .copy_blocks(&o.copy.into_iter().collect::<Vec<_>>())
        .unwrap();
    write_kv(&m, &mut store, b, 6);
    assert_kv(&m, &store, a);
    assert_kv(&m, &store, b);

    let out = m.swap_out(GroupId(1)).unwrap();
    assert_eq!(
        out.len(),
        3,
        "shared first block copied once: 1 shared + 2 private"
    );
    store.swap_out(&out).unwrap();
    assert_eq!(m.num_free_device_blocks(), 8);
    let shared_host = m.block_table(a).unwrap()[0];
    assert_eq!(m.block_table(b).unwrap()[0], shared_host);
    assert_eq!(m.host_ref_count(shared_host), 2);
    // Scribble over the device: the round trip must not depend on stale device bytes.
    let junk = m.allocate(GroupId(2), &prompt(32, 9), None).unwrap().seq;
    write_kv(&m, &mut store, junk, 0);
    m.free(junk).unwrap();

    let back = m.swap_in(GroupId(1)).unwrap();
    assert_eq!(back.len(), 3);
    store.swap_in(&back).unwrap();
    assert_eq!(m.num_free_host_blocks(), 8);
    assert_eq!(m.block_table(a).unwrap()[0], m.block_table(b).unwrap()[0]);
    assert_eq!(m.device_ref_count(m.block_table(a).unwrap()[0]), 2);
    assert_kv(&m, &store, a);
    assert_kv(&m, &store, b);
    m.check_invariants().unwrap();
}

#[test]
fn swap_in_reuses_blocks_still_cached_on_the_device() {
    let mut m = manager(8, 8, 4);
    let a = m.allocate(GroupId(1), &prompt(9, 1), None).unwrap().seq;
    let before = m.block_table(a).unwrap().to_vec();
    let out = m.swap_out(GroupId(1)).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(m.num_evictable_blocks(), 2, "full blocks stay cached");
    let back = m.swap_in(GroupId(1)).unwrap();
    assert_eq!(back.len(), 1, "only the partial block is copied back");
    assert_eq!(m.block_table(a).unwrap()[..2], before[..2]);
    assert_eq!(m.prefix_cache_stats().swap_in_reuses, 2);
    m.check_invariants().unwrap();
}

#[test]
fn block_store_checks_its_arguments() {
    let cfg = config(2, 1, 4);
    assert_eq!(
        BlockStore::new(&cfg, 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut s = BlockStore::new(&cfg, 2).unwrap();
    assert_eq!(s.slot_bytes(), 2);
    let slot = SlotRef {
        block: BlockId(1),
        offset: 3,
    };
    s.write_slot(slot, &[1, 2]).unwrap();
    assert_eq!(s.read_slot(slot).unwrap(), &[1, 2]);
    assert_eq!(
        s.write_slot(slot, &[1]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let bad = SlotRef {
        block: BlockId(1),
        offset: 4,
    };
    assert_eq!(
        s.read_slot(bad).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let outside = BlockCopy {
        src: BlockId(2),
        dst: BlockId(0),
    };
    assert!(s.copy_blocks(&[outside]).is_err());
    assert!(s.swap_out(&[outside]).is_err());
    assert!(s.device_block(BlockId(2)).is_err());
    assert!(s.host_block(BlockId(1)).is_err());
    let c = BlockCopy {
        src: BlockId(1),
        dst: BlockId(0),
    };
    s.copy_blocks(&[c]).unwrap();
    assert_eq!(&s.device_block(BlockId(0)).unwrap()[6..8], &[1, 2]);
    s.swap_out(&[BlockCopy {
        src: BlockId(0),
        dst: BlockId(0),
    }])
    .unwrap();
    assert_eq!(&s.host_block(BlockId(0)).unwrap()[6..8], &[1, 2]);
}
