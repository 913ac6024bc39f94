//! The fuzz driver as a deterministic test: `tessera::testing::fuzz_one`,
//! which the AFL target in `fuzz/` calls, run over seeded pseudo-random
//! byte strings, over the saved corpus (`fuzz/corpus/`) and over every
//! input that once failed (`fuzz/regressions/`). See `docs/fuzzing.md`.
//!
//! `TESSERA_FUZZ_INPUT=path` with `-- --ignored replay` replays one file
//! (for example a crash AFL found in `fuzz/out/main/crashes/`; a relative
//! path is taken from the repository root) and prints its decoded plan;
//! `TESSERA_FUZZ_CASES` changes the number of seeded inputs (default 200).

use std::path::{Path, PathBuf};
use tessera::testing::{
    fuzz_one, ops_from_bytes, try_fuzz_one, FaultPlan, FuzzOutcome, FuzzPlan, Op, OpGen,
    FUZZ_HEADER_LEN, FUZZ_MAX_OPS,
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<sub>/`, sorted (none if the folder is missing).
fn saved_inputs(sub: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(sub)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

/// Which of the eleven operation kinds `op` is.
fn kind(op: &Op) -> usize {
    match op {
        Op::Malloc(_) => 0,
        Op::Calloc(..) => 1,
        Op::Memalign(..) => 2,
        Op::Free(_) => 3,
        Op::Realloc(..) => 4,
        Op::ReallocInPlace(..) => 5,
        Op::Trim(_) => 6,
        Op::IndependentCalloc(..) => 7,
        Op::IndependentComalloc(_) => 8,
        Op::Park(_) => 9,
        Op::Unpark(_) => 10,
    }
}

fn replay(path: &Path) -> FuzzOutcome {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    try_fuzz_one(&data).unwrap_or_else(|e| {
        panic!(
            "{} ({} bytes) fails: {e}\nplan: {:?}",
            path.display(),
            data.len(),
            FuzzPlan::from_bytes(&data)
        )
    })
}

/// A pseudo-random input: a header, then mostly opcode-and-argument bytes.
fn seeded_input(gen: &mut OpGen) -> Vec<u8> {
    let len = FUZZ_HEADER_LEN + (gen.next_u64() % 300) as usize;
    let mut data: Vec<u8> = (0..len).map(|_| gen.next_u64() as u8).collect();
    // Half of the inputs run without faults and with the default limit, so
    // the heap grows large enough to reach segments and direct mappings.
    if gen.next_u64() % 2 == 0 {
        data[0] &= 0x3F;
    }
    if gen.next_u64() % 2 == 0 && len > 2 {
        data[2] &= !3;
    }
    data
}

fn cases() -> usize {
    std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn seeded_random_inputs_pass_and_reach_every_path() {
    let mut gen = OpGen::new(0xF022);
    let mut total = FuzzOutcome::default();
    let mut seen = [false; 11];
    for case in 0..cases() {
        let data = seeded_input(&mut gen);
        for op in ops_from_bytes(&data[FUZZ_HEADER_LEN..]) {
            seen[kind(&op)] = true;
        }
        let out = try_fuzz_one(&data)
            .unwrap_or_else(|e| panic!("seeded case {case} fails: {e}\ninput: {data:02x?}"));
        total.ops += out.ops;
        total.null_returns += out.null_returns;
        total.injected_faults += out.injected_faults;
    }
    println!("{total:?}");
    // The test must be able to fail: if the decoder stopped producing some
    // operation, or the faults stopped biting, this run would prove little.
    assert!(seen.iter().all(|&s| s), "every operation decoded: {seen:?}");
    if cases() >= 100 {
        assert!(total.ops > cases() * 30, "inputs decode to real work");
        assert!(total.injected_faults > 100, "faults injected");
        assert!(total.null_returns > 100, "requests failed with null");
    }
}

/// Files at least in `fuzz/corpus/` and `fuzz/regressions/`: a replay
/// that finds fewer (a moved folder, a lost file) fails instead of passing
/// on nothing.
const MIN_CORPUS: usize = 40;
const MIN_REGRESSIONS: usize = 7;

#[test]
fn saved_corpus_and_regressions_pass() {
    for (sub, min) in [("regressions", MIN_REGRESSIONS), ("corpus", MIN_CORPUS)] {
        let files = saved_inputs(sub);
        let mut total = FuzzOutcome::default();
        let mut seen = [false; 11];
        for path in &files {
            let data = std::fs::read(path).unwrap();
            let ops = ops_from_bytes(data.get(FUZZ_HEADER_LEN..).unwrap_or(&[]));
            // (AFL keeps corpus files for their header alone, too.)
            assert!(
                sub == "corpus" || !ops.is_empty(),
                "{} decodes to no operation",
                path.display()
            );
            for op in &ops {
                seen[kind(op)] = true;
            }
            let out = replay(path);
            assert_eq!(out.ops, ops.len(), "{}", path.display());
            total.ops += out.ops;
            total.null_returns += out.null_returns;
            total.injected_faults += out.injected_faults;
        }
        println!("fuzz/{sub}: replayed {} inputs: {total:?}", files.len());
        assert!(
            files.len() >= min,
            "fuzz/{sub} holds {} inputs, expected at least {min}",
            files.len()
        );
        assert!(
            seen.iter().all(|&s| s),
            "fuzz/{sub}: every operation kind: {seen:?}"
        );
        // Both folders hold inputs whose OS calls fail and whose requests
        // are refused (faults, the footprint limit, impossible sizes).
        assert!(
            total.injected_faults > 0 && total.null_returns > 0,
            "fuzz/{sub}: {total:?}"
        );
    }
}

#[test]
#[ignore = "replays the file named by TESSERA_FUZZ_INPUT; run with -- --ignored"]
fn replay_one_input_from_the_environment() {
    // From the repository root:
    // TESSERA_FUZZ_INPUT=path cargo test -p tessera --release \
    //     --test fuzz_driver replay -- --ignored --nocapture
    let path = std::env::var_os("TESSERA_FUZZ_INPUT")
        .expect("set TESSERA_FUZZ_INPUT to the file to replay");
    // cargo runs tests in the crate's folder: a relative path is taken from
    // the repository root, where the documented commands run.
    let path = PathBuf::from(path);
    let path = if path.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path)
    } else {
        path
    };
    let data = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("TESSERA_FUZZ_INPUT={}: {e}", path.display()));
    let plan = FuzzPlan::from_bytes(&data);
    println!("{} bytes; plan: {plan:#?}", data.len());
    fuzz_one(&data);
    println!("passes");
}

#[test]
fn decoding_is_total_and_bounded() {
    assert_eq!(ops_from_bytes(&[]), Vec::<Op>::new());
    // A truncated operation reads zeros: an opcode alone is malloc(0).
    assert_eq!(ops_from_bytes(&[5]), vec![Op::Malloc(0)]);
    // Opcode 0 (malloc), size byte 200 (three-byte form), then 1, then a
    // missing byte read as 0.
    assert_eq!(
        ops_from_bytes(&[0, 200, 1]),
        vec![Op::Malloc((200 - 192) << 16 | 1 << 8)]
    );
    // Any bytes decode, and no input yields more than FUZZ_MAX_OPS.
    assert_eq!(
        ops_from_bytes(&vec![0u8; 10 * FUZZ_MAX_OPS]).len(),
        FUZZ_MAX_OPS
    );
    let mut gen = OpGen::new(7);
    for _ in 0..2000 {
        let len = (gen.next_u64() % 64) as usize;
        let data: Vec<u8> = (0..len).map(|_| gen.next_u64() as u8).collect();
        assert!(ops_from_bytes(&data).len() <= len);
    }
    // The empty input is the default heap with no faults.
    let plan = FuzzPlan::from_bytes(&[]);
    assert_eq!(plan.faults, FaultPlan::Never);
    assert_eq!(plan.config, tessera::Config::DEFAULT);
    assert!(plan.ops.is_empty());
    fuzz_one(&[]);
}

#[test]
fn os_failures_end_in_null_and_are_no_error() {
    // Byte 0 = 0xBF: random faults at (63 + 1) * 1024 / 65536, i.e. every
    // OS call fails. A 1 MiB + 4 KiB malloc needs a direct mapping, so it
    // must return null, and the heap must still pass every check and work
    // again once the OS recovers.
    let data = [0xBF, 0, 0, 0, 0xD0, 0x10, 0];
    assert_eq!(
        FuzzPlan::from_bytes(&data).faults,
        FaultPlan::Random {
            per_65536: 65536,
            seed: 0xC0u64.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        }
    );
    let out = try_fuzz_one(&data).expect("OS failures are not heap errors");
    assert_eq!(out.ops, 1);
    assert_eq!(out.null_returns, 1, "{out:?}");
    assert!(out.injected_faults >= 1, "{out:?}");
}
