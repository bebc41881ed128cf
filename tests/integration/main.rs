//! End-to-end tests with real components: plans built from `plans/` and
//! `tests/plans/` for wasm32-wasip2, run by the real sandbox, in-process and in
//! worker processes of the real `fedwasm` binary.

mod native;
mod support;

mod cli;
mod components;
mod demo;
mod experiment;
mod federation;
mod fuzz_corpus;
mod hardening;
mod hostile;
mod identities;
mod images;
mod local_federation;
mod mosquitto;
mod node_cli;
mod parity;
mod plan_build;
mod privacy_and_validation;
mod repository;
mod restart;
mod resume;
mod sdk;
mod segmentation;
mod training;
