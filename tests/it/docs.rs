//! The docs cannot rot silently: every flag README.md and docs/ name is one a binary's `--help`
//! lists, every relative link and `#anchor` resolves, and every `toml` block is a providers file
//! the server reads. (ripgrep keeps its guide beside the code; mdBook runs its examples.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mrmat_rust_api_grpc::server::providers_file;

/// Flags the docs name that belong to other programs: cargo test's `--skip`, cargo's
/// `--release`, ci/test's `--quick`, Python's `http.server --bind`, protoc's `--python_out` and
/// `--grpc_python_out`.
const OTHER_PROGRAMS_FLAGS: &[&str] = &[
    "skip",
    "release",
    "quick",
    // envoy --mode validate, named beside --check-config.
    "mode",
    "bind",
    "python_out",
    "grpc_python_out",
    // podman run, in deploying.md.
    "rm",
    "read-only",
    "runtime",
    "ulimit",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every page of docs/ and deploy/README.md: what a user reads.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md"), root.join("deploy/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is there")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 5, "docs/ has its pages: {docs:?}");
    pages.extend(docs);
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A page's lines, each with its number and whether it is inside a fenced code block (and the
/// block's language).
fn lines(text: &str) -> Vec<(usize, &str, Option<&str>)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(language) = line.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(language.trim()),
            };
            continue;
        }
        out.push((index + 1, line, fence));
    }
    out
}

/// Every `--long-flag` of `binary` and of each of its subcommands, from their `--help`.
fn flags_of(binary: &str, path: &mut Vec<String>, flags: &mut BTreeSet<String>) {
    let output = Command::new(binary)
        .args(path.iter())
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{binary} {path:?} --help exits 0");
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    flags.extend(long_flags(&help));
    let mut commands = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
        } else if in_commands {
            match line.split_whitespace().next() {
                // A command's line is indented two spaces; its help's next lines, more.
                Some(command) if line.starts_with("  ") && !line.starts_with("   ") => {
                    if command != "help" {
                        commands.push(command.to_owned());
                    }
                }
                Some(_) => {}
                None => in_commands = false,
            }
        }
    }
    for command in commands {
        path.push(command);
        flags_of(binary, path, flags);
        path.pop();
    }
}

/// The `--name` words in `text`: `--` after something that is not part of a word, then a name
/// (protoc's `--python_out` included, so it is not read as `--python`).
fn long_flags(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("--") {
        let start = at + offset;
        let name_start = start + 2;
        let mut end = name_start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        let preceded_by_word = start > 0 && word(bytes[start - 1]);
        let name = text[name_start..end].trim_end_matches('-');
        if !preceded_by_word && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            found.push(name.to_owned());
        }
        at = end.max(name_start);
    }
    found
}

/// Every flag the binaries take.
fn binaries_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for binary in [
        env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server"),
        env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client"),
    ] {
        flags_of(binary, &mut Vec::new(), &mut flags);
    }
    flags
}

/// Flags named in `pages` that are neither a binary's nor on the list of other programs'.
fn unknown_flags(pages: &[PathBuf], known: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for page in pages {
        let text = read(page);
        for (number, line, _) in lines(&text) {
            for flag in long_flags(line) {
                if !known.contains(&flag) && !OTHER_PROGRAMS_FLAGS.contains(&flag.as_str()) {
                    unknown
                        .entry(format!("--{flag}"))
                        .or_default()
                        .push(format!("{}:{number}", page.display()));
                }
            }
        }
    }
    unknown
}

#[test]
fn every_flag_the_docs_name_is_in_a_binarys_help() {
    let known = binaries_flags();
    assert!(
        known.contains("listen") && known.contains("stream"),
        "{known:?}"
    );

    let unknown = unknown_flags(&pages(), &known);

    assert!(unknown.is_empty(), "flags no binary takes: {unknown:#?}");
}

#[test]
fn a_renamed_flag_fails_the_docs_check() {
    let mut known = binaries_flags();
    known.remove("stream-budget");
    let page = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(page.path(), "Set `--stream-budget BYTES` and `--listen`.\n").expect("written");

    let unknown = unknown_flags(&[page.path().to_owned()], &known);

    assert_eq!(
        unknown.keys().collect::<Vec<_>>(),
        vec!["--stream-budget"],
        "the one flag the binaries lost"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces made `-`; a repeated one gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line, fence) in lines(text) {
        if fence.is_some() {
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The targets of the Markdown links on a line, code spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            prose.push(c);
        }
    }
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    targets
}

/// Every relative link of `pages` that does not resolve, and why.
fn broken_links(pages: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages {
        let text = read(page);
        for (number, line, fence) in lines(&text) {
            if fence.is_some() {
                continue;
            }
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((file, anchor)) => (file, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let linked = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().expect("a page is in a folder").join(file)
                };
                let here = format!("{}:{number}: {target}", page.display());
                if !linked.exists() {
                    broken.push(format!("{here}: no such file"));
                } else if let Some(anchor) = anchor {
                    let is_page = linked.extension().is_some_and(|e| e == "md");
                    if !is_page || !anchors(&read(&linked)).contains(anchor) {
                        broken.push(format!("{here}: no such heading"));
                    }
                }
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let broken = broken_links(&pages());

    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn a_broken_link_or_anchor_fails_the_docs_check() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let page = folder.path().join("page.md");
    std::fs::write(
        &page,
        "# A page\n\n## Two words\n\n[fine](#two-words), [gone](missing.md), \
         [no heading](#three-words), `[in code](nowhere.md)`\n",
    )
    .expect("written");

    let broken = broken_links(&[page]);

    assert_eq!(broken.len(), 2, "{broken:#?}");
    assert!(
        broken[0].ends_with("missing.md: no such file"),
        "{broken:#?}"
    );
    assert!(
        broken[1].ends_with("#three-words: no such heading"),
        "{broken:#?}"
    );
}

/// The code blocks of `text` in `language`: the line each starts on, and its text.
fn code_blocks(text: &str, language: &str) -> Vec<(usize, String)> {
    let mut blocks: Vec<(usize, String)> = Vec::new();
    let mut previous: Option<usize> = None;
    for (number, line, fence) in lines(text) {
        if fence != Some(language) {
            continue;
        }
        match blocks.last_mut() {
            // The next line of the same block: lines() leaves the fences out, so a block's
            // lines are consecutive but for them.
            Some((_, body)) if previous == Some(number - 1) => body.push_str(line),
            _ => blocks.push((number, line.to_owned())),
        }
        blocks.last_mut().expect("a block").1.push('\n');
        previous = Some(number);
    }
    blocks
}

#[test]
fn every_toml_block_in_the_docs_is_a_providers_file_the_server_reads() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let mut blocks = 0;
    for page in pages() {
        for (start, body) in code_blocks(&read(&page), "toml") {
            let file = folder.path().join(format!("block-{blocks}.toml"));
            std::fs::write(&file, &body).expect("written");
            blocks += 1;

            let read = providers_file::read(&file);

            assert!(
                read.is_ok(),
                "{}:{start}: the toml block is not a providers file: {:?}",
                page.display(),
                read.err()
            );
        }
    }
    assert!(
        blocks >= 2,
        "the docs show providers files: {blocks} blocks"
    );
}

#[test]
fn a_toml_block_the_server_would_refuse_fails_the_docs_check() {
    let page = "# A page\n\n```toml\n[[provider]]\nissuer = \"https://id.example\"\naudience = [\"x\"]\n```\n";
    let blocks = code_blocks(page, "toml");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), &blocks[0].1).expect("written");

    let problems = providers_file::read(file.path()).expect_err("a misspelt field is refused");

    assert!(
        problems[0].contains("unknown field `audience`"),
        "{problems:?}"
    );
}
