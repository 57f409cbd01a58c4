//! Evacuation concurrent with mutation: writers write whole-element patterns with a checksum,
//! readers verify them, while the evacuator moves, writes back and drops chunks under them. No
//! write may be lost and no value may be torn. `FARMEM_STRESS=1` runs longer.

use farmem_objects::{Config, FarMemory, RemArray};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Elem = [u64; 4];

fn pattern(key: u64, version: u64) -> Elem {
    let a = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version;
    let b = version.rotate_left(17) ^ key;
    let c = !a;
    [a, b, c, a ^ b ^ c ^ 0x5555_aaaa_5555_aaaa]
}

fn check(e: &Elem, key: u64, version: u64, what: &str) {
    assert_eq!(
        e[3],
        e[0] ^ e[1] ^ e[2] ^ 0x5555_aaaa_5555_aaaa,
        "torn {what}: {e:?}"
    );
    assert_eq!(*e, pattern(key, version), "{what}: wrong version");
}

fn rounds() -> usize {
    if std::env::var_os("FARMEM_STRESS").is_some() {
        100_000
    } else {
        8_000
    }
}

const LEN: usize = 16 * 1024; // 512 KiB per array
const HOT: usize = 256;

fn writer(fm: &FarMemory, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut a: RemArray<Elem> = fm.array(LEN).unwrap();
    let mut versions = vec![0u64; LEN];
    let mut scope = fm.scope();
    for i in 0..LEN {
        a.set(i, pattern(i as u64, 0), &scope).unwrap();
        if i % 64 == 0 {
            scope.renew();
        }
    }
    for r in 0..rounds() {
        scope.renew();
        let i = if rng.gen_bool(0.5) {
            rng.gen_range(0..HOT)
        } else {
            rng.gen_range(0..LEN)
        };
        let v = versions[i] + 1;
        if rng.gen_bool(0.5) {
            let e = a.get_mut(i, &scope).unwrap();
            check(e, i as u64, versions[i], "before write");
            *e = pattern(i as u64, v);
        } else {
            a.set(i, pattern(i as u64, v), &scope).unwrap();
        }
        versions[i] = v;
        let j = rng.gen_range(0..LEN);
        check(
            a.get(j, &scope).unwrap(),
            j as u64,
            versions[j],
            "read back",
        );
        if r % 1024 == 0 {
            // Verify everything so far: no write was lost.
            let mut k = 0;
            a.for_each_chunk(&mut scope, |first, s| {
                for (o, e) in s.iter().enumerate() {
                    check(e, (first + o) as u64, versions[first + o], "scan");
                    k += 1;
                }
            })
            .unwrap();
            assert_eq!(k, LEN);
        }
    }
}

fn reader(fm: &FarMemory, shared: &RemArray<Elem>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scope = fm.scope();
    for r in 0..rounds() * 2 {
        if r % 4 == 0 {
            scope.renew();
        }
        let i = if rng.gen_bool(0.6) {
            rng.gen_range(0..HOT)
        } else {
            rng.gen_range(0..LEN)
        };
        let e = shared.get(i, &scope).unwrap();
        check(e, i as u64 + 1_000_000, 0, "shared");
        // Hold the reference across more dereferences: it must stay put.
        let k = rng.gen_range(0..LEN);
        let _ = shared.get(k, &scope).unwrap();
        check(e, i as u64 + 1_000_000, 0, "held shared");
    }
}

#[test]
fn evacuation_never_loses_or_tears_writes() {
    let cfg = Config::builder()
        .local_bytes(64 * 4096) // 256 KiB vs 2 MiB of arrays
        .region_bytes(4096)
        .chunk_bytes(512)
        .alloc_shards(4)
        .evacuator_threads(2)
        .prefetch_depth(0)
        .build()
        .unwrap();
    let fm = FarMemory::in_process(cfg, 64 << 20).unwrap();
    let mut shared: RemArray<Elem> = fm.array(LEN).unwrap();
    {
        let src: Vec<Elem> = (0..LEN).map(|i| pattern(i as u64 + 1_000_000, 0)).collect();
        let mut s = fm.scope();
        shared.write_slice(0, &src, &mut s).unwrap();
    }
    std::thread::scope(|ts| {
        for t in 0..2 {
            let fm = &fm;
            ts.spawn(move || writer(fm, 7 + t));
        }
        for t in 0..2 {
            let (fm, shared) = (&fm, &shared);
            ts.spawn(move || reader(fm, shared, 70 + t));
        }
    });
    let m = fm.metrics();
    eprintln!("{m:?}");
    assert!(m.evacuated_regions > 0, "{m:?}");
    assert!(
        m.objects_moved > 0,
        "hot chunks were copied (second chance): {m:?}"
    );
    assert!(m.objects_dropped > 0 && m.bytes_written_back > 0, "{m:?}");
    assert!(fm.take_error().is_none());
}
