//! codelayer: a self-hosted code knowledge layer over Bitbucket Cloud repositories.

pub mod account;
pub mod app;
pub mod auth;
pub mod bitbucket;
pub mod config;
pub mod db;
pub mod error;
pub mod index;
pub mod jobs;
pub mod mcp;
pub mod pages;
pub mod purge;
pub mod repositories;
pub mod search;
pub mod sync;
pub mod telemetry;
pub mod workspaces;
