//! nvg-studio: an editor and toolkit for Next Visual Granularity (NVG) generation.
//!
//! Layers, lower to higher: [`granularity`] (plain data and algorithms) ← [`model`] (burn
//! modules) ← [`data`], [`train`] ← the command line. See `docs/architecture.md`.

pub mod app;
pub mod backend;
pub mod data;
pub mod eval;
pub mod document;
pub mod granularity;
pub mod model;
pub mod pipeline;
pub mod sampler;
pub mod swap;
pub mod train;
pub mod ui;
pub mod viz;
pub mod worker;
