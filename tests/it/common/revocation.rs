//! A token service on mutual TLS with an admin who may revoke, over a given store, and one
//! token of it: what the revocation tests of the store and of replicas share.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use mrmat_rust_api_grpc::proto::{
    StatusOutput, TokenV1ProtoClient, TokenV1RevokeInput, TokenV1Verdict,
};
use mrmat_rust_api_grpc::server::ServerConfig;
use mrmat_rust_api_grpc::store::StoreOptions;

use super::jwt::{claims, input, token_config, KeyFile, SigningKey};
use super::pki::{client_tls, mtls, Pki, ADMIN_COMMON_NAME};
use super::{call, TestServer};

/// A token server's configuration over a store, and a token of it to revoke.
pub struct Revocation {
    /// mTLS, the token service on, `admin-client` an admin, the store given.
    pub config: ServerConfig,
    pki: Pki,
    _keys: KeyFile,
    token: String,
    /// The token's jti.
    pub token_id: String,
}

impl Revocation {
    /// A key, its key set, certificates and a token, over `store`.
    pub fn new(store: StoreOptions) -> Self {
        let key = SigningKey::rsa("rsa-1", Algorithm::RS256);
        let pki = Pki::new();
        let keys = KeyFile::new(&[&key]);
        let mut config = mtls(token_config(&keys), &pki);
        config.apis.token_admins = vec![ADMIN_COMMON_NAME.to_owned()];
        config.store = store;
        let claims = claims("erin");
        Self {
            config,
            pki,
            _keys: keys,
            token: key.sign(&claims),
            token_id: claims["jti"].as_str().expect("a jti").to_owned(),
        }
    }

    /// The certificates: `client` and `admin-client` call with theirs.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// What `server` says of the token.
    pub fn verdict(&self, server: &TestServer) -> TokenV1Verdict {
        let user = TokenV1ProtoClient::new(server.channel_with(&client_tls(&self.pki, "client")));
        // A call made before the key set has loaded waits for it.
        user.validate_opt(&input(1, &self.token), call())
            .expect("Validate answers")
            .verdict
            .enum_value_or_default()
    }

    /// Revokes the token through `server`, as its admin.
    pub fn revoke(&self, server: &TestServer) -> grpcio::Result<StatusOutput> {
        let admin =
            TokenV1ProtoClient::new(server.channel_with(&client_tls(&self.pki, "admin-client")));
        let mut revoke = TokenV1RevokeInput::new();
        revoke.token_id = self.token_id.clone();
        admin.revoke_opt(&revoke, call().timeout(Duration::from_secs(5)))
    }

    /// How long until `server` refuses the token, asking until `within` has passed.
    pub fn refused_after(&self, server: &TestServer, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.verdict(server) == TokenV1Verdict::TOKEN_V1_REVOKED {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}
