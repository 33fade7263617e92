//! The RVS control plane: the configuration file (parse, validate, turn
//! into the data plane's snapshot) and the `rvsd` daemon's building blocks.

pub mod admin;
pub mod config;
pub mod health;
pub mod kernel;
pub mod log;
pub mod memory;
pub mod metrics;
