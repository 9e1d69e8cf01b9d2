//! Throwaway certificates made at test time: a CA, a server certificate and a client certificate
//! issued by it, and a second CA with its own client, written as PEM files to a temporary folder.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The name the server certificate is issued to besides localhost and 127.0.0.1, to exercise the
/// client's server-name override.
pub const OTHER_SERVER_NAME: &str = "api.mrmat.test";

/// The common name of the `admin-client` certificate.
pub const ADMIN_COMMON_NAME: &str = "ops-cli";

/// The one DNS name of the `admin-client` certificate.
pub const ADMIN_DNS_NAME: &str = "admin.mrmat.test";

/// The names of the `pod` certificate: the Service's in deploy/kubernetes/.
pub const POD_NAMES: [&str; 1] = ["mrmat-authz.auth.svc"];

/// The name (common and DNS) of the `client` certificate.
pub const CLIENT_NAME: &str = "client.mrmat.test";

/// A set of PEM files, deleted with this value.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Creates every file.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mrmat-pki-")
            .tempdir()
            .expect("create a temporary folder");
        let pki = Self { dir };

        let ca = pki.ca("ca", "mrmat test CA");
        pki.leaf(
            &ca,
            "server",
            &["localhost", "127.0.0.1", OTHER_SERVER_NAME],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        // A pod's certificate, as cert-manager issues one for both ends: the server presents it,
        // and the pod's own probe presents it as a client (deploy/kubernetes/ with TLS).
        pki.leaf_for(
            &ca,
            "pod",
            POD_NAMES[0],
            &POD_NAMES,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        // A certificate issued to a name only, for the override test.
        pki.leaf(
            &ca,
            "named-server",
            &[OTHER_SERVER_NAME],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki.leaf(
            &ca,
            "client",
            &[CLIENT_NAME],
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        // A client whose common name differs from its DNS name, to tell which one was matched.
        pki.leaf_named(
            &ca,
            "admin-client",
            ADMIN_COMMON_NAME,
            &[ADMIN_DNS_NAME],
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let other = pki.ca("other-ca", "another CA");
        pki.leaf(
            &other,
            "other-client",
            &["client.mrmat.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        pki
    }

    /// The path of `name`, e.g. `ca.pem`, `server.pem`, `server.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self, file: &str, common_name: &str) -> Issuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generate a key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        self.write(&format!("{file}.pem"), &cert.pem());
        self.write(&format!("{file}.key"), &key.serialize_pem());
        Issuer::new(params, key)
    }

    fn leaf(
        &self,
        issuer: &Issuer<'static, KeyPair>,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) {
        self.leaf_named(issuer, file, names[0], names, usage);
    }

    /// A leaf certificate with common name `common_name` and subject alternative names `names`.
    fn leaf_named(
        &self,
        issuer: &Issuer<'static, KeyPair>,
        file: &str,
        common_name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) {
        self.leaf_for(issuer, file, common_name, names, &[usage]);
    }

    /// As [`Pki::leaf_named`], for each of `usages`.
    fn leaf_for(
        &self,
        issuer: &Issuer<'static, KeyPair>,
        file: &str,
        common_name: &str,
        names: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate a key");
        let cert = params.signed_by(&key, issuer).expect("sign");
        self.write(&format!("{file}.pem"), &cert.pem());
        self.write(&format!("{file}.key"), &key.serialize_pem());
    }

    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.path(name), pem).expect("write a PEM file");
    }
}

/// `config` on mutual TLS with the server certificate of `pki`, trusting its CA's clients.
pub fn mtls(
    config: mrmat_rust_api_grpc::server::ServerConfig,
    pki: &Pki,
) -> mrmat_rust_api_grpc::server::ServerConfig {
    mrmat_rust_api_grpc::server::ServerConfig {
        tls: mrmat_rust_api_grpc::server::TlsConfig {
            cert: Some(pki.path("server.pem")),
            key: Some(pki.path("server.key")),
            client_ca: Some(pki.path("ca.pem")),
        },
        ..config
    }
}

/// The client side of [`mtls`], presenting `client`'s certificate (`client`, `admin-client`).
pub fn client_tls(pki: &Pki, client: &str) -> mrmat_rust_api_grpc::client::TlsOptions {
    mrmat_rust_api_grpc::client::TlsOptions {
        ca_cert: Some(pki.path("ca.pem")),
        client_cert: Some(pki.path(&format!("{client}.pem"))),
        client_key: Some(pki.path(&format!("{client}.key"))),
        ..Default::default()
    }
}
