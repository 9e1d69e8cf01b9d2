//! The client's transport security flags, made into the [`TlsOptions`] its plumbing takes.

use std::path::PathBuf;

use crate::client::TlsOptions;

/// How the client secures the channel. Any of these flags turns TLS on.
#[derive(Clone, Debug, Default, clap::Args)]
#[command(next_help_heading = "Transport security")]
pub struct TlsFlags {
    /// Speak TLS, trusting the system's root certificates (or --ca-cert's).
    #[arg(long, env = "MRMAT_GRPC_TLS")]
    pub tls: bool,

    /// PEM CA certificate(s) to trust instead of the system roots; implies --tls.
    #[arg(long, env = "MRMAT_GRPC_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// PEM certificate chain to present for mutual TLS; implies --tls, needs --client-key.
    #[arg(
        long,
        env = "MRMAT_GRPC_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert (unencrypted).
    #[arg(
        long,
        env = "MRMAT_GRPC_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// Name the server's certificate must be issued to, when it is not the host in --server
    /// (e.g. the server is reached by IP address or through a tunnel); implies --tls.
    #[arg(long, env = "MRMAT_GRPC_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl TlsFlags {
    /// The options these flags give.
    pub fn options(&self) -> TlsOptions {
        TlsOptions {
            tls: self.tls,
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            tls_server_name: self.tls_server_name.clone(),
        }
    }
}
