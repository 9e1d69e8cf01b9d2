//! A real, certified OpenID Provider (npm `oidc-provider`, `tests/oidc/`) as a throwaway
//! process over HTTPS with the test PKI's server certificate: discovery, its keys, and JWT
//! access tokens by the client credentials grant carrying `groups` and `email`. Its modules are
//! installed by `super::npm`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::pki::Pki;
use super::OutputLines;

/// The folder holding `tests/oidc/` with its modules installed.
fn installed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::npm::installed("oidc", &["provider.mjs"]))
}

/// The provider, running; killed when dropped.
pub struct OpenIdProvider {
    child: Child,
    stdin: ChildStdin,
    out: OutputLines,
    /// `https://127.0.0.1:PORT`.
    pub issuer: String,
}

impl OpenIdProvider {
    /// Starts the provider with `pki`'s server certificate, on a free port.
    pub fn start(pki: &Pki) -> Self {
        let dir = installed();
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(pki.path("server.pem"))
            .arg(pki.path("server.key"))
            .arg(pki.path("ca.pem"))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs provider.mjs (ci/setup installs nodejs)");
        let stdin = child.stdin.take().expect("piped");
        let out = OutputLines::read(child.stdout.take().expect("piped"));
        let line = out
            .line_containing("listening on ", Duration::from_secs(30))
            .expect("the provider says where it listens");
        let issuer = line["listening on ".len()..].trim().to_owned();
        Self {
            child,
            stdin,
            out,
            issuer,
        }
    }

    /// An access token of `client` (`ops-job`: groups ops and dev; `dev-job`: dev), asked of
    /// the provider's token endpoint.
    pub fn token(&mut self, client: &str) -> String {
        self.ask(client, "token ")
    }

    /// An opaque access token of `client`, which only introspection can judge.
    pub fn opaque_token(&mut self, client: &str) -> String {
        self.ask(&format!("opaque {client}"), "token ")
    }

    /// A JWT access token of `client` bound to the key that signed `proof` (a DPoP proof for
    /// `POST {issuer}/token`).
    pub fn dpop_token(&mut self, client: &str, proof: &str) -> String {
        self.ask(&format!("dpop {client} {proof}"), "token ")
    }

    /// A JWT access token of `mtls-job` bound to the certificate `der`, as if presented over
    /// mutual TLS.
    pub fn certificate_bound_token(&mut self, der: &[u8]) -> String {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD.encode(der);
        self.ask(&format!("mtls mtls-job {der}"), "token ")
    }

    /// Revokes `client`'s `token` at the provider (RFC 7009).
    pub fn revoke(&mut self, client: &str, token: &str) {
        self.ask(&format!("revoke {client} {token}"), "revoked ");
    }

    /// Sends `line`, and returns the rest of the answer line starting with `answer`.
    fn ask(&mut self, line: &str, answer: &str) -> String {
        let client = line;
        writeln!(self.stdin, "{line}").expect("ask the provider");
        // Its own notices share the pipe: the answer is the line that starts with its word.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .out
                .line_containing(" ", left)
                .unwrap_or_else(|| panic!("the provider gave no token for {client}"));
            if let Some(token) = line.strip_prefix(answer) {
                return token.to_owned();
            }
            assert!(!line.starts_with("error "), "no token for {client}: {line}");
        }
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
