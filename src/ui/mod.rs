//! egui panels and the canvas renderer; never touches burn.

pub mod actions;
pub mod canvas;
pub mod palette;
pub mod tools;
