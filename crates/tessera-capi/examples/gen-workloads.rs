//! Writes the inputs of the real-program tests into a directory, for
//! `bench/real-programs.sh`:
//!
//! ```text
//! cargo run --release -p tessera-capi --example gen-workloads -- DIR
//! ```
//!
//! DIR gets `text.txt` (100 MB), `big.c` (10,000+ lines of C), `rows.sql`
//! (100,000 INSERTs and queries), `threads.py`, `wordfreq.pl` and `tree/`
//! (3,000 files for git). The generators are the tests' own
//! (`tests/common/workloads.rs`).

#[path = "../tests/common/workloads.rs"]
mod workloads;

use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-workloads DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir).expect("create DIR");
    workloads::text(&dir.join("text.txt"), workloads::TEXT_BYTES);
    std::fs::write(
        dir.join("big.c"),
        workloads::c_program(workloads::C_FUNCTIONS),
    )
    .unwrap();
    std::fs::write(
        dir.join("rows.sql"),
        workloads::sqlite_script(workloads::SQL_ROWS),
    )
    .unwrap();
    std::fs::write(dir.join("threads.py"), workloads::PYTHON).unwrap();
    std::fs::write(dir.join("wordfreq.pl"), workloads::PERL).unwrap();
    let tree = dir.join("tree");
    if !tree.exists() {
        workloads::source_tree(&tree, workloads::GIT_FILES);
    }
    println!("{}", dir.display());
}
