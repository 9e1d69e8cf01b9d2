//! The Python peers' venv (grpcio, PyJWT, ...), created under `target/` on first use and
//! reused while `tests/interop/requirements.txt` is unchanged.

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
        let requirements = std::fs::read_to_string(interop_dir().join("requirements.txt"))
            .expect("read tests/interop/requirements.txt");
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
        let python = venv.join("bin/python");
        let marker = venv.join("requirements.installed");
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(requirements.as_str()) {
            return python;
        }
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "create the interop venv with python3 -m venv (ci/setup installs python3 and venv)",
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
                .arg(interop_dir().join("requirements.txt")),
            "install tests/interop/requirements.txt into the interop venv",
        );
        std::fs::write(&marker, &requirements).expect("mark the venv as installed");
        python
    })
}

pub fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("cannot {what}: {command:?} exited with {status}"),
        Err(e) => panic!("cannot {what}: {command:?}: {e}"),
    }
}
