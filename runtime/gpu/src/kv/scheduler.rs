//! A continuous-batching scheduler over the block manager, in vLLM's style (iteration-level
//! scheduling from Orca, OSDI'22; block-aware admission and preemption from PagedAttention §4.5).
//!
//! # Queues and one step
//!
//! ```text
//!   add_request ─▶ WAITING ──admit (blocks allow)──▶ RUNNING ──output_len reached──▶ finished
//!                     ▲                              │    ▲
//!                     └──── preempt: recompute ──────┤    │ swap in (no preemption this step)
//!                                                    └──▶ SWAPPED
//!                                                  preempt: swap
//! ```
//!
//! Every queue is kept in arrival order (first come, first served). One [`Scheduler::step`]:
//!
//! 1. **decode**: every running group appends one token to each of its sequences, oldest group
//!    first. When the device lacks a block for that, the *latest-arrived* running group is
//!    preempted (possibly the group itself), by swap or by recompute per
//!    [`PreemptionMode`]. A group that reaches its output length is freed; a group that cannot
//!    grow even with every other group preempted outgrows the device and is rejected.
//! 2. **swap in**: if nothing was preempted in this step, swapped groups return (oldest first)
//!    while the device has room above the watermark.
//! 3. **admit**: if no group is swapped out and nothing was preempted, waiting groups are
//!    allocated (oldest first) while [`BlockManager::can_allocate`] says so, the prefill-token
//!    budget and the running-sequence cap allow. The prefill samples each sequence's first
//!    output token. A prompt that can never fit is rejected.
//!
//! Recompute frees the group's blocks and puts it back in the waiting queue; a single-sequence
//! group keeps its generated tokens as part of its new prompt (vLLM), a multi-sequence group
//! restarts from its prompt (vLLM swaps those instead; we fall back to restart only when the host
//! pool is full). The model itself is simulated: generated tokens are a deterministic function
//! of (request, sample, position), see [`synthetic_token`].

use std::collections::VecDeque;

use farmem_error::{Error, ErrorKind, Result};

use super::{BlockCopy, BlockManager, GroupId, KvConfig, SeqId, TokenId};

/// How a running group is preempted when the device runs out of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreemptionMode {
    /// Copy its blocks to the host pool and back later (falls back to recompute when the host
    /// pool is full).
    Swap,
    /// Free its blocks and recompute its KV when it is admitted again.
    Recompute,
}

/// Limits and policy of a [`Scheduler`].
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Most sequences running at once (vLLM's `max_num_seqs`, default 256).
    pub max_num_seqs: usize,
    /// Most prompt tokens prefilled in one step (vLLM's `max_num_batched_tokens`); also the
    /// longest prompt accepted.
    pub max_batched_tokens: usize,
    /// Swap or recompute on preemption.
    pub preemption: PreemptionMode,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            max_num_seqs: 256,
            max_batched_tokens: 4096,
            preemption: PreemptionMode::Swap,
        }
    }
}

/// One generation request: a prompt, how many tokens to generate, and how many samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The request id; becomes the group id in the block manager.
    pub id: GroupId,
    /// The prompt's token ids (at least one).
    pub prompt: Vec<TokenId>,
    /// Tokens each sample generates (at least one).
    pub output_len: usize,
    /// Parallel samples sharing the prompt (at least one).
    pub n: usize,
    /// Prefix-cache salt (LoRA id, tenant), if any.
    pub salt: Option<u64>,
}

/// What one [`Scheduler::step`] did: the work of the model step and the copies to perform
/// before it (swap-out, swap-in, copy-on-write, in that order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// Prompt tokens computed by prefills this step (prefix-cache hits excluded).
    pub prefill_tokens: usize,
    /// Sequences that decoded one token this step.
    pub decode_tokens: usize,
    /// Groups admitted (prefilled) this step.
    pub admitted: Vec<GroupId>,
    /// Groups that finished this step.
    pub finished: Vec<GroupId>,
    /// Groups that can never fit (prompt too long, or outgrowing the whole device); dropped.
    pub rejected: Vec<GroupId>,
    /// Groups preempted this step (by swap or recompute).
    pub preempted: Vec<GroupId>,
    /// Device → host copies of swap-outs.
    pub swap_out: Vec<BlockCopy>,
    /// Host → device copies of swap-ins.
    pub swap_in: Vec<BlockCopy>,
    /// Device → device copy-on-write copies.
    pub copies: Vec<BlockCopy>,
    /// Sequences running after the step.
    pub running_seqs: usize,
}

impl StepOutcome {
    /// Tokens the model processed in this step (prefill plus decode).
    pub fn batch_tokens(&self) -> usize {
        self.prefill_tokens + self.decode_tokens
    }
}

/// Counters over the scheduler's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Steps run.
    pub steps: u64,
    /// Groups finished.
    pub finished: u64,
    /// Groups rejected as never fitting.
    pub rejected: u64,
    /// Preemptions by swapping.
    pub swap_preemptions: u64,
    /// Preemptions by recomputation.
    pub recompute_preemptions: u64,
}

/// The deterministic "model output": the token sample `sample` of request `group` produces at
/// `position`. Different samples diverge, as parallel sampling does.
pub fn synthetic_token(group: GroupId, sample: usize, position: usize) -> TokenId {
    // SplitMix64 finalizer over the three inputs: cheap and well mixed.
    let mut z = group.0 ^ (sample as u64).rotate_left(21) ^ (position as u64).rotate_left(42);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % 50_000) as TokenId
}

#[derive(Clone, Debug)]
struct Group {
    request: Request,
    arrival: u64,
    /// What the next admission prefills: the prompt, plus generated tokens after a recompute.
    prefill: Vec<TokenId>,
    /// Tokens generated so far by every sample (samples run in lockstep).
    generated: usize,
    /// The group's sequences while it holds blocks (running or swapped).
    seqs: Vec<SeqId>,
}

/// The continuous-batching scheduler (see the [module notes](self)).
#[derive(Debug, Clone)]
pub struct Scheduler {
    config: SchedulerConfig,
    manager: BlockManager,
    waiting: VecDeque<Group>,
    running: VecDeque<Group>,
    swapped: VecDeque<Group>,
    next_arrival: u64,
    stats: SchedulerStats,
}

impl Scheduler {
    /// A scheduler over a fresh block manager for `kv`.
    pub fn new(kv: KvConfig, config: SchedulerConfig) -> Result<Scheduler> {
        if config.max_num_seqs == 0 || config.max_batched_tokens == 0 {
            return Err(Error::invalid(format!(
                "scheduler limits max_num_seqs {} and max_batched_tokens {} must be positive",
                config.max_num_seqs, config.max_batched_tokens
            )));
        }
        Ok(Scheduler {
            manager: BlockManager::new(kv)?,
            config,
            waiting: VecDeque::new(),
            running: VecDeque::new(),
            swapped: VecDeque::new(),
            next_arrival: 0,
            stats: SchedulerStats::default(),
        })
    }

    /// Queues a request at the back of the waiting queue.
    pub fn add_request(&mut self, request: Request) -> Result<()> {
        if request.prompt.is_empty() || request.output_len == 0 || request.n == 0 {
            return Err(Error::invalid(format!(
                "request {}: prompt of {} tokens, output_len {} and n {} must all be positive",
                request.id.0,
                request.prompt.len(),
                request.output_len,
                request.n
            )));
        }
        if request.n > self.config.max_num_seqs {
            return Err(Error::invalid(format!(
                "request {}: n = {} samples exceeds max_num_seqs {}",
                request.id.0, request.n, self.config.max_num_seqs
            )));
        }
        let id = request.id;
        let known = self
            .waiting
            .iter()
            .chain(&self.running)
            .chain(&self.swapped);
        if known.into_iter().any(|g| g.request.id == id) {
            return Err(Error::invalid(format!(
                "request {}: the id is already queued; ids must be unique",
                id.0
            )));
        }
        self.next_arrival += 1;
        self.waiting.push_back(Group {
            prefill: request.prompt.clone(),
            request,
            arrival: self.next_arrival,
            generated: 0,
            seqs: Vec::new(),
        });
        Ok(())
    }

    /// Runs one scheduling iteration (see the [module notes](self)).
    pub fn step(&mut self) -> Result<StepOutcome> {
        let mut out = StepOutcome::default();
        self.stats.steps += 1;
        self.decode(&mut out)?;
        if out.preempted.is_empty() {
            self.swap_in(&mut out)?;
            if self.swapped.is_empty() {
                self.admit(&mut out)?;
            }
        }
        out.running_seqs = self.running_seqs();
        self.stats.finished += out.finished.len() as u64;
        self.stats.rejected += out.rejected.len() as u64;
        Ok(out)
    }

    /// Whether every request has finished (or been rejected).
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty() && self.swapped.is_empty()
    }

    /// Requests waiting for admission.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Groups running.
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Groups swapped out.
    pub fn num_swapped(&self) -> usize {
        self.swapped.len()
    }

    /// Sequences running.
    pub fn running_seqs(&self) -> usize {
        self.running.iter().map(|g| g.seqs.len()).sum()
    }

    /// Life-time counters.
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    /// The block manager (read only: the scheduler owns the sequences).
    pub fn manager(&self) -> &BlockManager {
        &self.manager
    }

    /// Token slots of running sequences holding a real token, and slots of the device blocks
    /// they hold: the KV utilisation is their ratio. A block shared by several sequences counts
    /// once.
    pub fn kv_slot_usage(&self) -> Result<(usize, usize)> {
        let bs = self.manager.config().block_size;
        let mut filled = std::collections::HashMap::new();
        for g in &self.running {
            for &seq in &g.seqs {
                let len = self.manager.tokens(seq)?.len();
                for (i, &b) in self.manager.block_table(seq)?.iter().enumerate() {
                    let used = (len - i * bs).min(bs);
                    let e = filled.entry(b).or_insert(0usize);
                    *e = (*e).max(used);
                }
            }
        }
        Ok((filled.values().sum(), filled.len() * bs))
    }

    fn decode(&mut self, out: &mut StepOutcome) -> Result<()> {
        self.running.make_contiguous().sort_by_key(|g| g.arrival);
        let mut kept = VecDeque::with_capacity(self.running.len());
        'groups: while let Some(mut g) = self.running.pop_front() {
            while !self.manager.can_append(g.request.id)? {
                match self.running.pop_back() {
                    Some(victim) => self.preempt(victim, out)?,
                    None if kept.is_empty() => {
                        // Alone on the device and still no room to grow: it can never finish
                        // here (its sequences outgrow the device). Drop it rather than loop.
                        self.manager.free_group(g.request.id)?;
                        out.rejected.push(g.request.id);
                        continue 'groups;
                    }
                    None => {
                        self.preempt(g, out)?;
                        continue 'groups;
                    }
                }
            }
            self.append_all(&mut g, out)?;
            out.decode_tokens += g.seqs.len();
            if g.generated >= g.request.output_len {
                self.manager.free_group(g.request.id)?;
                out.finished.push(g.request.id);
            } else {
                kept.push_back(g);
            }
        }
        self.running = kept;
        Ok(())
    }

    /// Appends the next synthetic token to each sequence of `g`.
    fn append_all(&mut self, g: &mut Group, out: &mut StepOutcome) -> Result<()> {
        for (sample, &seq) in g.seqs.iter().enumerate() {
            let position = self.manager.tokens(seq)?.len();
            let token = synthetic_token(g.request.id, sample, position);
            let appended = self.manager.append_token(seq, token)?;
            out.copies.extend(appended.copy);
        }
        g.generated += 1;
        Ok(())
    }

    fn preempt(&mut self, mut g: Group, out: &mut StepOutcome) -> Result<()> {
        out.preempted.push(g.request.id);
        let id = g.request.id;
        if self.config.preemption == PreemptionMode::Swap && self.manager.can_swap_out(id)? {
            out.swap_out.extend(self.manager.swap_out(id)?);
            self.stats.swap_preemptions += 1;
            insert_by_arrival(&mut self.swapped, g);
            return Ok(());
        }
        self.stats.recompute_preemptions += 1;
        if g.seqs.len() == 1 {
            g.prefill = self.manager.tokens(g.seqs[0])?.to_vec();
        } else {
            g.prefill = g.request.prompt.clone();
            g.generated = 0;
        }
        self.manager.free_group(id)?;
        g.seqs.clear();
        insert_by_arrival(&mut self.waiting, g);
        Ok(())
    }

    fn swap_in(&mut self, out: &mut StepOutcome) -> Result<()> {
        while let Some(g) = self.swapped.front() {
            let id = g.request.id;
            if self.running_seqs() + g.seqs.len() > self.config.max_num_seqs
                || !self.manager.can_swap_in(id)?
            {
                break;
            }
            out.swap_in.extend(self.manager.swap_in(id)?);
            if let Some(g) = self.swapped.pop_front() {
                insert_by_arrival(&mut self.running, g);
            }
        }
        Ok(())
    }

    fn admit(&mut self, out: &mut StepOutcome) -> Result<()> {
        let mut budget = self.config.max_batched_tokens;
        let mut running_seqs = self.running_seqs();
        while let Some(g) = self.waiting.front() {
            let (id, n) = (g.request.id, g.request.n);
            let status = self.manager.can_allocate(&g.prefill, g.request.salt);
            if status == super::AllocStatus::Never
                || g.prefill.len() > self.config.max_batched_tokens
            {
                self.waiting.pop_front();
                out.rejected.push(id);
                continue;
            }
            if status == super::AllocStatus::Later
                || g.prefill.len() > budget
                || running_seqs + n > self.config.max_num_seqs
            {
                break;
            }
            let Some(mut g) = self.waiting.pop_front() else {
                break;
            };
            let alloc = self.manager.allocate(id, &g.prefill, g.request.salt)?;
            g.seqs = vec![alloc.seq];
            for _ in 1..n {
                g.seqs.push(self.manager.fork(alloc.seq)?);
            }
            let mut first = StepOutcome::default();
            match self.append_all(&mut g, &mut first) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::OutOfDeviceMemory => {
                    // The samples' first tokens did not fit after all: undo and retry once
                    // running groups release blocks — or, with none running, never.
                    self.manager.free_group(id)?;
                    g.seqs.clear();
                    if self.running.is_empty() {
                        out.rejected.push(id);
                        continue;
                    }
                    self.waiting.push_front(g);
                    break;
                }
                Err(e) => return Err(e),
            }
            out.copies.extend(first.copies);
            budget -= g.prefill.len();
            running_seqs += n;
            out.prefill_tokens += (g.prefill.len() - alloc.cached_tokens).max(1);
            out.admitted.push(id);
            if g.generated >= g.request.output_len {
                self.manager.free_group(id)?;
                out.finished.push(id);
            } else {
                insert_by_arrival(&mut self.running, g);
            }
        }
        Ok(())
    }
}

/// Inserts `g` keeping `queue` sorted by arrival (first come, first served).
fn insert_by_arrival(queue: &mut VecDeque<Group>, g: Group) {
    let at = queue.partition_point(|x| x.arrival < g.arrival);
    queue.insert(at, g);
}
