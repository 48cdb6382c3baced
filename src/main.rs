//! The `erpguard` binary: everything lives in the library; see `erpguard --help`.

// jemalloc: a request allocates a few dozen short-lived blocks across
// threads, which glibc's allocator serves with more work and keeps in more
// memory per idle connection (see bench/load/README.md).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    erpguard::cli::main()
}
