//! The folders are the architecture: every top-level module of the library may import only the
//! modules below it (docs/architecture.md draws the same table). This test reads the sources
//! and fails on any `crate::x` reference that is not allowed, so an upward arrow or a cycle
//! cannot come back unnoticed. It also keeps every source file under 1,000 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it may import (directly).
const ALLOWED: &[(&str, &[&str])] = &[
    ("granularity", &[]),
    ("data", &["granularity"]),
    ("model", &["granularity", "data"]),
    ("sampler", &["granularity", "model"]),
    ("document", &["granularity", "sampler"]),
    ("train", &["granularity", "data", "model", "sampler"]),
    ("eval", &["granularity", "data", "model", "sampler", "train"]),
    ("worker", &["granularity", "data", "model", "sampler", "document"]),
    ("ui", &["granularity"]),
    ("app", &["granularity", "document", "worker", "ui"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::name` references of a source text, comments left out.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let ident = |s: &str| -> String { s.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a::x, b}`: the first name of every part (one line, one level).
                for part in group.split('}').next().unwrap_or("").split(',') {
                    refs.insert(ident(part));
                }
            } else {
                refs.insert(ident(after));
            }
            refs.remove("");
            rest = after;
        }
    }
    refs
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        // The binary's command line (main.rs, cli/) sits above everything; lib.rs lists modules.
        if ["main", "lib", "cli"].contains(&top.as_str()) {
            continue;
        }
        let Some(ok) = allowed.get(top.as_str()) else {
            violations.push(format!("{}: module '{top}' is not in the layering table (tests/layering.rs)", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for r in crate_refs(&text) {
            if r != top && allowed.contains_key(r.as_str()) && !ok.contains(&r.as_str()) {
                violations.push(format!("{}: {top} imports {r}", rel.display()));
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layering:\n{}", violations.join("\n"));
}

#[test]
fn no_source_file_exceeds_1000_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 1000).then(|| format!("{} ({n} lines)", f.strip_prefix(root).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files: {}", long.join(", "));
}

#[test]
fn the_reference_scanner_sees_paths_and_skips_comments() {
    let refs = crate_refs("use crate::model::host;\nlet x = crate::sampler::sample(); // crate::app::x\nuse crate::{data::a, ui};\n");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["data", "model", "sampler", "ui"]);
}
