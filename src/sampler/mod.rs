//! The stage loop and its controls (method §5, §10.3–10.6): CFG and sampling schedules,
//! forced structure maps and codes, locks, regional classes, resumable runs with per-stage
//! random streams, a per-stage callback and cancellation.

pub mod bundle;
pub mod content;
pub mod job;
pub mod sample;
pub mod settings;
pub mod streams;
pub mod swap;

pub use bundle::{Bundle, BundleError, load_bundle, load_bundle_at, resolve_class};
pub use job::{ImageJob, Lock};
pub use sample::{SampleError, SampleOutput, StageDone, sample, sample_with, structure_flow};
pub use settings::{Linear, SamplerSettings, flow_times};
