//! The integration tests, as one binary (`cargo test --test it`; `cargo test --test it purge::`
//! runs one module). Every module drives a real app on a random port through its HTTP API,
//! against its own database and its own fake Bitbucket (see `common`).

#[macro_use]
mod common;

mod browser;
mod counting;
mod deployment;
mod fake_bitbucket;
mod freshness;
mod freshness_corpus;
mod hostile;
mod knowledge_layer;
mod mcp;
mod mcp_oauth;
mod purge;
mod search;
mod sign_in;
mod symbols;
mod workspaces;
