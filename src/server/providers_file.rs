//! The providers file (`--config FILE`, TOML): the identity providers that flags cannot describe,
//! one `[[provider]]` table each, with its own key source, audiences, leeway and CA. Read at
//! start, where any problem stops the server, and again on SIGHUP, where a file that no longer
//! reads keeps the providers as they were.
//!
//! ```toml
//! [[provider]]
//! issuer = "https://id.example/realms/apps"   # keys by OpenID Connect Discovery (the default)
//! audiences = ["orders"]                      # its tokens must name one; any when absent
//! leeway = 30                                 # seconds of clock skew on exp and nbf
//! ca_cert = "id-ca.pem"                       # instead of the system's roots
//!
//! [[provider]]
//! issuer = "ci"                               # any string when the keys are given directly
//! jwks_file = "ci-jwks.json"                  # or jwks_url = "https://..."
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::ServerConfig;
use crate::tokens::{KeysFrom, ProviderOptions, DEFAULT_LEEWAY_SECONDS};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    provider: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    issuer: Spanned<String>,
    jwks_url: Option<Spanned<String>>,
    jwks_file: Option<Spanned<PathBuf>>,
    audiences: Option<Vec<String>>,
    leeway: Option<u32>,
    ca_cert: Option<Spanned<PathBuf>>,
}

/// A provider the file describes, and the line its issuer is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProvider {
    pub options: ProviderOptions,
    pub line: usize,
}

/// The providers `path` describes, paths in it taken from the file's folder; or every problem
/// with it, one line each, `FILE:LINE: problem`.
pub fn read(path: &Path) -> Result<Vec<FileProvider>, Vec<String>> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{name}: cannot read the providers file: {e}")])?;
    let at = |span: Option<Range<usize>>| match span {
        Some(span) => format!("{name}:{}", line_of(&text, span.start)),
        None => name.to_string(),
    };
    let document: Document = toml::from_str(&text).map_err(|e| {
        let message = e.message().replace('\n', " ");
        vec![format!("{}: {}", at(e.span()), message.trim())]
    })?;
    if document.provider.is_empty() {
        return Err(vec![format!(
            "{name}: no [[provider]] in it: give each identity provider a [[provider]] table \
             with its issuer"
        )]);
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut providers: Vec<FileProvider> = Vec::new();
    for entry in document.provider {
        let here = at(Some(entry.issuer.span()));
        let line = line_of(&text, entry.issuer.span().start);
        let issuer = entry.issuer.into_inner();
        let keys = match (entry.jwks_url, entry.jwks_file) {
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "{here}: issuer {issuer} has both jwks_url and jwks_file: give one, or \
                     neither for OpenID Connect Discovery"
                ));
                continue;
            }
            (Some(url), None) => KeysFrom::Url(url.into_inner()),
            (None, Some(file)) => KeysFrom::File(folder.join(file.into_inner())),
            (None, None) => KeysFrom::Discovery,
        };
        let options = ProviderOptions {
            issuer,
            keys,
            ca_cert: entry.ca_cert.map(|pem| folder.join(pem.into_inner())),
            audiences: entry.audiences.unwrap_or_default(),
            leeway_seconds: entry.leeway.unwrap_or(DEFAULT_LEEWAY_SECONDS),
        };
        problems.extend(
            options
                .problems()
                .into_iter()
                .map(|problem| format!("{here}: {problem}")),
        );
        if let Some(first) = providers
            .iter()
            .find(|p| p.options.issuer == options.issuer)
        {
            problems.push(format!(
                "{here}: issuer {} is already a provider at line {}: each issuer is one provider",
                options.issuer, first.line
            ));
        }
        providers.push(FileProvider { options, line });
    }
    if problems.is_empty() {
        Ok(providers)
    } else {
        Err(problems)
    }
}

/// Where the identity providers come from: the flags, and the providers file if there is one.
pub struct Providers {
    flags: Vec<ProviderOptions>,
    /// The providers file, when there is one.
    pub file: Option<PathBuf>,
}

impl Providers {
    pub fn of(config: &ServerConfig) -> Self {
        Self {
            flags: config.tokens.providers.clone(),
            file: config.providers_file.clone(),
        }
    }

    /// Every provider, the file read now; or its problems, one line each.
    pub fn read(&self) -> Result<Vec<ProviderOptions>, Vec<String>> {
        match &self.file {
            None => Ok(self.flags.clone()),
            Some(path) => {
                let file = read(path)?;
                merge(&self.flags, path, file)
            }
        }
    }
}

/// The providers given by flags and those `path` describes, together; a provider in both is
/// a problem, one line each.
fn merge(
    flags: &[ProviderOptions],
    path: &Path,
    file: Vec<FileProvider>,
) -> Result<Vec<ProviderOptions>, Vec<String>> {
    let conflicts: Vec<String> = file
        .iter()
        .filter(|p| flags.iter().any(|f| f.issuer == p.options.issuer))
        .map(|p| {
            format!(
                "{}:{}: issuer {} is also given by a flag (--oidc-issuer or --token-issuer): \
                 configure each provider once",
                path.display(),
                p.line,
                p.options.issuer
            )
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    Ok(flags
        .iter()
        .cloned()
        .chain(file.into_iter().map(|p| p.options))
        .collect())
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|b| *b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Vec<FileProvider>, Vec<String>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("providers.toml");
        std::fs::write(&path, text).expect("write the file");
        read(&path).map_err(|problems| {
            let shown = path.display().to_string();
            problems
                .into_iter()
                .map(|p| p.replace(&shown, "FILE"))
                .collect()
        })
    }

    #[test]
    fn each_provider_gets_its_own_settings_and_paths_from_the_files_folder() {
        let providers = read_text(
            "[[provider]]\nissuer = \"https://id.example\"\naudiences = [\"a\", \"b\"]\n\
             leeway = 5\n\n[[provider]]\nissuer = \"ci\"\njwks_file = \"ci.json\"\n",
        )
        .expect("reads");
        assert_eq!(providers.len(), 2);
        assert_eq!(providers[0].options.keys, KeysFrom::Discovery);
        assert_eq!(providers[0].options.audiences, ["a", "b"]);
        assert_eq!(providers[0].options.leeway_seconds, 5);
        assert_eq!(providers[0].line, 2);
        assert_eq!(providers[1].line, 7);
        let KeysFrom::File(path) = &providers[1].options.keys else {
            panic!("a file");
        };
        assert!(path.ends_with("ci.json") && path.is_absolute(), "{path:?}");
        assert_eq!(providers[1].options.leeway_seconds, DEFAULT_LEEWAY_SECONDS);
    }

    #[test]
    fn every_problem_names_the_file_and_the_line() {
        let cases = [
            (
                "[[provider]]\nissuer = \"https://a\"\naudience = \"x\"\n",
                "FILE:3: unknown field `audience`",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\nleeway = -1\n",
                "FILE:3:",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\nleeway = \"30s\"\n",
                "FILE:3:",
            ),
            ("[[provider]]\nissuer = \"https://a\n", "FILE:2:"),
            ("[[provider]]\naudiences = []\n", "missing field `issuer`"),
            ("[provider]\nissuer = \"https://a\"\n", "FILE:1:"),
            ("title = \"x\"\n", "FILE:1: unknown field `title`"),
            ("", "FILE: no [[provider]]"),
            (
                "[[provider]]\nissuer = \"http://id.example\"\n",
                "FILE:2: issuer http://id.example: keys are fetched over https only",
            ),
            (
                "[[provider]]\n\nissuer = \"x\"\njwks_url = \"u\"\njwks_file = \"f\"\n",
                "FILE:3: issuer x has both",
            ),
            (
                "[[provider]]\nissuer = \"x\"\njwks_file = \"f\"\nca_cert = \"c\"\n",
                "FILE:2: issuer x: a CA certificate is for fetched keys",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\n[[provider]]\nissuer = \"https://a\"\n",
                "FILE:4: issuer https://a is already a provider at line 2",
            ),
        ];
        for (text, expected) in cases {
            let problems = read_text(text).expect_err(text);
            assert_eq!(problems.len(), 1, "{text:?}: {problems:?}");
            assert!(
                problems[0].starts_with(expected) || problems[0].contains(expected),
                "{text:?}: {problems:?}, expected {expected:?}"
            );
            assert!(!problems[0].contains('\n'), "one line: {problems:?}");
        }
    }
}
