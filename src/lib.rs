//! erpguard: a TLS-terminating security gateway for self-hosted ERPNext and
//! Akaunting.
//!
//! The request flow is written once, in [`stack`]; the config is checked once,
//! in [`config`]; denials become responses once, in [`error::rescue`].

pub mod admin;
pub mod audit;
pub mod body;
pub mod canon;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod enrol;
pub mod error;
pub mod explain;
pub mod keys;
pub mod lockout;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod operator;
pub mod params;
pub mod policy;
pub mod profile;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod stack;
pub mod stepup;
pub mod store;
pub mod summary;
pub mod tls;
pub mod token;
pub mod totp;
pub mod worker;
