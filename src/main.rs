//! The `erpguard` binary: everything lives in the library; see `erpguard --help`.

fn main() -> std::process::ExitCode {
    erpguard::cli::main()
}
