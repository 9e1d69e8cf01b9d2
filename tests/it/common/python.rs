//! The Python peers' venv (grpcio, PyJWT, ...), created under `target/` on first use and
//! reused while `tests/interop/requirements.txt` is unchanged; and the same for any other set of
//! PyPI peers ([`venv`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The folder of the Python peers' scripts.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The venv's python, created with the pinned requirements when missing or outdated.
/// A missing python3 fails the test: it is never skipped silently.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        venv("interop-venv", &interop_dir().join("requirements.txt")).join("bin/python")
    })
}

/// The venv `name` under `target/`, with `requirements` installed: created when missing, and
/// again whenever the requirements change.
pub fn venv(name: &str, requirements: &Path) -> PathBuf {
    let pinned = std::fs::read_to_string(requirements)
        .unwrap_or_else(|e| panic!("read {}: {e}", requirements.display()));
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = venv.join("bin/python");
    let marker = venv.join("requirements.installed");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(pinned.as_str()) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        &format!(
            "create the venv {name} with python3 -m venv (ci/setup installs python3 and venv)"
        ),
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
        &format!("install {} into the venv {name}", requirements.display()),
    );
    std::fs::write(&marker, &pinned).expect("mark the venv as installed");
    venv
}

pub fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("cannot {what}: {command:?} exited with {status}"),
        Err(e) => panic!("cannot {what}: {command:?}: {e}"),
    }
}
