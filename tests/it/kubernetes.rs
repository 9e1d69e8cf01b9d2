//! `deploy/kubernetes/` (a kustomize base and its overlays), `deploy/istio/` and
//! `deploy/gateway/`: rendered as `kubectl kustomize` renders them, validated against the schemas
//! of a current Kubernetes release (and the custom resources' CRDs), held to the server's real
//! flags, ports and defaults, and the rendered pod run: the image, with the manifest's
//! environment, mounts and user, under podman, answering the probes the manifest names.
//!
//! No cluster runs here: what a kubelet would do with the probes and the user is done by hand.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::hostile::{Answer, Raw};
use common::jwt::{claims, KeyFile, SigningKey, ISSUER};
use common::podman::{open_to_all, Container, Volume};
use common::python::venv;
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use serde_json::Value;

const OVERLAYS: [&str; 2] = ["sqlite", "postgres"];
/// Where the forward-auth port answers Envoy's HTTP mode.
const ENVOY_PREFIX: &str = mrmat_rust_api_grpc::apis::forward_auth::ENVOY_PREFIX;
const SERVER: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server");

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv with kubernetes-validate (and PyYAML).
fn venv_bin(program: &str) -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        venv(
            "kubernetes-venv",
            &repository().join("tests/kubernetes/requirements.txt"),
        )
    })
    .join("bin")
    .join(program)
}

/// Runs `command`, feeding it `input`; its stdout, or a panic with its stderr.
fn output_of(command: &mut Command, input: &str) -> String {
    let out = common::output_fed(command, input.as_bytes());
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The YAML `kubectl kustomize` renders for the kustomization in `dir`.
fn kustomize(dir: &Path) -> String {
    output_of(Command::new("kubectl").arg("kustomize").arg(dir), "")
}

/// The YAML `kubectl kustomize` renders for the overlay `name`.
fn render(name: &str) -> String {
    kustomize(&repository().join("deploy/kubernetes/overlays").join(name))
}

/// What `kubectl kustomize` renders for the overlay `name` with its TLS patch turned on as its
/// kustomization.yaml says to (both lines uncommented), in a copy of `deploy/kubernetes/`.
fn render_with_tls(name: &str) -> String {
    let copy = tempfile::tempdir().expect("a temporary folder");
    let out = Command::new("cp")
        .arg("-r")
        .arg(repository().join("deploy/kubernetes"))
        .arg(copy.path())
        .status()
        .expect("cp runs");
    assert!(out.success());
    let overlay = copy.path().join("kubernetes/overlays").join(name);
    let kustomization = overlay.join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).expect("read kustomization.yaml");
    let on = text
        .replace("# patchesStrategicMerge:\n", "patchesStrategicMerge:\n")
        .replace("# - tls.yaml\n", "- tls.yaml\n");
    assert_ne!(
        on, text,
        "{name}'s kustomization.yaml has the TLS patch to uncomment"
    );
    std::fs::write(&kustomization, on).expect("write kustomization.yaml");
    kustomize(&overlay)
}

/// The documents of a YAML stream, as JSON (by PyYAML).
fn documents(yaml: &str) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml\n\
        json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)";
    let json = output_of(Command::new(venv_bin("python")).args(["-c", TO_JSON]), yaml);
    serde_json::from_str(&json).expect("JSON")
}

fn file_documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repository().join(path)).expect("read the manifest");
    documents(&text)
}

fn the<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// The overlay's workload: its StatefulSet or Deployment.
fn workload(docs: &[Value]) -> &Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
        .collect();
    assert_eq!(found.len(), 1, "one workload");
    found[0]
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string: {value}"))
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("a number: {value}"))
}

/// The workload's server container.
fn container(workload: &Value) -> &Value {
    let containers = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "the server alone");
    &containers[0]
}

fn env(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (text(&e["name"]).to_owned(), text(&e["value"]).to_owned()))
        .collect()
}

fn container_port(container: &Value, name: &str) -> u16 {
    let port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("a container port named {name}"));
    u16::try_from(number(&port["containerPort"])).expect("a port")
}

/// The port of a HOST:PORT.
fn port_in(address: &str) -> u16 {
    let (_, port) = address.rsplit_once(':').expect("HOST:PORT");
    port.parse().expect("a port")
}

/// The mount of the volume `name`: its path.
fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("a mount of {volume}"));
    text(&mount["mountPath"])
}

/// Every environment variable the server binary reads, from its `--help`.
fn server_env_names() -> Vec<String> {
    let out = Command::new(SERVER)
        .arg("--help")
        .output()
        .expect("the server runs");
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    // clap wraps `[env: NAME=]` across lines where it must.
    help.split("[env:")
        .skip(1)
        .filter_map(|rest| {
            rest.trim_start()
                .split_once('=')
                .map(|(name, _)| name.to_owned())
        })
        .collect()
}

/// Asserts that the server reads every variable of `env` but RUST_LOG (`names`: those it reads).
fn assert_all_read(names: &[String], env: &BTreeMap<String, String>, context: &str) {
    for name in env.keys().filter(|name| name.as_str() != "RUST_LOG") {
        assert!(
            names.contains(name),
            "{context}: the server reads no {name}"
        );
    }
}

/// The ConfigMap the workload mounts (by its generated name) and its `config.toml`.
fn config_file<'a>(docs: &'a [Value], workload: &Value) -> &'a str {
    let volumes = workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    let mounted = volumes
        .iter()
        .find(|v| v["name"] == "config")
        .expect("the config volume");
    let name = text(&mounted["configMap"]["name"]);
    let map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the ConfigMap {name} the workload mounts"));
    text(&map["data"]["config.toml"])
}

#[test]
fn every_manifest_and_rendered_overlay_is_valid_against_the_schemas_of_a_current_release() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut rendered = Vec::new();
    for overlay in OVERLAYS {
        let path = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&path, render(overlay)).expect("write the rendered overlay");
        rendered.push(path);
        let path = dir.path().join(format!("{overlay}-tls.yaml"));
        std::fs::write(&path, render_with_tls(overlay)).expect("write the rendered overlay");
        rendered.push(path);
    }
    // The core kinds, strictly: an unknown field fails.
    let out = Command::new(venv_bin("kubernetes-validate"))
        .arg("--strict")
        .args(&rendered)
        .output()
        .expect("kubernetes-validate runs");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("WARN") && !said.contains("ERROR"), "{said}");
    assert_eq!(
        said.matches("passed for resource statefulset/mrmat-authz ")
            .count(),
        2,
        "with TLS and without: {said}"
    );
    for resource in [
        "namespace/auth",
        "serviceaccount/mrmat-authz",
        "service/mrmat-authz",
        "networkpolicy/mrmat-authz",
        "statefulset/mrmat-authz",
        "deployment/mrmat-authz",
        "poddisruptionbudget/mrmat-authz",
    ] {
        assert!(
            said.contains(&format!("passed for resource {resource} ")),
            "{resource}: {said}"
        );
    }

    // The custom resources, against their CRDs' schemas.
    let schemas = common::npm::installed("kubernetes", &["validate.mjs"]);
    let custom = [
        "deploy/gateway/httproute.yaml",
        "deploy/gateway/security-policy.yaml",
        "deploy/istio/authorization-policy.yaml",
    ];
    let out = Command::new("node")
        .arg("validate.mjs")
        .args(custom.iter().map(|path| repository().join(path)))
        .current_dir(&schemas)
        .output()
        .expect("node runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for resource in [
        "HTTPRoute/my-app: valid",
        "SecurityPolicy/mrmat-authz: valid",
        "SecurityPolicy/mrmat-authz-http: valid",
        "ReferenceGrant/mrmat-authz-from-my-app: valid",
        "AuthorizationPolicy/mrmat-authz: valid",
    ] {
        assert!(said.contains(resource), "{resource}: {said}");
    }

    // Neither validator passes what it should not: a port by name where a number belongs.
    let broken = dir.path().join("broken.yaml");
    let sqlite = std::fs::read_to_string(&rendered[0]).expect("read");
    std::fs::write(
        &broken,
        sqlite.replace("containerPort: 9191", "containerPort: http"),
    )
    .expect("write");
    let out = Command::new(venv_bin("kubernetes-validate"))
        .arg("--strict")
        .arg(&broken)
        .output()
        .expect("kubernetes-validate runs");
    assert!(!out.status.success(), "a broken StatefulSet passed");
    let policy = std::fs::read_to_string(repository().join(custom[1])).expect("read");
    std::fs::write(&broken, policy.replace("port: 50051", "port: grpc")).expect("write");
    let out = Command::new("node")
        .arg("validate.mjs")
        .arg(&broken)
        .current_dir(&schemas)
        .output()
        .expect("node runs");
    assert!(!out.status.success(), "a broken SecurityPolicy passed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("must be integer"));
}

#[test]
fn the_manifests_hold_to_the_servers_flags_ports_and_defaults() {
    let names = server_env_names();
    assert!(names.contains(&"MRMAT_GRPC_LISTEN".to_owned()), "{names:?}");
    let shapes = OVERLAYS.map(|overlay| (overlay, documents(&render(overlay))));
    let mut templates = Vec::new();
    for (overlay, docs) in &shapes {
        let docs = docs.as_slice();
        let workload = workload(docs);
        let pod = &workload["spec"]["template"];
        let server = container(workload);
        let env = env(server);
        let context = format!("overlay {overlay}");
        assert_all_read(&names, &env, &context);
        assert_eq!(
            text(&server["image"]),
            format!(
                "localhost/mrmat-rust-api-grpc:{}",
                env!("CARGO_PKG_VERSION")
            ),
            "{context}: the image ci/image builds"
        );

        // Each named port is where the server listens.
        let grpc = container_port(server, "grpc");
        assert_eq!(grpc, port_in(&env["MRMAT_GRPC_LISTEN"]), "{context}");
        assert_eq!(
            container_port(server, "http-auth"),
            port_in(&env["MRMAT_GRPC_FORWARD_AUTH_LISTEN"]),
            "{context}"
        );
        let metrics = container_port(server, "metrics");
        assert_eq!(
            metrics,
            port_in(&env["MRMAT_GRPC_METRICS_LISTEN"]),
            "{context}"
        );
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert_eq!(
                number(&server[probe]["grpc"]["port"]),
                u64::from(grpc),
                "{context}: {probe}"
            );
        }
        assert_eq!(server["readinessProbe"]["grpc"]["service"], "TokenV1Proto");
        let annotations = &pod["metadata"]["annotations"];
        assert_eq!(
            text(&annotations["prometheus.io/port"]),
            metrics.to_string()
        );
        assert_eq!(annotations["prometheus.io/path"], "/metrics");

        // The Service and the NetworkPolicy name ports the container has, with its numbers.
        let service = the(docs, "Service");
        for port in service["spec"]["ports"].as_array().expect("ports") {
            let target = text(&port["targetPort"]);
            assert_eq!(text(&port["name"]), target, "{context}");
            assert_eq!(
                number(&port["port"]),
                u64::from(container_port(server, target)),
                "{context}: the Service's port {target}"
            );
        }
        let labels = pod["metadata"]["labels"].as_object().expect("pod labels");
        let selects_the_pods = |selector: &Value| {
            let selector = selector.as_object().expect("a selector");
            assert!(
                !selector.is_empty(),
                "{context}: a selector selects something"
            );
            for (key, value) in selector {
                assert_eq!(labels.get(key), Some(value), "{context}: the pods' {key}");
            }
        };
        selects_the_pods(&service["spec"]["selector"]);
        selects_the_pods(&workload["spec"]["selector"]["matchLabels"]);
        let policy = the(docs, "NetworkPolicy");
        selects_the_pods(&policy["spec"]["podSelector"]["matchLabels"]);
        for rule in policy["spec"]["ingress"].as_array().expect("ingress") {
            for port in rule["ports"].as_array().expect("ports") {
                container_port(server, text(&port["port"]));
            }
        }

        // Stopping: the drain and the grace fit in the pod's termination grace.
        let drain: u64 = env["MRMAT_GRPC_DRAIN_DELAY"].parse().expect("seconds");
        let grace: u64 = env["MRMAT_GRPC_SHUTDOWN_GRACE"].parse().expect("seconds");
        let termination = number(&pod["spec"]["terminationGracePeriodSeconds"]);
        assert!(
            drain + grace < termination,
            "{context}: {drain} + {grace} >= {termination}"
        );
        assert!(
            drain >= number(&server["readinessProbe"]["periodSeconds"]),
            "{context}: the readiness probe sees NOT_SERVING before the listener closes"
        );

        // The security context a restricted namespace admits.
        let security = &server["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{context}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{context}");
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        let pod_security = &pod["spec"]["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true, "{context}");
        assert_eq!(
            pod_security["runAsUser"], 65532,
            "{context}: the image's user"
        );
        assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        assert_eq!(pod["spec"]["enableServiceLinks"], false, "{context}");
        assert_eq!(server["terminationMessagePolicy"], "FallbackToLogsOnError");
        assert!(
            server["resources"]["limits"]["memory"].is_string(),
            "{context}"
        );

        // The config file is the ConfigMap's, where the server is told to read it, and it loads.
        let config_mount = mount_path(server, "config");
        assert_eq!(
            env["MRMAT_GRPC_CONFIG"],
            format!("{config_mount}/config.toml")
        );
        let config = config_file(docs, workload);
        let dir = tempfile::tempdir().expect("a temporary folder");
        let local = dir.path().join("config.toml");
        std::fs::write(&local, config).expect("write the config file");
        let out = Command::new(SERVER)
            .arg("--check-config")
            .envs(&env)
            .env("MRMAT_GRPC_CONFIG", &local)
            .output()
            .expect("the server runs");
        assert!(
            out.status.success(),
            "{context}: --check-config: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Where the data goes.
        let store = &env["MRMAT_GRPC_STORE"];
        match *overlay {
            "sqlite" => {
                let data = mount_path(server, "data");
                assert_eq!(data, common::podman::DATA, "the image's volume");
                assert!(store.starts_with(&format!("sqlite:{data}/")), "{store}");
                let claims = &workload["spec"]["volumeClaimTemplates"][0];
                assert_eq!(claims["metadata"]["name"], "data");
                assert_eq!(
                    number(&workload["spec"]["replicas"]),
                    1,
                    "SQLite has one writer"
                );
            }
            _ => {
                assert!(store.starts_with("postgres://"), "{store}");
                let secret = mount_path(server, "postgres");
                assert!(env["MRMAT_GRPC_STORE_PASSWORD_FILE"].starts_with(&format!("{secret}/")));
                assert!(number(&workload["spec"]["replicas"]) > 1);
                let budget = the(docs, "PodDisruptionBudget");
                selects_the_pods(&budget["spec"]["selector"]["matchLabels"]);
            }
        }
        templates.push((server.clone(), pod["spec"]["securityContext"].clone()));
    }

    // The two shapes run the same server the same way, but for where its data goes.
    let strip = |(server, security): &(Value, Value)| {
        let mut server = server.clone();
        let object = server.as_object_mut().expect("an object");
        object.remove("volumeMounts");
        let env = object["env"].as_array_mut().expect("env");
        env.retain(|e| !text(&e["name"]).starts_with("MRMAT_GRPC_STORE"));
        let mut security = security.clone();
        security
            .as_object_mut()
            .expect("an object")
            .remove("fsGroup");
        (server, security)
    };
    assert_eq!(strip(&templates[0]), strip(&templates[1]));

    // The TLS patch: the same for both shapes, real flags, its files where its Secret is
    // mounted, and probes that run the image's client against the server's own port.
    let patch = |overlay: &str| {
        let path = format!("deploy/kubernetes/overlays/{overlay}/tls.yaml");
        std::fs::read_to_string(repository().join(path)).expect("read tls.yaml")
    };
    assert_eq!(
        patch("sqlite").replace("kind: StatefulSet\n", ""),
        patch("postgres").replace("kind: Deployment\n", "")
    );
    for overlay in OVERLAYS {
        let docs = documents(&render_with_tls(overlay));
        let server = container(workload(&docs));
        let env = env(server);
        assert_all_read(&names, &env, &format!("{overlay} with TLS"));
        let tls = mount_path(server, "tls");
        for file in [
            "MRMAT_GRPC_TLS_CERT",
            "MRMAT_GRPC_TLS_KEY",
            "MRMAT_GRPC_TLS_CLIENT_CA",
        ] {
            assert!(
                env[file].starts_with(&format!("{tls}/")),
                "{file}: {}",
                env[file]
            );
        }
        let grpc = container_port(server, "grpc");
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert!(
                server[probe]["grpc"].is_null(),
                "{overlay}: {probe} still asks in plaintext"
            );
            let command: Vec<&str> = server[probe]["exec"]["command"]
                .as_array()
                .expect("a command")
                .iter()
                .map(text)
                .collect();
            assert_eq!(command[0], "mrmat-rust-api-grpc-client");
            assert_eq!(command[2], format!("localhost:{grpc}"));
        }
    }

    // The mesh and the gateway reach the Service by its name, namespace and ports.
    let docs = &shapes[0].1;
    let service = the(docs, "Service");
    let name = text(&service["metadata"]["name"]);
    let namespace = text(&service["metadata"]["namespace"]);
    let port = |port_name: &str| {
        service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == port_name)
            .map(|p| number(&p["port"]))
            .expect("the port")
    };
    let mesh = &file_documents("deploy/istio/mesh-config.yaml")[0];
    let providers = mesh["extensionProviders"].as_array().expect("providers");
    let host = format!("{name}.{namespace}.svc.cluster.local");
    let grpc = &providers
        .iter()
        .find(|p| p["name"] == "mrmat-authz")
        .expect("grpc")["envoyExtAuthzGrpc"];
    assert_eq!(
        (text(&grpc["service"]), number(&grpc["port"])),
        (host.as_str(), port("grpc"))
    );
    let http = &providers
        .iter()
        .find(|p| p["name"] == "mrmat-authz-http")
        .expect("http")["envoyExtAuthzHttp"];
    assert_eq!(
        (text(&http["service"]), number(&http["port"])),
        (host.as_str(), port("http-auth"))
    );
    assert_eq!(http["pathPrefix"], ENVOY_PREFIX);
    let sqlite = workload(docs);
    let header = env(container(sqlite))["MRMAT_GRPC_CLAIM_HEADER"]
        .split_once('=')
        .expect("CLAIM=HEADER")
        .1
        .to_owned();
    assert!(http["headersToUpstreamOnAllow"]
        .as_array()
        .expect("headers")
        .contains(&Value::from(header.as_str())));
    let policies = file_documents("deploy/gateway/security-policy.yaml");
    for policy in policies.iter().filter(|p| p["kind"] == "SecurityPolicy") {
        let auth = &policy["spec"]["extAuth"];
        let (mode, port_name) = if auth["grpc"].is_object() {
            ("grpc", "grpc")
        } else {
            ("http", "http-auth")
        };
        let backend = &auth[mode]["backendRefs"][0];
        assert_eq!(text(&backend["name"]), name);
        assert_eq!(text(&backend["namespace"]), namespace);
        assert_eq!(number(&backend["port"]), port(port_name));
        if mode == "http" {
            assert_eq!(auth["http"]["path"], ENVOY_PREFIX);
        }
    }
    let grant = the(&policies, "ReferenceGrant");
    assert_eq!(text(&grant["metadata"]["namespace"]), namespace);
}

/// An HTTP/1.1 GET of `path` on `address`, with `headers` (`Name: value` lines).
fn http_get(address: &str, path: &str, headers: &str) -> Answer {
    let mut raw = Raw::connect(address);
    let head = format!("GET {path} HTTP/1.1\r\nHost: app\r\n{headers}Connection: close\r\n\r\n");
    assert!(raw.send(head.as_bytes()));
    raw.answer().expect("an answer")
}

/// The rendered workload's pod, run as the kubelet would start it; what it mounts is deleted
/// with it.
struct Pod {
    running: Container,
    /// The container's ports named grpc, http-auth and metrics.
    ports: [u16; 3],
    /// The provider's key: the ConfigMap's provider, its keys from a file.
    key: std::sync::Arc<SigningKey>,
    _mounted: Vec<tempfile::TempDir>,
    _keys: KeyFile,
    _volume: Volume,
}

/// Runs the pod of `workload` (of the rendered `docs`) under podman: the pod's user, no
/// capabilities, no new privileges, a read-only root, the manifest's environment and mounts.
/// The ConfigMap's file is mounted with its provider's keys from a file instead of discovery (no
/// provider is reachable from here); `secrets` are the Secrets' files by volume name.
fn start_pod(docs: &[Value], secrets: &[(&str, Vec<(&str, PathBuf)>)]) -> Pod {
    start_pod_in(docs, secrets, None, &[], None)
}

/// As [`start_pod`], in the network namespace `netns` when given (an address of its own, as a
/// pod has: nothing published), with `overrides` of the manifest's environment (what only a
/// cluster knows, such as its database's address), and the provider's `key` when given (one
/// provider's key for every replica).
fn start_pod_in(
    docs: &[Value],
    secrets: &[(&str, Vec<(&str, PathBuf)>)],
    netns: Option<&str>,
    overrides: &[(&str, String)],
    key: Option<&std::sync::Arc<SigningKey>>,
) -> Pod {
    let workload = workload(docs);
    let pod = &workload["spec"]["template"]["spec"];
    let server = container(workload);
    let key = key.map_or_else(
        || std::sync::Arc::new(SigningKey::p256("kube-1")),
        std::sync::Arc::clone,
    );
    let keys = KeyFile::new(&[&key]);
    open_to_all(keys.dir());
    open_to_all(&keys.path());
    let shipped = config_file(docs, workload);
    let issuer_line = shipped
        .lines()
        .find(|line| line.starts_with("issuer = "))
        .expect("the provider's issuer");
    let config = shipped.replace(
        issuer_line,
        &format!("issuer = \"{ISSUER}\"\njwks_file = \"/keys/jwks.json\""),
    );
    let mut files = vec![("config", vec![("config.toml", config)])];
    for (volume, paths) in secrets {
        let copied = paths
            .iter()
            .map(|(name, path)| (*name, std::fs::read_to_string(path).expect("read a secret")))
            .collect();
        files.push((volume, copied));
    }
    let security = &pod["securityContext"];
    let volume = Volume::new();
    let mut options = vec![
        "--user".to_owned(),
        format!("{}:{}", security["runAsUser"], security["runAsGroup"]),
        "--cap-drop".to_owned(),
        "ALL".to_owned(),
        "--security-opt".to_owned(),
        "no-new-privileges".to_owned(),
        "--volume".to_owned(),
        format!("{}:/keys:ro", keys.dir().display()),
    ];
    let mounts_data = server["volumeMounts"]
        .as_array()
        .is_some_and(|mounts| mounts.iter().any(|m| m["name"] == "data"));
    if mounts_data {
        options.extend([
            "--volume".to_owned(),
            format!("{}:{}", volume.0, mount_path(server, "data")),
        ]);
    }
    let mut mounted = Vec::new();
    for (volume, contents) in files {
        let dir = tempfile::tempdir().expect("a temporary folder");
        for (name, content) in contents {
            std::fs::write(dir.path().join(name), content).expect("write a mounted file");
            open_to_all(&dir.path().join(name));
        }
        open_to_all(dir.path());
        let target = mount_path(server, volume);
        options.extend([
            "--volume".to_owned(),
            format!("{}:{target}:ro", dir.path().display()),
        ]);
        mounted.push(dir);
    }
    let mut environment = env(server);
    for (name, value) in overrides {
        assert!(environment.contains_key(*name), "the manifest sets {name}");
        environment.insert((*name).to_owned(), value.clone());
    }
    for (name, value) in environment {
        options.extend(["--env".to_owned(), format!("{name}={value}")]);
    }
    let ports = ["grpc", "http-auth", "metrics"].map(|name| container_port(server, name));
    let published: &[u16] = match netns {
        Some(netns) => {
            options.extend(["--network".to_owned(), format!("ns:/run/netns/{netns}")]);
            &[]
        }
        None => &ports,
    };
    Pod {
        running: Container::run(&options, published, &[]),
        ports,
        key,
        _mounted: mounted,
        _keys: keys,
        _volume: volume,
    }
}

#[test]
fn the_rendered_statefulset_runs_the_image_and_answers_its_probes() {
    let docs = documents(&render("sqlite"));
    let workload = workload(&docs);
    let pod = &workload["spec"]["template"]["spec"];
    let server = container(workload);
    // Kept whole until the end: what it mounts goes with it.
    let started = start_pod(&docs, &[]);
    let (running, ports, key) = (&started.running, started.ports, &started.key);

    // The probes, as the kubelet asks them.
    let probe_port =
        |probe: &str| u16::try_from(number(&server[probe]["grpc"]["port"])).expect("a port");
    let service_of = |probe: &str| {
        server[probe]["grpc"]["service"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        running.wait_until_serving(probe_port(probe), &service_of(probe));
    }

    // Forward auth, on the port the Service names http-auth, judging by the ConfigMap's routes.
    let auth = running.address(ports[1]);
    assert_eq!(
        http_get(&auth, &format!("{ENVOY_PREFIX}/healthz"), "").status,
        200
    );
    let mut ops = claims("olivia");
    ops["aud"] = Value::from("orders-api");
    ops["groups"] = serde_json::json!(["ops"]);
    ops["email"] = Value::from("olivia@example.com");
    let token = key.sign(&ops);
    let allowed = http_get(
        &auth,
        &format!("{ENVOY_PREFIX}/ops/x"),
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("x-auth-email"), Some("olivia@example.com"));
    let mut dev = claims("dan");
    dev["aud"] = Value::from("orders-api");
    let token = key.sign(&dev);
    let denied = http_get(
        &auth,
        &format!("{ENVOY_PREFIX}/ops/x"),
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(denied.status, 403, "{denied:?}");

    // Prometheus' scrape, where the annotations send it.
    let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
    let scraped = http_get(
        &running.address(ports[2]),
        text(&annotations["prometheus.io/path"]),
        "",
    );
    assert_eq!(scraped.status, 200);
    assert!(
        scraped.body.contains("mrmat_authz_decisions_total"),
        "{}",
        scraped.body
    );

    // A rollout's SIGTERM: readiness turns NOT_SERVING while the server still answers (the
    // drain), then it exits 0 within the pod's termination grace.
    let readiness = HealthClient::new(running.channel(probe_port("readinessProbe")));
    let mut request = HealthCheckRequest::new();
    request.service = service_of("readinessProbe");
    let sent = Instant::now();
    common::podman::podman_ok(&["kill", "--signal", "TERM", &running.name]);
    common::wait_until(
        "readiness reports NOT_SERVING",
        Duration::from_secs(5),
        || {
            readiness
                .check_opt(&request, common::call())
                .is_ok_and(|answer| {
                    answer.status.enum_value_or_default() == ServingStatus::NOT_SERVING
                })
        },
    );
    let termination = number(&pod["terminationGracePeriodSeconds"]);
    let code = running.wait_for_exit(Duration::from_secs(termination));
    assert_eq!(code, 0, "{}", running.logs());
    assert!(sent.elapsed() < Duration::from_secs(termination));
}

/// Runs each of `server`'s probes' commands in `running` as the kubelet's exec probe runs it:
/// the startup probe until it succeeds, then the others at once.
fn run_exec_probes(running: &Container, server: &Value) {
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let command = server[probe]["exec"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{probe} runs a command"));
        let mut exec = vec!["exec", running.name.as_str()];
        exec.extend(command.iter().map(text));
        let passed = common::holds_within(Duration::from_secs(60), || {
            common::podman::podman(&exec).status.success()
        });
        let last = common::podman::podman(&exec);
        assert!(
            passed,
            "{probe} fails: {}; the server's log:\n{}",
            String::from_utf8_lossy(&last.stderr),
            running.logs()
        );
        assert_eq!(
            common::podman::podman_ok(&exec),
            "[200] SERVING\n",
            "{probe}"
        );
    }
}

/// The client's arguments for mutual TLS to a pod of the TLS patch, with `pki`'s certificate
/// `cert` (none when empty), then `args`.
fn over_mtls(pki: &common::pki::Pki, cert: &str, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = vec![
        "--ca-cert".to_owned(),
        pki.path("ca.pem").display().to_string(),
        "--tls-server-name".to_owned(),
        common::pki::POD_NAMES[0].to_owned(),
    ];
    if !cert.is_empty() {
        all.extend([
            "--client-cert".to_owned(),
            pki.path(&format!("{cert}.pem")).display().to_string(),
            "--client-key".to_owned(),
            pki.path(&format!("{cert}.key")).display().to_string(),
        ]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    all
}

/// The Secret `mrmat-authz-tls` of the TLS patch, from `pki`.
fn tls_secret(pki: &common::pki::Pki) -> (&'static str, Vec<(&'static str, PathBuf)>) {
    (
        "tls",
        vec![
            ("tls.crt", pki.path("pod.pem")),
            ("tls.key", pki.path("pod.key")),
            ("ca.crt", pki.path("ca.pem")),
        ],
    )
}

#[test]
fn with_its_tls_patch_the_pod_probes_itself_over_mutual_tls_and_only_its_admin_may_revoke() {
    use common::pki::{Pki, ADMIN_COMMON_NAME};
    let docs = documents(&render_with_tls("sqlite"));
    let server = container(workload(&docs));
    let pki = Pki::new();
    let started = start_pod(&docs, &[tls_secret(&pki)]);
    let running = &started.running;

    run_exec_probes(running, server);

    // From outside, the gRPC port speaks mutual TLS only.
    let address = running.address(started.ports[0]);
    let with =
        |cert: &str, args: &[&str]| common::client_output(&address, &over_mtls(&pki, cert, args));
    let out = with("", &["healthz"]);
    assert!(
        !out.status.success(),
        "a caller without a certificate was served"
    );

    let mut stolen = claims("mallory");
    stolen["aud"] = Value::from("orders-api");
    stolen["jti"] = Value::from("stolen-1");
    let token = started.key.sign(&stolen);
    let out = with("client", &["token", "v1", "validate", &token]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("[200] Valid"),
        "{out:?}"
    );

    // Revoke: refused to a caller the patch does not name, done for the one it does.
    let out = with(
        "client",
        &["token", "v1", "revoke", "--token-id", "stolen-1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"),
        "{out:?}"
    );
    assert_eq!(env(server)["MRMAT_GRPC_TOKEN_ADMIN"], ADMIN_COMMON_NAME);
    let out = with(
        "admin-client",
        &["token", "v1", "revoke", "--token-id", "stolen-1"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("[200] Revoked until"),
        "{out:?}"
    );
    let out = with("client", &["token", "v1", "validate", &token]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("[401] Revoked"),
        "{out:?}"
    );
}

#[test]
fn the_rendered_deployments_replicas_share_one_postgresql_and_a_revocation_outlives_a_killed_one() {
    use common::pki::Pki;
    use common::postgres::{PgCluster, PASSWORD};
    let docs = documents(&render_with_tls("postgres"));
    let server = container(workload(&docs));
    assert!(number(&workload(&docs)["spec"]["replicas"]) >= 2);

    // Two of its pods, each with an address of its own (a network namespace, as a pod has),
    // and the database beside them on an address of this host.
    let topology = common::netns::Topology::new(2);
    let database = PgCluster::start_on(Some(&topology.database_address));
    let url = database.new_database();
    let name = url.rsplit('/').next().expect("a database name");
    let store = database.url_at(&topology.database_address, name);
    let pki = Pki::new();
    let password = tempfile::NamedTempFile::new().expect("a password file");
    std::fs::write(password.path(), PASSWORD).expect("write the password");
    let secrets = [
        tls_secret(&pki),
        ("postgres", vec![("password", password.path().to_owned())]),
    ];
    // One provider, one key, as its discovery would give every replica.
    let key = std::sync::Arc::new(SigningKey::p256("kube-1"));
    let pods: Vec<Pod> = topology
        .places
        .iter()
        .map(|place| {
            let overrides = [("MRMAT_GRPC_STORE", store.clone())];
            start_pod_in(&docs, &secrets, Some(&place.netns), &overrides, Some(&key))
        })
        .collect();
    for pod in &pods {
        run_exec_probes(&pod.running, server);
    }
    let grpc = container_port(server, "grpc");
    let address = |n: usize| format!("{}:{grpc}", topology.places[n].address);

    // A token both replicas accept.
    let mut stolen = claims("mallory");
    stolen["aud"] = Value::from("orders-api");
    stolen["jti"] = Value::from("stolen-2");
    let token = key.sign(&stolen);
    let validate = |n: usize| {
        let out = common::client_output(
            &address(n),
            &over_mtls(&pki, "client", &["token", "v1", "validate", &token]),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(validate(0).starts_with("[200] Valid"), "{}", validate(0));
    assert!(validate(1).starts_with("[200] Valid"), "{}", validate(1));

    // Revoked through replica 0: replica 1 refuses it within a second or so.
    let out = common::client_output(
        &address(0),
        &over_mtls(
            &pki,
            "admin-client",
            &["token", "v1", "revoke", "--token-id", "stolen-2"],
        ),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("[200] Revoked until"),
        "{out:?}"
    );
    common::wait_until(
        "replica 1 refuses the token",
        Duration::from_secs(10),
        || validate(1).starts_with("[401] Revoked"),
    );

    // Replica 0 killed (SIGKILL, no drain): replica 1 keeps answering, and the revocation holds
    // on the one that replaces it.
    common::podman::podman_ok(&["kill", "--signal", "KILL", &pods[0].running.name]);
    pods[0].running.wait_for_exit(Duration::from_secs(30));
    assert!(validate(1).starts_with("[401] Revoked"));
    pods[0].running.start();
    run_exec_probes(&pods[0].running, server);
    assert!(validate(0).starts_with("[401] Revoked"), "{}", validate(0));
}
