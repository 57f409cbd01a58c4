//! The block manager's invariant checker: recomputes every reference count from the block
//! tables and checks that each device block is in exactly one state (free, in use, evictable),
//! as described in the [`kv` module notes](crate::kv). O(blocks + tokens); for tests and
//! debugging, never on a hot path.

use std::collections::HashSet;

use farmem_error::{Error, Result};

use super::{BlockManager, Residence};
use crate::kv::prefix_cache::hash_block;
use crate::kv::BlockId;

impl BlockManager {
    /// Checks every invariant of the [module notes](crate::kv) in O(blocks + tokens); an
    /// `Internal` error names the first violation. Meant for tests and debugging.
    pub fn check_invariants(&self) -> Result<()> {
        let bs = self.config.block_size;
        let n = self.config.num_device_blocks;
        let mut dev_refs = vec![0u32; n];
        let mut host_refs = vec![0u32; self.config.num_host_blocks];
        for (id, s) in &self.seqs {
            let bad = |what: &str| Error::internal(format!("{id}: {what}"));
            if s.blocks.len() != self.config.blocks_for(s.tokens.len()) || s.tokens.is_empty() {
                return Err(bad("block table length does not match its tokens"));
            }
            if s.hashes.len() != s.tokens.len() / bs {
                return Err(bad("wrong number of full-block hashes"));
            }
            for (i, &h) in s.hashes.iter().enumerate() {
                let parent = i.checked_sub(1).map(|p| s.hashes[p]);
                if h != hash_block(parent, &s.tokens[i * bs..(i + 1) * bs], s.salt) {
                    return Err(bad("hash chain broken"));
                }
            }
            if !self.groups.get(&s.group).is_some_and(|m| m.contains(id)) {
                return Err(bad("missing from its group"));
            }
            let refs = match s.residence {
                Residence::Device => &mut dev_refs,
                Residence::Host => &mut host_refs,
            };
            let mut seen = HashSet::new();
            for &b in &s.blocks {
                let slot = refs
                    .get_mut(b.index())
                    .ok_or_else(|| bad("block outside its pool"))?;
                if !seen.insert(b) {
                    return Err(bad("names one block twice"));
                }
                *slot += 1;
            }
        }
        if self.groups.values().map(Vec::len).sum::<usize>() != self.seqs.len() {
            return Err(Error::internal("groups and sequences disagree"));
        }
        let lru: HashSet<BlockId> = self.cache.lru_order().into_iter().collect();
        if lru.len() != self.cache.lru_len() {
            return Err(Error::internal("LRU list length or links corrupt"));
        }
        let free: HashSet<BlockId> = self.device.free_list().iter().copied().collect();
        if free.len() != self.device.num_free() {
            return Err(Error::internal("device free list holds a block twice"));
        }
        for (i, &want) in dev_refs.iter().enumerate() {
            let b = BlockId(i as u32);
            let bad = |what: &str| Error::internal(format!("device {b}: {what}"));
            if self.device.ref_count(b) != want {
                return Err(bad(&format!(
                    "ref count {} but {want} table references",
                    self.device.ref_count(b)
                )));
            }
            let (is_free, in_lru, cached) =
                (free.contains(&b), lru.contains(&b), self.is_cached(b));
            if is_free != self.device.is_free(b) || in_lru != self.cache.in_lru(b) {
                return Err(bad("membership flags disagree with the lists"));
            }
            let state_ok = if want > 0 {
                !is_free && !in_lru
            } else {
                (is_free && !in_lru && !cached) || (!is_free && in_lru && cached)
            };
            if !state_ok {
                return Err(bad(&format!(
                    "in no single state (refs {want}, free {is_free}, lru {in_lru}, cached {cached})"
                )));
            }
        }
        for (h, b) in self.cache.registrations() {
            if self.cache.hash_of(b) != Some(h) {
                return Err(Error::internal(format!(
                    "cache map and entry of {b} disagree"
                )));
            }
        }
        let host_free: HashSet<BlockId> = self.host.free_list().iter().copied().collect();
        for (i, &want) in host_refs.iter().enumerate() {
            let b = BlockId(i as u32);
            if self.host.ref_count(b) != want || (want == 0) != host_free.contains(&b) {
                return Err(Error::internal(format!(
                    "host {b}: ref count {} but {want} table references (free: {})",
                    self.host.ref_count(b),
                    host_free.contains(&b)
                )));
            }
        }
        if host_free.len() != self.host.num_free() {
            return Err(Error::internal("host free list holds a block twice"));
        }
        Ok(())
    }
}
