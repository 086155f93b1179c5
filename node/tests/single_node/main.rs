//! Integration tests of one node: real wasm functions (built by
//! scripts/build-functions), a real HTTP server on loopback, a real data dir.

mod auth;
mod big_modules;
mod cli;
mod common;
mod concurrency;
mod config_file;
mod determinism;
mod footprint;
mod node_process;
mod outcomes;
mod persistence;
mod third_party;
mod web;
