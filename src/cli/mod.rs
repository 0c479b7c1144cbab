//! Command bodies, one file per command family (the layout step of issue 21 moves the rest
//! of `main.rs` here).

pub mod diagnose;
