//! The shape of the tree: `src/` modules import each other in one
//! direction only, down the layers the README's Layout table lists (front
//! ends over the desk, over analysis and infrastructure, over the leaves),
//! and that table names every module there is. Read from the `crate::`
//! paths of the sources, so a new import that points up, or a cycle, fails
//! here with the edge that makes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for the
/// crate roots).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root().join("src")).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The top-level modules named after `crate::` in `text`: `crate::a::b`
/// and each name of `crate::{a, b::c}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top(&group[..end]) {
                found.extend(leading_ident(item.trim()));
            }
        } else {
            found.extend(leading_ident(rest));
        }
    }
    found
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// Splits at the commas outside nested braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn leading_ident(s: &str) -> Option<String> {
    let ident: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty() && ident != "self").then_some(ident)
}

/// module -> the modules it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = edges.entry(module.clone()).or_default();
        entry.extend(crate_paths(&text).into_iter().filter(|m| *m != module));
    }
    edges
}

/// The README's Layout table: module -> layer (0 the bottom), and the
/// crate roots' own modules (`main`'s), which no layer holds.
fn layers() -> BTreeMap<String, u32> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README has a Layout section");
    let mut out = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        for name in cells[3].split(',') {
            let name = name.trim().trim_matches('`').trim_end_matches('/');
            out.insert(name.to_string(), layer);
        }
    }
    out
}

#[test]
fn no_module_imports_a_layer_above_it_and_there_is_no_cycle() {
    let layers = layers();
    let edges = imports();
    let mut upward = Vec::new();
    for (from, tos) in &edges {
        let from_layer = layers[from.as_str()];
        for to in tos {
            let Some(&to_layer) = layers.get(to.as_str()) else {
                continue;
            };
            if to_layer > from_layer {
                upward.push(format!(
                    "{from} (layer {from_layer}) -> {to} (layer {to_layer})"
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up:\n{}",
        upward.join("\n")
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_readme_layout_names_every_module_and_only_those() {
    let layers = layers();
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let listed: BTreeSet<String> = layers.keys().cloned().collect();
    let missing: Vec<_> = modules.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&modules).collect();
    assert!(
        missing.is_empty(),
        "modules the README's Layout does not list: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "README's Layout lists modules that do not exist: {stale:?}"
    );
}

#[test]
fn the_checker_sees_grouped_and_nested_imports_and_cycles() {
    let found = crate_paths(
        "use crate::{a::X, b, c::{d, e}};\nfn f() { crate::g::h(); }\nuse crate::{self as x};",
    );
    let want: BTreeSet<String> = ["a", "b", "c", "g"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, want);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    fn add(edges: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str) {
        edges.entry(a.into()).or_default().insert(b.into());
    }
    add(&mut edges, "a", "b");
    add(&mut edges, "b", "c");
    assert_eq!(find_cycle(&edges), None);
    add(&mut edges, "c", "a");
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// A cycle of `edges`, as the path that closes it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}
