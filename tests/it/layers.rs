//! The module map of `src/`: imports point down only. A cycle between top-level modules, or an
//! import of the transport from the domain, fails here, before anyone has to untangle it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Who must not import whom: the domain knows nothing of gRPC services, servers or clients, and
/// the client plumbing (which apps embed) nothing of the server's side.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "tokens",
        &["apis", "server", "client", "cli", "bench", "store"],
    ),
    ("store", &["apis", "server", "client", "cli", "bench"]),
    // Decides for both proxy transports (ext_authz over gRPC, forward auth over HTTP): neither.
    (
        "authz",
        &["apis", "server", "client", "cli", "bench", "http", "store"],
    ),
    // The HTTP ports' layer serves handlers; it knows none of them.
    (
        "http",
        &[
            "apis", "server", "client", "cli", "bench", "authz", "tokens",
        ],
    ),
    ("client", &["apis", "server", "cli", "bench"]),
    ("apis", &["server", "client", "cli", "bench"]),
    ("bench", &["server", "cli"]),
    (
        "metrics",
        &[
            "apis", "server", "client", "cli", "bench", "store", "tokens",
        ],
    ),
];

/// Every `.rs` file of `dir`, deepest included.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The top-level modules that `code` names through `crate::` (comments left out).
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`: the first name of each item.
                let group = group.split('}').next().unwrap_or_default();
                for item in group.split(',') {
                    found.insert(first_name(item.trim()));
                }
            } else {
                found.insert(first_name(rest));
            }
        }
    }
    found.remove("");
    found
}

fn first_name(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Each top-level module of `src/` (a `NAME.rs` or a `NAME/` directory), with the top-level
/// modules it imports.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("a UTF-8 name")
            .to_owned();
        if name == "lib" || name == "bin" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path.clone());
        } else {
            continue;
        }
        let module = graph.entry(name.clone()).or_default();
        for file in files {
            let code = std::fs::read_to_string(&file).expect("a readable source file");
            module.extend(imports(&code).into_iter().filter(|m| *m != name));
        }
    }
    graph
}

/// A cycle through `start`, as the path that closes it, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_two_top_level_modules_import_each_other_even_through_others() {
    let graph = module_graph();
    assert!(
        graph.contains_key("server") && graph.contains_key("tokens"),
        "{graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|module| cycle_from(&graph, module))
        .map(|cycle| cycle.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_domain_imports_no_transport_and_the_client_no_server() {
    let graph = module_graph();
    let mut wrong = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        let imported = graph
            .get(*module)
            .unwrap_or_else(|| panic!("no module {module}"));
        for target in forbidden.iter().filter(|t| imported.contains(**t)) {
            wrong.push(format!("{module} imports {target}"));
        }
    }
    assert!(wrong.is_empty(), "imports pointing up: {wrong:#?}");
}

#[test]
fn imports_are_read_from_paths_and_groups_but_not_comments() {
    let code = "use crate::store::{A, B};\nuse crate::{tokens::X, time};\n// crate::server\n\
                let x = crate::metrics::get(); /// [`crate::client`]";
    let found: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(found, ["metrics", "store", "time", "tokens"]);
}
