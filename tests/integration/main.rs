//! rcmd's integration tests, one module per area, built as one test binary.
//!
//! One binary, not one per file: `cargo test` runs binaries one after another, so each
//! file's slowest test used to leave the other test threads idle until it ended, and every
//! file linked its own copy of the library and the helpers. Here every test shares the
//! threads (`.cargo/config.toml` sets how many). Run one area with
//! `cargo test --test integration copy::`. The Ansible playbook is `tests/ansible.rs`.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod cleanup;
mod client_server;
mod containment;
mod copy;
mod copy_id;
mod decoder_props;
mod demo;
mod demo_page;
mod fanout;
mod first_contact;
mod foreign_text;
mod habits;
mod hardening;
mod help;
mod host_settings;
mod hostile_input;
mod install;
mod prompt;
mod python_client;
mod sessions;
mod stalled;
mod tls;
mod trace;
mod trust_files;
mod tutorial_modes;
mod tutorial_refusals;
mod wireshark;
mod wrong_mode;
mod zerocopy;
