//! The gateway's layers, checked: the import graph of `gateway/src`'s top-level modules has no
//! cycle, and every import points down (see `docs/architecture.md`).
//!
//! Top to bottom: the assembly (`gateway`), the listeners (`server`, `admin`), the `pipeline`,
//! the components (receivers, plugins, exporters, the trace store and their helpers), the
//! config's load step, and the leaves. A module may import its own layer or lower ones, never
//! a higher one; `config` imports only leaves; exporters import neither the pipeline nor the
//! receivers. The data model and the config schema live in the `sluice-core` crate, below all
//! of these, where an upward import does not compile at all. A new top-level module must be
//! given its layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the library and its layer, bottom (0) to top.
const LAYERS: &[(&str, u8)] = &[
    ("budget", 0),
    ("build_info", 0),
    ("catch_panic", 0),
    ("grpc_codec", 0),
    ("inlet", 0),
    ("model", 0),
    ("naming", 0),
    ("prompb", 0),
    ("scrape", 0),
    ("rt", 0),
    ("telemetry", 0),
    ("tls", 0),
    ("config", 1),
    ("exporters", 2),
    ("limiter", 2),
    ("plugins", 2),
    ("receivers", 2),
    ("slo", 2),
    ("store", 2),
    ("pipeline", 3),
    ("admin", 4),
    ("server", 4),
    ("gateway", 5),
];

/// Imports forbidden even though they point down or sideways.
const FORBIDDEN: &[(&str, &str)] = &[("exporters", "pipeline"), ("exporters", "receivers")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable source directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a source text names through `crate::`, outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            let name = identifier(rest);
            if !name.is_empty() {
                out.insert(name.to_string());
            }
            continue;
        };
        // `crate::{a::b, c::{d, e}}`: the first name of each top-level item.
        let mut depth = 0usize;
        let mut start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && (c.is_ascii_alphabetic() || c == '_') => {
                    out.insert(identifier(&group[i..]).to_string());
                    start = false;
                }
                _ => {}
            }
        }
    }
    out
}

/// Module → the modules it imports, for the library's modules (`main.rs` and the command
/// line under `cmd/` are the binary, above everything).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&root).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a path");
        let module = first.trim_end_matches(".rs").to_string();
        if matches!(module.as_str(), "main" | "cmd" | "lib") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| {
            panic!("module `{module}` has no layer: add it to LAYERS in gateway/tests/layers.rs")
        })
}

#[test]
fn the_reader_finds_plain_and_grouped_imports_but_not_comments() {
    let text = "use crate::model::{Batch, Signal};\n\
                use crate::{config::Config, telemetry::metrics::SelfMetrics};\n\
                use crate::{\n    inlet::Room,\n    tls::{self, TlsError},\n};\n\
                // see crate::gateway\n\
                let x = crate::rt::blocking(|| 1); /// [`crate::admin`]\n";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(
        found,
        ["config", "inlet", "model", "rt", "telemetry", "tls"]
    );
}

#[test]
fn imports_point_down_the_layers() {
    let graph = graph();
    assert!(
        graph.contains_key("pipeline"),
        "the reader found no modules"
    );
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if layer(to) > layer(from) {
                wrong.push(format!(
                    "{from} (layer {}) imports {to} (layer {})",
                    layer(from),
                    layer(to)
                ));
            }
            if FORBIDDEN.contains(&(from.as_str(), to.as_str())) {
                wrong.push(format!("{from} imports {to}"));
            }
            if from == "config" && layer(to) != 0 {
                wrong.push(format!("config imports {to}, which is not a leaf"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = graph();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
