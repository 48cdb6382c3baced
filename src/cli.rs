//! The `erpguard` command line: argument parsing, exit codes, and dispatch.
//!
//! Exit codes: 0 success, 1 runtime failure, 64 bad usage or invalid config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};

/// Success.
pub const EXIT_OK: u8 = 0;
/// A runtime failure (port in use, unwritable file, broken audit chain).
pub const EXIT_FAILURE: u8 = 1;
/// Bad usage or an invalid config (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// erpguard: a security gateway for self-hosted ERPNext and Akaunting.
#[derive(Debug, Parser)]
#[command(name = "erpguard", version, about, propagate_version = true)]
pub struct Cli {
    /// The config file (relative paths inside it are resolved from the working directory).
    #[arg(long, short = 'c', global = true, default_value = config::DEFAULT_PATH, value_name = "FILE")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: terminate TLS, enforce the policy, forward to the upstreams.
    Run,
    /// Validate the config fully (certificates, CIDRs, patterns, durations) and
    /// print a summary of the effective policy. Binds no port, writes no file.
    Check,
    /// Say which site and rule decide a request, and the decision, without forwarding it.
    Explain(crate::explain::ExplainArgs),
    /// Check and read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// See and lift login lockouts (and step-up locks).
    #[command(subcommand)]
    Lockout(crate::lockout::LockoutCommand),
    /// TOTP enrolments for step-up: enroll, link, list, reset.
    #[command(subcommand)]
    Totp(crate::enrol::TotpCommand),
    /// Gateway-issued API tokens: create, list, show, revoke, rotate.
    #[command(subcommand)]
    Token(crate::token::cli::TokenCommand),
    /// Access review of API tokens: scopes, owner, last use, expiry; flags
    /// dormant and soon-expiring ones.
    Report(crate::token::cli::ReportArgs),
}

/// `erpguard audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; name the first altered, missing or inserted line.
    Verify {
        /// The audit log (default: `[audit] path` from the config).
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
    },
    /// Print the last lines, and optionally follow new ones.
    Tail {
        /// The audit log (default: `[audit] path` from the config).
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing lines as they are written.
        #[arg(short, long)]
        follow: bool,
    },
}

/// Parses the arguments and runs the verb.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(dispatch(cli))
}

fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Run => run(&cli.config),
        Command::Check => crate::summary::check(&cli.config),
        Command::Explain(args) => crate::explain::run(&cli.config, &args),
        Command::Lockout(cmd) => crate::lockout::run(&cli.config, &cmd),
        Command::Totp(cmd) => crate::enrol::run(&cli.config, &cmd),
        Command::Token(cmd) => crate::token::cli::run(&cli.config, &cmd),
        Command::Report(args) => crate::token::cli::report(&cli.config, &args),
        Command::Audit(AuditCommand::Verify { path }) => audit_verify(&cli.config, path),
        Command::Audit(AuditCommand::Tail {
            path,
            lines,
            follow,
        }) => audit_tail(&cli.config, path, lines, follow),
    }
}

/// Loads the config or prints why not; used by every verb that needs it.
pub fn load_or_report(path: &std::path::Path) -> Result<Config, u8> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        EXIT_USAGE
    })
}

fn run(path: &std::path::Path) -> u8 {
    let config = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::logging::init(&config.log);
    // The control runtime: signals, reloads, the token follower, the admin and
    // redirect listeners. HTTPS traffic runs on the workers' own runtimes.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("erpguard: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    match rt.block_on(crate::server::run(config)) {
        Ok(()) => EXIT_OK,
        Err(crate::server::RunError::Config(e)) => {
            eprintln!("{e}");
            EXIT_USAGE
        }
        Err(e) => {
            tracing::error!(error = %e, "erpguard stopped");
            eprintln!("erpguard: {e}");
            EXIT_FAILURE
        }
    }
}

/// The audit log path: `--path`, else the config's `[audit] path`.
fn audit_path(config: &std::path::Path, path: Option<PathBuf>) -> Result<PathBuf, u8> {
    match path {
        Some(p) => Ok(p),
        None => load_or_report(config).map(|c| c.audit_path),
    }
}

fn audit_verify(config: &std::path::Path, path: Option<PathBuf>) -> u8 {
    let path = match audit_path(config, path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match crate::audit::verify(&path) {
        Ok(report) => {
            println!(
                "{}: ok, {} lines, chain intact (last hash {})",
                path.display(),
                report.lines,
                report.last_hash
            );
            EXIT_OK
        }
        Err(e) => {
            println!("{}: {e}", path.display());
            EXIT_FAILURE
        }
    }
}

fn audit_tail(config: &std::path::Path, path: Option<PathBuf>, lines: usize, follow: bool) -> u8 {
    let path = match audit_path(config, path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match crate::audit::tail(&path, lines) {
        Ok(last) => last.iter().for_each(|l| println!("{l}")),
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return EXIT_FAILURE;
        }
    }
    if follow {
        return follow_file(&path);
    }
    EXIT_OK
}

/// Prints lines appended to `path` until interrupted.
fn follow_file(path: &std::path::Path) -> u8 {
    use std::io::{BufRead, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        eprintln!("{}: cannot open", path.display());
        return EXIT_FAILURE;
    };
    if file.seek(SeekFrom::End(0)).is_err() {
        return EXIT_FAILURE;
    }
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => std::thread::sleep(std::time::Duration::from_millis(250)),
            Ok(_) => print!("{line}"),
            Err(_) => return EXIT_FAILURE,
        }
    }
}
