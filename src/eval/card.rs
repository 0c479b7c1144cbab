//! The model card files: `model-card.md` is made of named sections between HTML comment markers
//! (`<!-- eval:begin -->` … `<!-- eval:end -->`, `<!-- eval-swap:begin -->` …), so that `eval`
//! and `eval-swap` each rewrite only their own part; `model-card.json` is one object whose
//! top-level keys belong to `eval`, except `"swap"`, which belongs to `eval-swap`.

use std::path::Path;

use crate::model::checkpoint::write_atomic;

/// The markers of section `name`.
fn markers(name: &str) -> (String, String) {
    (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"))
}

/// `existing` with section `name` replaced by `body` (markers kept). A missing section is added:
/// the `eval` section at the start, any other at the end.
pub fn replace_section(existing: &str, name: &str, body: &str) -> String {
    let (begin, end) = markers(name);
    let block = format!("{begin}\n{}\n{end}", body.trim_end());
    if let Some(b) = existing.find(&begin) {
        if let Some(e_rel) = existing[b..].find(&end) {
            let e = b + e_rel + end.len();
            return format!("{}{block}{}", &existing[..b], &existing[e..]);
        }
        // A begin marker without its end: everything after it belongs to the section.
        return format!("{}{block}\n", &existing[..b]);
    }
    let rest = existing.trim();
    if rest.is_empty() {
        format!("{block}\n")
    } else if name == "eval" {
        format!("{block}\n\n{rest}\n")
    } else {
        format!("{rest}\n\n{block}\n")
    }
}

/// Rewrites section `name` of the markdown file at `path` (created if missing), atomically.
pub fn write_markdown_section(path: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    write_atomic(path, replace_section(&existing, name, body).as_bytes())
}

/// The JSON object at `path`, or an empty one when the file is missing or not a JSON object.
pub fn read_json_object(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// Writes `object` as pretty JSON, atomically.
pub fn write_json(path: &Path, object: &serde_json::Map<String, serde_json::Value>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(object).map_err(std::io::Error::other)?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_added_and_kept() {
        let a = replace_section("", "eval", "# card\nnumbers 1");
        assert_eq!(a, "<!-- eval:begin -->\n# card\nnumbers 1\n<!-- eval:end -->\n");
        let b = replace_section(&a, "eval-swap", "## swap\nx");
        assert!(b.starts_with("<!-- eval:begin -->") && b.trim_end().ends_with("<!-- eval-swap:end -->"));
        let c = replace_section(&b, "eval", "# card\nnumbers 2");
        assert!(c.contains("numbers 2") && !c.contains("numbers 1") && c.contains("## swap\nx"));
        let d = replace_section(&c, "eval-swap", "## swap\ny");
        assert!(d.contains("numbers 2") && d.contains("## swap\ny") && !d.contains("## swap\nx"));
        // eval added to a file that only has the swap section goes first.
        let e = replace_section("<!-- eval-swap:begin -->\ns\n<!-- eval-swap:end -->\n", "eval", "E");
        assert!(e.find("eval:begin").unwrap() < e.find("eval-swap:begin").unwrap());
        // A name that is a prefix of another does not match the other's markers.
        assert_eq!(replace_section(&d, "eval", "Z").matches("eval-swap:begin").count(), 1);
    }
}
