//! The real proxies in front of a real app, asking the server binary about every request, each
//! run from its file in `deploy/` (addresses replaced by free ports): Envoy over ext_authz, nginx
//! (`auth_request`), Caddy (`forward_auth`) and Traefik (`ForwardAuth`) over the forward-auth
//! port. For each: allowed with the identity reaching the app, 401 with `WWW-Authenticate`
//! reaching the client, 403 on the route that requires a scope, and identity headers the client
//! sent itself never reaching the app. For Envoy also: SIGKILL of the server fails closed, and
//! the same Envoy allows again within seconds of the server's restart.

use std::time::{Duration, Instant};

use crate::common;

use common::hostile::Answer;
use common::jwt::{claims, token_args, KeyFile, SigningKey};
use common::proxies::{debian_binary, deployed, pypi_binary, App, Proxy};
use common::{free_port, ServerProcess};

/// The server the proxies ask, on ports known in advance (a restart keeps them), and the app.
struct Backend {
    server: ServerProcess,
    args: Vec<String>,
    grpc_port: u16,
    forward_auth_port: u16,
    key: SigningKey,
    app: App,
    _keys: KeyFile,
}

impl Backend {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With deploy/routes.toml: a public /healthz, and /ops for the ops group only.
    fn start_with_routes() -> Self {
        let routes = format!("{}/deploy/routes.toml", env!("CARGO_MANIFEST_DIR"));
        Self::start_with(&["--config".to_owned(), routes])
    }

    fn start_with(extra: &[String]) -> Self {
        let key = SigningKey::p256("px");
        let keys = KeyFile::new(&[&key]);
        let (grpc_port, forward_auth_port) = (free_port(), free_port());
        let mut args = token_args(&keys);
        args.extend([
            "--store".to_owned(),
            "memory".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{grpc_port}"),
            "--forward-auth-listen".to_owned(),
            format!("127.0.0.1:{forward_auth_port}"),
            "--claim-header".to_owned(),
            "email=x-auth-email".to_owned(),
            "--metrics-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ]);
        args.extend(extra.iter().cloned());
        let server = Self::run(&args);
        Self {
            server,
            args,
            grpc_port,
            forward_auth_port,
            key,
            app: App::start(),
            _keys: keys,
        }
    }

    fn run(args: &[String]) -> ServerProcess {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::start(&args)
    }

    fn bearer(&self, claims: &serde_json::Value) -> String {
        format!("Bearer {}", self.key.sign(claims))
    }
}

/// Sender-constrained tokens through `proxy`: a DPoP-bound token passes with its proof for the
/// URL the client asked for (the proxy says its method, scheme, host and path), once; as Bearer it
/// is refused; a certificate-bound one with a certificate header the client forged is refused,
/// since the server trusts no such header unless told to (and the proxy strips it).
fn assert_bound_tokens_need_their_proof(proxy: &Proxy, backend: &Backend) {
    let client = crate::dpop::ClientKey::new();
    let mut dave = claims("dave");
    dave["cnf"] = serde_json::json!({"jkt": client.thumbprint()});
    let dave = backend.key.sign(&dave);
    let proof = client.proof("GET", &format!("http://{}/app", proxy.address), &dave);
    let dpop = format!("DPoP {dave}");
    let answer = proxy.get("/app?page=1", &[("authorization", &dpop), ("dpop", &proof)]);
    assert!(answer.reached_app(), "DPoP: {answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["dave"], "{answer:?}");
    let replayed = proxy.get("/app", &[("authorization", &dpop), ("dpop", &proof)]);
    assert_denied(&replayed, 401);
    let challenge = replayed.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains("invalid_dpop_proof"),
        "{replayed:?}"
    );
    let as_bearer = proxy.get("/app", &[("authorization", &format!("Bearer {dave}"))]);
    assert_denied(&as_bearer, 401);

    let mut erin = claims("erin");
    erin["cnf"] = serde_json::json!({"x5t#S256": "forged-thumbprint"});
    let forged = proxy.get(
        "/app",
        &[
            ("authorization", &backend.bearer(&erin)),
            ("client-cert", ":Zm9yZ2Vk:"),
            ("x-forwarded-client-cert", "Hash=00"),
        ],
    );
    assert_denied(&forged, 401);
}

/// What every proxy must do, asked through `proxy`.
#[track_caller]
fn assert_the_proxy_gates_the_app(proxy: &Proxy, backend: &Backend) {
    let mut alice = claims("alice");
    alice["email"] = "alice@example.com".into();
    let alice = backend.bearer(&alice);

    // Allowed: the identity reaches the app, in place of what the client sent.
    let answer = proxy.get(
        "/app",
        &[("authorization", &alice), ("x-auth-subject", "mallory")],
    );
    assert!(answer.reached_app(), "{answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["alice"], "{answer:?}");
    assert_eq!(
        answer.app_saw("x-auth-email"),
        ["alice@example.com"],
        "{answer:?}"
    );

    // No token: 401 and the challenge reach the client; the app sees nothing.
    let answer = proxy.get("/app", &[]);
    assert_denied(&answer, 401);
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer realm="mrmat-rust-api-grpc""#),
        "{answer:?}"
    );
    // A refused token: 401 with invalid_token and the verdict's sentence.
    let mut expired = claims("carol");
    expired["exp"] = (common::jwt::now() - 60).into();
    let answer = proxy.get("/app", &[("authorization", &backend.bearer(&expired))]);
    assert_denied(&answer, 401);
    let challenge = answer.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="invalid_token""#) && challenge.contains("expired"),
        "{answer:?}"
    );

    // The route that requires `admin`: 403 for a token without it, through with it.
    assert_denied(
        &proxy.get("/admin/users", &[("authorization", &alice)]),
        403,
    );
    let mut root = claims("root");
    root["scope"] = "read admin".into();
    let answer = proxy.get("/admin/users", &[("authorization", &backend.bearer(&root))]);
    assert!(answer.reached_app(), "{answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["root"]);

    assert_bound_tokens_need_their_proof(proxy, backend);

    // A token without an email: the client's own X-Auth-Email never reaches the app.
    let answer = proxy.get(
        "/app",
        &[
            ("authorization", &backend.bearer(&claims("bob"))),
            ("x-auth-subject", "mallory"),
            ("x-auth-email", "mallory@example.com"),
        ],
    );
    assert!(answer.reached_app(), "{answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["bob"], "{answer:?}");
    assert!(answer.app_saw("x-auth-email").is_empty(), "{answer:?}");
}

/// What deploy/routes.toml decides, asked through `proxy`: the proxy forwards the request it
/// asks about, and the server's routes judge it.
#[track_caller]
fn assert_the_routes_hold(proxy: &Proxy, backend: &Backend) {
    // Public: no token needed, a forged one not read, a client's identity header removed.
    let answer = proxy.get(
        "/healthz",
        &[
            ("authorization", "Bearer forged"),
            ("x-auth-subject", "mallory"),
        ],
    );
    assert!(answer.reached_app(), "{answer:?}");
    assert!(answer.app_saw("x-auth-subject").is_empty(), "{answer:?}");
    // The group rule: ops through with its identity, dev 403 naming the route.
    let mut ops = claims("olga");
    ops["groups"] = serde_json::json!(["ops"]);
    let answer = proxy.get("/ops/deploy", &[("authorization", &backend.bearer(&ops))]);
    assert!(answer.reached_app(), "{answer:?}");
    assert_eq!(answer.app_saw("x-auth-subject"), ["olga"], "{answer:?}");
    let mut dev = claims("dima");
    dev["groups"] = serde_json::json!(["dev"]);
    let answer = proxy.get("/ops/deploy", &[("authorization", &backend.bearer(&dev))]);
    assert_denied(&answer, 403);
    // No route: the token alone, as without routes, and the proxy's scopes still required.
    assert_denied(&proxy.get("/app", &[]), 401);
    assert!(proxy
        .get("/app", &[("authorization", &backend.bearer(&dev))])
        .reached_app());
    assert_denied(
        &proxy.get("/admin/users", &[("authorization", &backend.bearer(&dev))]),
        403,
    );
}

#[track_caller]
fn assert_denied(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(!answer.reached_app(), "{answer:?}");
}

fn envoy(backend: &Backend) -> Proxy {
    let grpc = format!("port_value: {}", backend.grpc_port);
    envoy_from(
        "envoy/envoy.yaml",
        backend,
        vec![("port_value: 50051", grpc)],
    )
}

/// Envoy from deploy/envoy/envoy-http.yaml: ext_authz's HTTP mode, to the forward-auth port.
fn envoy_http(backend: &Backend) -> Proxy {
    let port = backend.forward_auth_port;
    envoy_from(
        "envoy/envoy-http.yaml",
        backend,
        vec![
            ("port_value: 9191", format!("port_value: {port}")),
            (
                "uri: http://127.0.0.1:9191",
                format!("uri: http://127.0.0.1:{port}"),
            ),
        ],
    )
}

/// Envoy from `file`, its addresses replaced by the backend's and free ports, and by `more`.
fn envoy_from(file: &str, backend: &Backend, mut more: Vec<(&'static str, String)>) -> Proxy {
    let port = free_port();
    more.extend([
        ("port_value: 8080", format!("port_value: {port}")),
        (
            "port_value: 3000",
            format!("port_value: {}", backend.app.port()),
        ),
        ("port_value: 9901", format!("port_value: {}", free_port())),
    ]);
    let config = deployed(file, &more);
    Proxy::start(
        &pypi_binary("envoy"),
        &[
            "-c",
            "{dir}/envoy.yaml",
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
        &[("envoy.yaml", config)],
        format!("127.0.0.1:{port}"),
        "/ready",
    )
}

#[test]
fn envoy_ext_authz_gates_the_app() {
    let backend = Backend::start();
    let proxy = envoy(&backend);
    assert_the_proxy_gates_the_app(&proxy, &backend);
    // Envoy asked over gRPC, on the channel it keeps.
    assert!(
        backend
            .server
            .listening_line
            .contains("envoy.service.auth.v3.Authorization"),
        "{}",
        backend.server.listening_line
    );
}

#[test]
fn envoy_ext_authz_judges_by_the_servers_routes() {
    let backend = Backend::start_with_routes();
    let proxy = envoy(&backend);
    assert_the_routes_hold(&proxy, &backend);
}

#[test]
fn envoy_in_ext_authz_http_mode_gates_the_app_and_judges_by_the_servers_routes() {
    // The routes carry /admin's scope: this mode names none per route.
    let backend = Backend::start_with_routes();
    let proxy = envoy_http(&backend);
    assert_the_proxy_gates_the_app(&proxy, &backend);
    assert_the_routes_hold(&proxy, &backend);
    // A 403 from a rule reaches the client with its reason and no challenge.
    let mut dev = claims("dima");
    dev["groups"] = serde_json::json!(["dev"]);
    let answer = proxy.get("/ops/x", &[("authorization", &backend.bearer(&dev))]);
    assert_denied(&answer, 403);
    assert!(answer.header("www-authenticate").is_none(), "{answer:?}");
    assert!(answer.body.contains("route ops"), "{answer:?}");
    // Envoy asked the forward-auth port, never the gRPC one.
    let metrics = common::hostile::get(
        &backend.server.metrics_address().expect("metrics"),
        "/metrics",
    )
    .expect("metrics");
    let allowed_over_http = metrics
        .body
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                r#"mrmat_authz_decisions_total{decision="allowed",transport="forward_auth"} "#,
            )
        })
        .and_then(|count| count.parse::<f64>().ok());
    assert!(
        allowed_over_http.is_some_and(|count| count >= 5.0),
        "{}",
        metrics.body
    );
    assert!(
        !metrics
            .body
            .lines()
            .any(|line| line.contains(r#"transport="ext_authz""#) && !line.ends_with(" 0")),
        "{}",
        metrics.body
    );
}

#[test]
fn envoy_fails_closed_while_the_server_is_down_and_allows_again_after_its_restart() {
    for mode in ["grpc", "http"] {
        fails_closed_and_recovers(mode);
    }
}

fn fails_closed_and_recovers(mode: &str) {
    let mut backend = Backend::start();
    let proxy = if mode == "grpc" {
        envoy(&backend)
    } else {
        envoy_http(&backend)
    };
    let bearer = backend.bearer(&claims("dana"));
    assert!(proxy
        .get("/app", &[("authorization", &bearer)])
        .reached_app());

    backend.server.signal("KILL");
    backend
        .server
        .wait_for_exit(Duration::from_secs(10))
        .expect("SIGKILL ends the server");
    for _ in 0..5 {
        let answer = proxy.get("/app", &[("authorization", &bearer)]);
        assert_denied(&answer, 503);
    }

    backend.server = Backend::run(&backend.args);
    let restarted = Instant::now();
    loop {
        let answer = proxy.get("/app", &[("authorization", &bearer)]);
        if answer.reached_app() {
            assert_eq!(answer.app_saw("x-auth-subject"), ["dana"]);
            break;
        }
        assert_denied(&answer, 503);
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "Envoy ({mode}) still refuses 10 s after the server's restart: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn forward_auth_replacements(backend: &Backend, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("127.0.0.1:8080", format!("127.0.0.1:{port}")),
        (
            "127.0.0.1:9191",
            format!("127.0.0.1:{}", backend.forward_auth_port),
        ),
        (
            "127.0.0.1:3000",
            format!("127.0.0.1:{}", backend.app.port()),
        ),
    ]
}

fn nginx(backend: &Backend) -> Proxy {
    let port = free_port();
    let site = deployed("nginx/app.conf", &forward_auth_replacements(backend, port));
    // The site included as a Debian host includes conf.d, in the least nginx.conf that keeps
    // every file in the proxy's own folder.
    let main = "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
                error_log {dir}/proxy.log warn;\nevents { worker_connections 1024; }\n\
                http {\n  access_log off;\n  client_body_temp_path {dir}/body;\n\
                proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n\
                uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
                include {dir}/app.conf;\n}\n";
    Proxy::start(
        &debian_binary("nginx"),
        &[
            "-p",
            "{dir}",
            "-c",
            "{dir}/nginx.conf",
            "-e",
            "{dir}/proxy.log",
        ],
        &[("app.conf", site), ("nginx.conf", main.to_owned())],
        format!("127.0.0.1:{port}"),
        "/ready",
    )
}

#[test]
fn nginx_auth_request_gates_the_app_over_one_kept_connection() {
    let backend = Backend::start();
    let proxy = nginx(&backend);
    assert_the_proxy_gates_the_app(&proxy, &backend);
    // nginx reads only the head of the answer: an allow with a body would have it close the
    // connection after every question. Sequential requests keep reusing one.
    let bearer = backend.bearer(&claims("erin"));
    for _ in 0..50 {
        assert!(proxy
            .get("/app", &[("authorization", &bearer)])
            .reached_app());
    }
    let open = backend
        .server
        .metric(r#"mrmat_http_connections{port="forward_auth"}"#);
    assert!(
        matches!(open, Some(n) if (1.0..=2.0).contains(&n)),
        "nginx keeps its connection to the port: {open:?} open"
    );
}

fn caddy(backend: &Backend) -> Proxy {
    let port = free_port();
    let config = deployed("caddy/Caddyfile", &forward_auth_replacements(backend, port));
    Proxy::start(
        &pypi_binary("caddy"),
        &[
            "run",
            "--config",
            "{dir}/Caddyfile",
            "--adapter",
            "caddyfile",
        ],
        &[("Caddyfile", config)],
        format!("127.0.0.1:{port}"),
        "/ready",
    )
}

#[test]
fn nginx_caddy_and_traefik_forward_the_request_the_servers_routes_judge() {
    let backend = Backend::start_with_routes();
    for proxy in [nginx(&backend), caddy(&backend), traefik(&backend)] {
        assert_the_routes_hold(&proxy, &backend);
    }
}

#[test]
fn caddy_forward_auth_gates_the_app() {
    let backend = Backend::start();
    let proxy = caddy(&backend);
    assert_the_proxy_gates_the_app(&proxy, &backend);
    // A request with a body: Caddy asks without it (the port answers 413 to a body).
    let mut alice = claims("alice");
    alice["email"] = "alice@example.com".into();
    let answer = proxy.post(
        "/app",
        &[("authorization", &backend.bearer(&alice))],
        "a body for the app",
    );
    assert!(answer.reached_app(), "{answer:?}");
}

fn traefik(backend: &Backend) -> Proxy {
    let port = free_port();
    let replacements = forward_auth_replacements(backend, port);
    let static_config = deployed("traefik/traefik.yml", &replacements[..1]);
    let routes = deployed("traefik/dynamic.yml", &replacements[1..]);
    Proxy::start(
        &pypi_binary("traefik"),
        &["--configFile={dir}/traefik.yml"],
        &[("traefik.yml", static_config), ("dynamic.yml", routes)],
        format!("127.0.0.1:{port}"),
        "/ready",
    )
}

#[test]
fn traefik_forward_auth_gates_the_app() {
    let backend = Backend::start();
    let proxy = traefik(&backend);
    assert_the_proxy_gates_the_app(&proxy, &backend);
}

/// Istio itself needs Kubernetes, which this machine has not: its files are held to what the
/// server serves (the service's name and port) instead.
#[test]
fn the_istio_files_name_the_service_and_port_the_server_serves() {
    let mesh = deployed("istio/mesh-config.yaml", &[]);
    assert!(mesh.contains("envoyExtAuthzGrpc:"), "{mesh}");
    assert!(mesh.contains("port: 50051"), "{mesh}");
    // The Service it names is deploy/kubernetes/'s, which tests/it/kubernetes.rs holds to the
    // server's flags.
    assert!(mesh.contains("deploy/kubernetes/"), "{mesh}");
    assert!(mesh.contains("failOpen: false"), "{mesh}");
    // The HTTP provider asks as deploy/envoy/envoy-http.yaml (tested above) does.
    let prefix = mrmat_rust_api_grpc::apis::forward_auth::ENVOY_PREFIX;
    let envoy_http = deployed("envoy/envoy-http.yaml", &[]);
    assert!(
        envoy_http.contains(&format!("path_prefix: {prefix}\n")),
        "{envoy_http}"
    );
    let http = &mesh[mesh.find("envoyExtAuthzHttp:").expect("an HTTP provider")..];
    for said in [
        format!("pathPrefix: {prefix}\n"),
        "port: 9191\n".to_owned(),
        "failOpen: false".to_owned(),
        r#"headersToUpstreamOnAllow: ["x-auth-subject", "x-auth-email"]"#.to_owned(),
        r#"headersToDownstreamOnDeny: ["www-authenticate", "content-type"]"#.to_owned(),
        r#"includeRequestHeadersInCheck: ["x-tenant"]"#.to_owned(),
    ] {
        assert!(http.contains(&said), "{http}\nexpected {said}");
    }
    for (istio, envoy) in [
        ("port: 9191", "port_value: 9191"),
        ("x-auth-email", "exact: x-auth-email"),
        ("x-tenant", "exact: x-tenant"),
    ] {
        assert!(
            http.contains(istio) && envoy_http.contains(envoy),
            "{istio} / {envoy}"
        );
    }
    let policy = deployed("istio/authorization-policy.yaml", &[]);
    assert!(policy.contains("action: CUSTOM"), "{policy}");
    assert!(policy.contains("name: mrmat-authz"), "{policy}");
    assert_eq!(
        mrmat_rust_api_grpc::apis::ext_authz::v3::NAME,
        "envoy.service.auth.v3.Authorization"
    );
    assert_eq!(
        mrmat_rust_api_grpc::server::DEFAULT_LISTEN,
        "localhost:50051"
    );
}

/// Opaque tokens through Envoy (ext_authz) and nginx (forward auth): the stand-in introspection
/// endpoint judges them; the identity reaches the app, an inactive token is 401 `invalid_token`.
#[test]
fn envoy_and_nginx_gate_the_app_by_opaque_tokens_the_provider_introspects() {
    let endpoint = crate::introspection::Endpoint::start();
    let dir = tempfile::tempdir().expect("a folder");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[provider]]\nissuer = \"{}\"\nintrospection_url = \"{}\"\nclient_id = \"gateway\"\n\
             client_secret_file = \"{}\"\naudiences = [\"api\"]\n",
            crate::introspection::OPAQUE_ISSUER,
            endpoint.url(),
            endpoint.secret_dir.path().join("secret").display()
        ),
    )
    .expect("write the config");
    let backend = Backend::start_with(&["--config".to_owned(), config.display().to_string()]);
    for proxy in [envoy(&backend), nginx(&backend)] {
        let subject = format!("opaque{}", fastrand::u32(..));
        let good = format!("Bearer active-{subject}");
        let answer = proxy.get(
            "/app",
            &[("authorization", &good), ("x-auth-subject", "mallory")],
        );
        assert!(answer.reached_app(), "{answer:?}");
        assert_eq!(
            answer.app_saw("x-auth-subject"),
            [subject.as_str()],
            "{answer:?}"
        );
        let answer = proxy.get("/app", &[("authorization", "Bearer nobody-knows-this")]);
        assert_denied(&answer, 401);
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#) && challenge.contains("not active"),
            "{answer:?}"
        );
        // A JWT of the flags' provider still goes by its keys.
        let answer = proxy.get("/app", &[("authorization", &backend.bearer(&claims("jo")))]);
        assert!(answer.reached_app(), "{answer:?}");
    }
}
