//! The canvas's editing tools: what each one does and how the toolbar names it.

/// Editing tools of the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Hover to inspect clusters.
    Inspect,
    /// Paint positions to child A or B of their parent (stage ≥ 1).
    Brush,
    /// Click a cluster: flip it to its sibling.
    Fill,
    /// Drag an ellipse: inside → child B, outside → child A, within the parent.
    Ellipse,
    /// Drag a rectangle: inside → child B, outside → child A, within the parent.
    Rect,
    /// Paint locks.
    Lock,
    /// Erase locks.
    Unlock,
    /// Paint the class map.
    ClassBrush,
}

impl Tool {
    pub const ALL: [Tool; 8] =
        [Tool::Inspect, Tool::Brush, Tool::Fill, Tool::Ellipse, Tool::Rect, Tool::Lock, Tool::Unlock, Tool::ClassBrush];
    pub fn label(self) -> &'static str {
        match self {
            Tool::Inspect => "Inspect",
            Tool::Brush => "Structure brush",
            Tool::Fill => "Flip cluster",
            Tool::Ellipse => "Ellipse layout",
            Tool::Rect => "Rectangle layout",
            Tool::Lock => "Lock brush",
            Tool::Unlock => "Unlock brush",
            Tool::ClassBrush => "Class brush",
        }
    }
    pub fn tooltip(self) -> &'static str {
        match self {
            Tool::Inspect => "Hover a cluster to see its id, size and code",
            Tool::Brush => "Paint positions into child A or B of their parent; a stroke stays inside the parent it started in",
            Tool::Fill => "Click a cluster to move it entirely into its sibling",
            Tool::Ellipse => "Drag an ellipse: inside becomes child B, the rest of the parent child A (shape guidance)",
            Tool::Rect => "Drag a rectangle: inside becomes child B, the rest of the parent child A (shape guidance)",
            Tool::Lock => "Paint locks: locked positions keep structure and codes through reruns and strokes",
            Tool::Unlock => "Erase locks",
            Tool::ClassBrush => "Paint a class map: each cluster takes the class covering most of it",
        }
    }
}
