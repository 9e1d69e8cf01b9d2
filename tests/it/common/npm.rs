//! npm peers (the OpenID Provider, the custom resources' schemas): a folder of `tests/` with a
//! `package.json`, its modules installed under `target/` on first use and again whenever that
//! file changes; node and npm come from ci/setup.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::python::run;

/// `tests/SOURCE` copied under `target/` with its modules installed: the folder to run its
/// scripts in. `scripts` are copied from it every time (they change more often).
pub fn installed(source: &str, scripts: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(source);
    let name = source.file_name().expect("a folder name");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let manifest = std::fs::read_to_string(source.join("package.json")).expect("read package.json");
    let marker = dir.join("package.installed");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(manifest.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the modules' folder");
        std::fs::write(dir.join("package.json"), &manifest).expect("copy package.json");
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel", "error"])
                .current_dir(&dir),
            &format!(
                "install {} with npm (ci/setup installs nodejs and npm)",
                source.display()
            ),
        );
        std::fs::write(&marker, &manifest).expect("mark the modules as installed");
    }
    for script in scripts {
        std::fs::copy(source.join(script), dir.join(script))
            .unwrap_or_else(|e| panic!("copy {script}: {e}"));
    }
    dir
}
