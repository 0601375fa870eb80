//! codelayer: a self-hosted code knowledge layer over Bitbucket Cloud repositories.
//!
//! Floors, from the ground up (a module imports only from floors below its own; the README's
//! "Map of the code" says what each owns):
//! 0. `index`, `ids`, `db`, `git`, `telemetry`, `view` (the ground: no imports of ours)
//! 1. `config`, `layout`, `error`, `gate`, `recent`
//! 2. `auth`, `jobs`, `shards`, then `bitbucket`
//! 3. `state`
//! 4. `identity`, `visible`, `purge`, `sync`
//! 5. `workspaces`, `mcp_auth`, then `repositories`, `search`, `account`, `signin`, `pages`, `freshness`
//! 6. `mcp`, `worker`, then `app` (the router: nothing imports it)

pub mod account;
pub mod app;
pub mod auth;
pub mod bitbucket;
pub mod config;
pub mod db;
pub mod error;
pub mod freshness;
pub mod gate;
pub mod git;
pub mod identity;
pub mod ids;
pub mod index;
pub mod jobs;
pub mod layout;
pub mod mcp;
pub mod mcp_auth;
pub mod pages;
pub mod purge;
pub mod recent;
pub mod repositories;
pub mod search;
pub mod shards;
pub mod signin;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod view;
pub mod visible;
pub mod worker;
pub mod workspaces;
