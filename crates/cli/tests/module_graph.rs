//! A check that no crate of the workspace has modules that import each other in a cycle
//! (issue 16): for each crate it reads every `.rs` file under its `src/`, takes the `crate::…` and `super::…` paths of its code
//! (comments and the file's `#[cfg(test)] mod` excluded: a test may set itself up with
//! a sibling), resolves each to the module file it names, lifts every edge to the two
//! siblings under the modules' common parent (`commands/demo.rs` → `pipeline.rs` is
//! `commands` → `pipeline`; a module using its own parent or child is no edge) and fails
//! on a cycle among siblings at any level.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module file under `dir`, by module path (`main.rs` or `lib.rs` is the root, `[]`).
fn modules(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("reading src")
        .map(|e| e.expect("reading src").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_owned();
        if path.is_dir() {
            let mut sub = prefix.clone();
            sub.push(name);
            modules(&path, &sub, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut module = prefix.clone();
            if !matches!(stem, "mod" | "main" | "lib") {
                module.push(stem.to_owned());
            }
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            out.insert(module, production_code(&text));
        }
    }
}

/// The file's code before its test module, without comment lines.
fn production_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|l| l.starts_with("mod "))
        })
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths after each `keyword::` in `code`: `crate::a::b::{c, d}` gives `[a, b]`.
fn paths_after<'a>(code: &'a str, keyword: &str) -> Vec<Vec<&'a str>> {
    let mut paths = Vec::new();
    let needle = format!("{keyword}::");
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut path = Vec::new();
        let mut tail = rest;
        loop {
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if len == 0 {
                break;
            }
            path.push(&tail[..len]);
            match tail[len..].strip_prefix("::") {
                Some(more) => tail = more,
                None => break,
            }
        }
        paths.push(path);
    }
    paths
}

/// The longest prefix of `path` (from `base`) that is a module.
fn resolve(base: &[String], path: &[&str], known: &BTreeMap<Module, String>) -> Option<Module> {
    (1..=path.len()).rev().find_map(|n| {
        let mut m: Module = base.to_vec();
        m.extend(path[..n].iter().map(|s| (*s).to_owned()));
        known.contains_key(&m).then_some(m)
    })
}

/// Edges between sibling modules (lifted as the module docs say).
fn sibling_edges(known: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, code) in known {
        let crate_refs = paths_after(code, "crate")
            .into_iter()
            .filter_map(|p| resolve(&[], &p, known));
        let parent = &from[..from.len().saturating_sub(1)];
        let super_refs = paths_after(code, "super")
            .into_iter()
            .filter_map(|p| resolve(parent, &p, known));
        for to in crate_refs.chain(super_refs) {
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            edges
                .entry(from[..=common].to_vec())
                .or_default()
                .insert(to[..=common].to_vec());
        }
    }
    edges
}

/// A cycle in `edges`, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        done: &mut BTreeSet<Module>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|m| m == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut done, &mut Vec::new()))
}

/// The `src/` of every crate in the workspace: `crates/*` and `lambdas/*`.
fn crate_sources() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = Vec::new();
    for group in ["crates", "lambdas"] {
        for entry in std::fs::read_dir(root.join(group)).expect("reading the workspace") {
            let src = entry.expect("reading the workspace").path().join("src");
            if src.is_dir() {
                dirs.push(src);
            }
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_cycle() {
    let sources = crate_sources();
    let names: Vec<String> = sources.iter().map(|d| d.display().to_string()).collect();
    for crate_dir in [
        "crates/core/src",
        "crates/aws/src",
        "crates/local/src",
        "crates/cli/src",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(crate_dir)),
            "{crate_dir} not among {names:?}"
        );
    }
    let mut cycles = Vec::new();
    for src in &sources {
        let mut known = BTreeMap::new();
        modules(src, &Vec::new(), &mut known);
        assert!(!known.is_empty(), "no module in {}", src.display());
        if let Some(cycle) = find_cycle(&sibling_edges(&known)) {
            let path: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            cycles.push(format!("{}: {}", src.display(), path.join(" → ")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_a_cycle_through_a_nested_module() {
    let known: BTreeMap<Module, String> = [
        (vec!["a".into()], "use crate::b::Thing;".into()),
        (vec!["b".into()], "mod inner;".into()),
        (
            vec!["b".into(), "inner".into()],
            "fn f() { crate::a::g(); super::other::h(); }".into(),
        ),
        (vec!["b".into(), "other".into()], String::new()),
    ]
    .into_iter()
    .collect();
    let edges = sibling_edges(&known);
    assert_eq!(
        find_cycle(&edges),
        Some(vec![vec!["a".into()], vec!["b".into()], vec!["a".into()]])
    );
    assert!(
        edges[&vec!["b".to_owned(), "inner".to_owned()]]
            .contains(&vec!["b".to_owned(), "other".to_owned()])
    );
}
