//! End-to-end tests: the real `erpguard` binary, real TLS, real sockets, a test
//! upstream, all on 127.0.0.1 ephemeral ports.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

mod browser;
mod bypass;
mod cli;
mod client_identity;
mod login;
mod proxy;
mod reload;
mod step_up;
mod tokens;
