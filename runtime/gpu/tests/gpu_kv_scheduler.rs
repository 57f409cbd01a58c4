//! Tests of the continuous-batching `kv::Scheduler`: every request finishes with its output
//! length, memory pressure preempts the latest-arrived group by swap or recompute, impossible
//! requests are rejected, and nothing leaks.

use std::collections::HashMap;

use farmem_gpu::kv::{
    synthetic_token, GroupId, KvConfig, PreemptionMode, Request, Scheduler, SchedulerConfig,
};
use farmem_gpu::ErrorKind;

fn request(id: u64, prompt_len: usize, output_len: usize, n: usize) -> Request {
    Request {
        id: GroupId(id),
        prompt: (0..prompt_len as u32)
            .map(|i| id as u32 * 7919 + i)
            .collect(),
        output_len,
        n,
        salt: None,
    }
}

fn kv(device: usize, host: usize) -> KvConfig {
    KvConfig {
        block_size: 4,
        watermark: 0.0,
        ..KvConfig::new(device, host)
    }
}

/// Runs to completion, checking invariants each step; returns (finish step per group, outcomes
/// of interest).
fn run(s: &mut Scheduler, max_steps: usize) -> (HashMap<GroupId, usize>, Vec<GroupId>) {
    let mut finished = HashMap::new();
    let mut preempted = Vec::new();
    for step in 0..max_steps {
        if s.is_idle() {
            break;
        }
        let out = s.step().unwrap();
        s.manager().check_invariants().unwrap();
        assert!(out.running_seqs <= 256);
        for g in out.finished {
            assert!(finished.insert(g, step).is_none(), "{g} finished twice");
        }
        preempted.extend(out.preempted);
    }
    assert!(s.is_idle(), "did not finish in {max_steps} steps");
    (finished, preempted)
}

#[test]
fn every_request_finishes_and_nothing_leaks() {
    let mut s = Scheduler::new(kv(64, 16), SchedulerConfig::default()).unwrap();
    for id in 0..20 {
        s.add_request(request(id, 3 + id as usize, 1 + (id as usize * 7) % 13, 1))
            .unwrap();
    }
    let (finished, preempted) = run(&mut s, 1000);
    assert_eq!(finished.len(), 20);
    assert!(
        preempted.is_empty(),
        "64 blocks hold this load without preemption"
    );
    assert_eq!(s.manager().num_used_device_blocks(), 0);
    assert_eq!(s.manager().num_sequences(), 0);
    assert_eq!(s.stats().finished, 20);
}

#[test]
fn a_request_generates_exactly_its_output_length() {
    let mut s = Scheduler::new(kv(16, 0), SchedulerConfig::default()).unwrap();
    s.add_request(request(1, 5, 6, 1)).unwrap();
    let mut decoded = 0;
    let mut steps = 0;
    while !s.is_idle() {
        let out = s.step().unwrap();
        steps += 1;
        if steps == 1 {
            assert_eq!(out.admitted, vec![GroupId(1)]);
            assert_eq!(out.prefill_tokens, 5);
            assert_eq!(out.decode_tokens, 0);
            assert_eq!(out.batch_tokens(), 5);
        } else {
            decoded += out.decode_tokens;
        }
    }
    // The prefill samples the first token; 5 decode steps produce the other 5.
    assert_eq!((steps, decoded), (6, 5));
}

fn pressure(mode: PreemptionMode, host: usize) -> (Scheduler, Vec<GroupId>) {
    let cfg = SchedulerConfig {
        preemption: mode,
        ..SchedulerConfig::default()
    };
    // 12 blocks of 4 tokens; four requests growing to 4 + 20 tokens = 6 blocks each.
    let mut s = Scheduler::new(kv(12, host), cfg).unwrap();
    for id in 0..4 {
        s.add_request(request(id, 4, 20, 1)).unwrap();
    }
    let (finished, preempted) = run(&mut s, 2000);
    assert_eq!(finished.len(), 4);
    assert_eq!(s.manager().num_free_device_blocks(), 12);
    assert_eq!(s.manager().num_free_host_blocks(), host);
    (s, preempted)
}

#[test]
fn swap_preemption_evicts_the_latest_arrived_and_everyone_finishes() {
    let (s, preempted) = pressure(PreemptionMode::Swap, 32);
    assert!(!preempted.is_empty());
    assert_eq!(preempted[0], GroupId(3), "the latest arrival goes first");
    assert!(s.stats().swap_preemptions > 0);
    assert_eq!(s.stats().recompute_preemptions, 0);
}

#[test]
fn recompute_preemption_requeues_and_everyone_finishes() {
    let (s, preempted) = pressure(PreemptionMode::Recompute, 0);
    assert_eq!(preempted[0], GroupId(3));
    assert!(s.stats().recompute_preemptions > 0);
    assert_eq!(s.stats().swap_preemptions, 0);
}

#[test]
fn swap_falls_back_to_recompute_when_the_host_pool_is_full() {
    let (s, _) = pressure(PreemptionMode::Swap, 0);
    assert!(s.stats().recompute_preemptions > 0);
    assert_eq!(s.stats().swap_preemptions, 0);
}

#[test]
fn recompute_keeps_generated_tokens_of_a_single_sequence() {
    // Two requests growing to 4 blocks each squeeze into 6 blocks: the later one is recomputed.
    let cfg = SchedulerConfig {
        preemption: PreemptionMode::Recompute,
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(kv(6, 0), cfg).unwrap();
    s.add_request(request(0, 4, 12, 1)).unwrap();
    s.add_request(request(1, 4, 12, 1)).unwrap();
    let mut decode = 0;
    let mut prefill = 0;
    while !s.is_idle() {
        let out = s.step().unwrap();
        decode += out.decode_tokens;
        prefill += out.prefill_tokens;
        s.manager().check_invariants().unwrap();
    }
    assert!(s.stats().recompute_preemptions > 0);
    // Every generated token is decoded once or sampled by a prefill; recomputed prefills cover
    // the prompt plus what was generated before the preemption.
    assert_eq!(
        decode + s.stats().finished as usize + s.stats().recompute_preemptions as usize,
        2 * 12
    );
    assert!(prefill > 8, "recompute re-prefilled generated tokens");
}

#[test]
fn parallel_sampling_shares_the_prompt_and_copies_on_write() {
    let mut s = Scheduler::new(kv(64, 0), SchedulerConfig::default()).unwrap();
    s.add_request(request(1, 10, 5, 3)).unwrap();
    let out = s.step().unwrap();
    assert_eq!(out.running_seqs, 3);
    // Prompt: 2 full blocks shared + one partial block; two samples copy it on write.
    assert_eq!(out.copies.len(), 2);
    assert_eq!(s.manager().num_used_device_blocks(), 2 + 3);
    let (finished, _) = run(&mut s, 100);
    assert_eq!(finished.len(), 1);
}

#[test]
fn impossible_requests_are_rejected_or_refused() {
    let mut s = Scheduler::new(kv(4, 0), SchedulerConfig::default()).unwrap();
    let e = s.add_request(request(1, 0, 5, 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = s.add_request(request(1, 3, 0, 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = s.add_request(request(1, 3, 1, 1000)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    s.add_request(request(1, 17, 1, 1)).unwrap(); // 5 blocks > 4: never fits
    assert_eq!(
        s.add_request(request(1, 3, 1, 1)).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    s.add_request(request(2, 3, 2, 1)).unwrap();
    let out = s.step().unwrap();
    assert_eq!(out.rejected, vec![GroupId(1)]);
    assert_eq!(out.admitted, vec![GroupId(2)]);
    run(&mut s, 10);
    assert_eq!(s.stats().rejected, 1);
    let bad = SchedulerConfig {
        max_num_seqs: 0,
        ..SchedulerConfig::default()
    };
    assert_eq!(
        Scheduler::new(kv(4, 0), bad).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_group_outgrowing_the_device_is_rejected_not_looped() {
    for mode in [PreemptionMode::Swap, PreemptionMode::Recompute] {
        let cfg = SchedulerConfig {
            preemption: mode,
            ..SchedulerConfig::default()
        };
        // 4 blocks of 4 tokens hold 16; the request grows to 4 + 20 = 24.
        let mut s = Scheduler::new(kv(4, 8), cfg).unwrap();
        s.add_request(request(1, 4, 20, 1)).unwrap();
        s.add_request(request(2, 2, 2, 1)).unwrap();
        let mut rejected = Vec::new();
        for _ in 0..200 {
            if s.is_idle() {
                break;
            }
            rejected.extend(s.step().unwrap().rejected);
            s.manager().check_invariants().unwrap();
        }
        assert!(s.is_idle(), "{mode:?}: livelock");
        assert_eq!(rejected, vec![GroupId(1)], "{mode:?}");
        assert_eq!(s.stats().finished, 1);
        assert_eq!(s.manager().num_free_device_blocks(), 4);
    }
}

#[test]
fn a_prompt_filling_the_device_exactly_is_rejected_not_retried_forever() {
    // 16 prompt tokens fill all 4 blocks; the first sampled token needs a fifth.
    let mut s = Scheduler::new(kv(4, 0), SchedulerConfig::default()).unwrap();
    s.add_request(request(1, 16, 3, 1)).unwrap();
    let out = s.step().unwrap();
    assert_eq!(out.rejected, vec![GroupId(1)]);
    assert!(s.is_idle());
    assert_eq!(s.manager().num_free_device_blocks(), 4);
}

#[test]
fn admission_respects_the_sequence_cap_and_token_budget() {
    let cfg = SchedulerConfig {
        max_num_seqs: 2,
        max_batched_tokens: 8,
        preemption: PreemptionMode::Swap,
    };
    let mut s = Scheduler::new(kv(64, 0), cfg).unwrap();
    for id in 0..4 {
        s.add_request(request(id, 3, 4, 1)).unwrap();
    }
    let out = s.step().unwrap();
    assert_eq!(out.admitted.len(), 2, "cap of 2 sequences");
    assert!(out.prefill_tokens <= 8);
    assert_eq!(s.num_waiting(), 2);
    assert_eq!(s.num_running(), 2);
    run(&mut s, 100);
}

#[test]
fn synthetic_tokens_are_deterministic_and_diverge_between_samples() {
    assert_eq!(
        synthetic_token(GroupId(3), 0, 9),
        synthetic_token(GroupId(3), 0, 9)
    );
    let a: Vec<_> = (0..8).map(|p| synthetic_token(GroupId(3), 0, p)).collect();
    let b: Vec<_> = (0..8).map(|p| synthetic_token(GroupId(3), 1, p)).collect();
    assert_ne!(a, b);
}
