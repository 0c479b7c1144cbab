//! One table of the editor's actions: menu label, shortcut and tooltip come from here, so menus,
//! shortcuts and tooltips never disagree.

use eframe::egui;
use egui::{Key, KeyboardShortcut, Modifiers};

/// An action of the menus and shortcuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// New document.
    New,
    /// Open a project.
    Open,
    /// Open an image and encode it into editable layers.
    OpenImage,
    /// Load another model folder.
    OpenModel,
    /// Save the project.
    Save,
    /// Close the window (asks first when unsaved edits would be lost).
    Quit,
    /// Save under a new name.
    SaveAs,
    /// Export the final image.
    ExportFinal,
    /// Export the active stage.
    ExportStage,
    /// Export the stage strip.
    ExportStrip,
    /// Undo.
    Undo,
    /// Redo.
    Redo,
    /// Rerun the stale stages (or everything).
    Run,
    /// Stop the running job.
    Stop,
    /// New randomness for the active stage.
    RerollStage,
    /// Variations from the active stage.
    Variations,
    /// Keep the current structure as a blueprint.
    UseAsBlueprint,
    /// A/B compare.
    ToggleCompare,
    /// Previous stage.
    StageUp,
    /// Next stage.
    StageDown,
}

/// Label, shortcut and tooltip of an action.
pub struct ActionInfo {
    /// The action.
    pub action: Action,
    /// Menu label.
    pub label: &'static str,
    /// Keyboard shortcut.
    pub shortcut: Option<KeyboardShortcut>,
    /// What it does.
    pub tooltip: &'static str,
}

const CMD: Modifiers = Modifiers::COMMAND;
const CMD_SHIFT: Modifiers = Modifiers { shift: true, ..Modifiers::COMMAND };

/// Every action. Order matters for shortcuts: the more specific (with Shift) come first.
pub const ACTIONS: &[ActionInfo] = &[
    ActionInfo { action: Action::New, label: "New", shortcut: Some(KeyboardShortcut::new(CMD, Key::N)), tooltip: "Start a new document on the loaded model" },
    ActionInfo { action: Action::Open, label: "Open project…", shortcut: Some(KeyboardShortcut::new(CMD, Key::O)), tooltip: "Open a saved .ron project" },
    ActionInfo { action: Action::OpenImage, label: "Open image…", shortcut: Some(KeyboardShortcut::new(CMD, Key::I)), tooltip: "Encode an image into editable stages (you can also drop a file on the window)" },
    ActionInfo { action: Action::OpenModel, label: "Open model folder…", shortcut: None, tooltip: "Load another model folder (tokenizer/ + generator/); the open document is autosaved first" },
    ActionInfo { action: Action::SaveAs, label: "Save as…", shortcut: Some(KeyboardShortcut::new(CMD_SHIFT, Key::S)), tooltip: "Save the project under a new name" },
    ActionInfo { action: Action::Save, label: "Save", shortcut: Some(KeyboardShortcut::new(CMD, Key::S)), tooltip: "Save the project (atomic write)" },
    ActionInfo { action: Action::Quit, label: "Quit", shortcut: Some(KeyboardShortcut::new(CMD, Key::Q)), tooltip: "Close the editor (unsaved edits go to the autosave; with autosave off you are asked first)" },
    ActionInfo { action: Action::ExportFinal, label: "Export final image…", shortcut: Some(KeyboardShortcut::new(CMD, Key::E)), tooltip: "PNG of the last stage, with the recipe in a text chunk" },
    ActionInfo { action: Action::ExportStage, label: "Export active stage…", shortcut: None, tooltip: "PNG of the active stage's decoded canvas, with the recipe" },
    ActionInfo { action: Action::ExportStrip, label: "Export stage strip…", shortcut: None, tooltip: "PNG of every stage: canvases above structure maps, with the recipe" },
    ActionInfo { action: Action::Redo, label: "Redo", shortcut: Some(KeyboardShortcut::new(CMD_SHIFT, Key::Z)), tooltip: "Redo the last undone edit" },
    ActionInfo { action: Action::Undo, label: "Undo", shortcut: Some(KeyboardShortcut::new(CMD, Key::Z)), tooltip: "Undo the last edit (strokes, fills, locks, classes, variations)" },
    ActionInfo { action: Action::Run, label: "Run", shortcut: Some(KeyboardShortcut::new(CMD, Key::Enter)), tooltip: "Rerun from the first stale stage (or everything when nothing is stale)" },
    ActionInfo { action: Action::Stop, label: "Stop", shortcut: Some(KeyboardShortcut::new(Modifiers::NONE, Key::Escape)), tooltip: "Stop the running job (takes effect within one stage)" },
    ActionInfo { action: Action::RerollStage, label: "Reroll active stage", shortcut: Some(KeyboardShortcut::new(Modifiers::NONE, Key::R)), tooltip: "New randomness for the active stage only; earlier stages stay identical" },
    ActionInfo { action: Action::Variations, label: "Variations from active stage", shortcut: Some(KeyboardShortcut::new(Modifiers::NONE, Key::V)), tooltip: "Generate a strip of alternatives from the active stage to pick from" },
    ActionInfo { action: Action::UseAsBlueprint, label: "Use as blueprint", shortcut: Some(KeyboardShortcut::new(Modifiers::NONE, Key::B)), tooltip: "Keep this result's structure maps; pick another class to repaint it (pose-preserving swap)" },
    ActionInfo { action: Action::ToggleCompare, label: "A/B compare", shortcut: Some(KeyboardShortcut::new(Modifiers::NONE, Key::C)), tooltip: "Compare two results or two stages with a slider" },
    ActionInfo { action: Action::StageUp, label: "Coarser stage", shortcut: Some(KeyboardShortcut::new(Modifiers::NONE, Key::PageUp)), tooltip: "Activate the previous (coarser) stage" },
    ActionInfo { action: Action::StageDown, label: "Finer stage", shortcut: Some(KeyboardShortcut::new(Modifiers::NONE, Key::PageDown)), tooltip: "Activate the next (finer) stage" },
];

/// The table entry of an action.
pub fn info(action: Action) -> &'static ActionInfo {
    ACTIONS.iter().find(|a| a.action == action).expect("every action is in the table")
}

/// Actions whose shortcut was pressed this frame (consumed from the input). Single-key shortcuts
/// are skipped while a text field has focus.
pub fn pressed(ctx: &egui::Context) -> Vec<Action> {
    let typing = ctx.egui_wants_keyboard_input();
    ctx.input_mut(|i| {
        ACTIONS
            .iter()
            .filter_map(|a| {
                let sc = a.shortcut?;
                if typing && sc.modifiers.is_none() && sc.logical_key != Key::Escape {
                    return None;
                }
                i.consume_shortcut(&sc).then_some(a.action)
            })
            .collect()
    })
}
