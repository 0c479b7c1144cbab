//! Undo/redo and revisions around [`apply`].
//!
//! Undo points are whole snapshots of [`State`] (a document is a few kilobytes). A command that
//! changes nothing makes no undo point; a stroke is one command, so one undo point. Results that
//! arrive from the worker ([`Editor::accept_stage`]) update the current state in place without an
//! undo point, so undoing an edit goes back to the state that preceded it — the complete result
//! when the edit followed a finished run (an edit made mid-run returns to the partial result,
//! and the app reruns its stale stages).
//!
//! The revision counts every change of the editable state, undo and redo included; the worker
//! tags its results with the revision they were computed for and the app drops any other.

use super::{Command, EditError, Effect, ModelInfo, State, accept_stage, apply};

/// Most undo points kept.
const UNDO_LIMIT: usize = 200;

/// The open document with its undo history.
#[derive(Clone, Debug)]
pub struct Editor {
    /// The model the document is edited with.
    pub model: ModelInfo,
    state: State,
    undo: Vec<(String, State)>,
    redo: Vec<(String, State)>,
    revision: u64,
    /// Changed since the last save.
    pub dirty: bool,
}

/// What undo/redo did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UndoOutcome {
    /// Went back/forward over the named command.
    Done(String),
    /// Nothing to undo/redo.
    Nothing,
}

impl Editor {
    /// An editor on `state`.
    pub fn new(model: ModelInfo, state: State) -> Self {
        Self { model, state, undo: vec![], redo: vec![], revision: 1, dirty: false }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The revision of the current state.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies a command; makes one undo point when it changed something.
    pub fn apply(&mut self, cmd: &Command) -> Result<Effect, EditError> {
        let before = self.state.clone();
        let effect = apply(&mut self.state, &self.model, cmd)?;
        if effect.changed {
            self.undo.push((cmd.label(), before));
            if self.undo.len() > UNDO_LIMIT {
                self.undo.remove(0);
            }
            self.redo.clear();
            self.bump();
        }
        Ok(effect)
    }

    /// Replaces the whole state (open a project, new document): clears undo history.
    pub fn reset(&mut self, model: ModelInfo, state: State) {
        self.model = model;
        self.state = state;
        self.undo.clear();
        self.redo.clear();
        self.bump();
        self.dirty = false;
    }

    /// Takes one finished stage of the run for `revision`; results for any other revision are
    /// ignored (returns false).
    pub fn accept_stage(&mut self, revision: u64, stage: usize, structure: &[u32], codes: &[u32]) -> Result<bool, EditError> {
        if revision != self.revision {
            return Ok(false);
        }
        accept_stage(&mut self.state, &self.model, stage, structure, codes)?;
        self.dirty = true;
        Ok(true)
    }

    /// Undo the last command.
    pub fn undo(&mut self) -> UndoOutcome {
        match self.undo.pop() {
            Some((label, state)) => {
                let current = std::mem::replace(&mut self.state, state);
                self.redo.push((label.clone(), current));
                self.bump();
                UndoOutcome::Done(label)
            }
            None => UndoOutcome::Nothing,
        }
    }

    /// Redo the last undone command.
    pub fn redo(&mut self) -> UndoOutcome {
        match self.redo.pop() {
            Some((label, state)) => {
                let current = std::mem::replace(&mut self.state, state);
                self.undo.push((label.clone(), current));
                self.bump();
                UndoOutcome::Done(label)
            }
            None => UndoOutcome::Nothing,
        }
    }

    /// Number of undo points.
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    /// Number of redo points.
    pub fn redo_len(&self) -> usize {
        self.redo.len()
    }

    /// Label of the command undo would revert.
    pub fn undo_label(&self) -> Option<&str> {
        self.undo.last().map(|(l, _)| l.as_str())
    }

    /// Label of the command redo would repeat.
    pub fn redo_label(&self) -> Option<&str> {
        self.redo.last().map(|(l, _)| l.as_str())
    }

    fn bump(&mut self) {
        self.revision += 1;
        self.dirty = true;
    }
}
