//! The bytes behind the block ids: a device pool and a host pool of KV blocks that executes the
//! copy lists the [`BlockManager`](super::BlockManager) returns.
//!
//! ```text
//!   device: [ block 0: slot 0 | slot 1 | ... | slot bs-1 ][ block 1 ... ]    one Vec<u8>
//!   host:   [ block 0 ... ][ block 1 ... ]                                    one Vec<u8>
//!   a slot = slot_bytes bytes (the keys and values of one token, all layers and heads)
//! ```
//!
//! This is the reference executor: the tests use it to show that the bookkeeping preserves
//! contents, and compare the device-backed
//! [`DeviceBlockStore`](super::DeviceBlockStore) (same [`KvStore`](super::KvStore) trait; one
//! device allocation, one pinned host allocation, batched stream copies) against it.

use farmem_error::{Error, Result};

use super::{BlockCopy, BlockId, KvConfig, SlotRef};

/// Which pool a block id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    Device,
    Host,
}

/// Byte contents of every device and host KV block.
#[derive(Clone, Debug)]
pub struct BlockStore {
    slot_bytes: usize,
    block_bytes: usize,
    device: Vec<u8>,
    host: Vec<u8>,
}

impl BlockStore {
    /// A zeroed store for `config`'s pools with `slot_bytes` bytes per token slot.
    pub fn new(config: &KvConfig, slot_bytes: usize) -> Result<BlockStore> {
        config.validate()?;
        let block_bytes = slot_bytes
            .checked_mul(config.block_size)
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "KV slot of {slot_bytes} bytes × {} tokens per block is not a usable block \
                     size; use 1 or more bytes per slot",
                    config.block_size
                ))
            })?;
        let size = |blocks: usize| {
            blocks.checked_mul(block_bytes).ok_or_else(|| {
                Error::invalid(format!(
                    "{blocks} KV blocks of {block_bytes} bytes overflow the address space"
                ))
            })
        };
        Ok(BlockStore {
            slot_bytes,
            block_bytes,
            device: vec![0; size(config.num_device_blocks)?],
            host: vec![0; size(config.num_host_blocks)?],
        })
    }

    /// Bytes per token slot.
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Writes one token's KV (exactly `slot_bytes` bytes) into a device slot.
    pub fn write_slot(&mut self, slot: SlotRef, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.slot_bytes {
            return Err(Error::invalid(format!(
                "writing {slot:?}: got {} bytes, a slot holds {}",
                bytes.len(),
                self.slot_bytes
            )));
        }
        let range = self.slot_range(slot)?;
        self.device[range].copy_from_slice(bytes);
        Ok(())
    }

    /// One token's KV from a device slot.
    pub fn read_slot(&self, slot: SlotRef) -> Result<&[u8]> {
        let range = self.slot_range(slot)?;
        Ok(&self.device[range])
    }

    /// The whole contents of a device block.
    pub fn device_block(&self, b: BlockId) -> Result<&[u8]> {
        let r = self.block_range(Pool::Device, b)?;
        Ok(&self.device[r])
    }

    /// The whole contents of a host block.
    pub fn host_block(&self, b: BlockId) -> Result<&[u8]> {
        let r = self.block_range(Pool::Host, b)?;
        Ok(&self.host[r])
    }

    /// Performs copy-on-write copies (device → device).
    pub fn copy_blocks(&mut self, copies: &[BlockCopy]) -> Result<()> {
        for c in copies {
            let src = self.block_range(Pool::Device, c.src)?;
            let dst = self.block_range(Pool::Device, c.dst)?.start;
            self.device.copy_within(src, dst);
        }
        Ok(())
    }

    /// Performs swap-out copies (device → host).
    pub fn swap_out(&mut self, copies: &[BlockCopy]) -> Result<()> {
        for c in copies {
            let src = self.block_range(Pool::Device, c.src)?;
            let dst = self.block_range(Pool::Host, c.dst)?;
            self.host[dst].copy_from_slice(&self.device[src]);
        }
        Ok(())
    }

    /// Performs swap-in copies (host → device).
    pub fn swap_in(&mut self, copies: &[BlockCopy]) -> Result<()> {
        for c in copies {
            let src = self.block_range(Pool::Host, c.src)?;
            let dst = self.block_range(Pool::Device, c.dst)?;
            self.device[dst].copy_from_slice(&self.host[src]);
        }
        Ok(())
    }

    fn block_range(&self, pool: Pool, b: BlockId) -> Result<std::ops::Range<usize>> {
        let len = match pool {
            Pool::Device => self.device.len(),
            Pool::Host => self.host.len(),
        };
        let start = b.index() * self.block_bytes;
        if start + self.block_bytes > len {
            return Err(Error::invalid(format!(
                "{pool:?} {b} is outside the pool of {} blocks",
                len / self.block_bytes
            )));
        }
        Ok(start..start + self.block_bytes)
    }

    fn slot_range(&self, slot: SlotRef) -> Result<std::ops::Range<usize>> {
        let block = self.block_range(Pool::Device, slot.block)?;
        if slot.offset * self.slot_bytes >= self.block_bytes {
            return Err(Error::invalid(format!(
                "slot offset {} is outside a block of {} slots",
                slot.offset,
                self.block_bytes / self.slot_bytes
            )));
        }
        let start = block.start + slot.offset * self.slot_bytes;
        Ok(start..start + self.slot_bytes)
    }
}
