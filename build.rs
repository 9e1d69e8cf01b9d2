//! Generates the Rust side of `proto/` into `OUT_DIR`: messages with protobuf-codegen 3 (pure-Rust
//! parser, no `protoc`), service traits, clients and `create_*` functions with grpcio-compiler.
//! Nothing generated is committed; the one change made to grpcio-compiler's output is the decoder
//! its method descriptors name (see `GRPCIO_DECODER`).

use std::fs;
use std::path::{Path, PathBuf};

use protobuf::Message as _;

const PROTO_DIR: &str = "proto";

/// What to generate, each set into its own folder of `OUT_DIR`: protobuf-codegen names a module
/// after its file's stem, and both versions of reflection are `reflection.proto`.
const PROTO_SETS: &[(&str, &[&str])] = &[
    ("contract", &["proto/grpc-api.proto"]),
    ("health_v1", &["proto/grpc/health/v1/health.proto"]),
    (
        "reflection_v1",
        &["proto/grpc/reflection/v1/reflection.proto"],
    ),
    (
        "reflection_v1alpha",
        &["proto/grpc/reflection/v1alpha/reflection.proto"],
    ),
    // One folder, since the generated code names each imported file's module as a sibling.
    (
        "ext_authz_v3",
        &[
            "proto/envoy/service/auth/v3/external_auth.proto",
            "proto/envoy/service/auth/v3/attribute_context.proto",
            "proto/envoy/config/core/v3/base.proto",
            "proto/envoy/type/v3/http_status.proto",
            "proto/google/rpc/status.proto",
        ],
    ),
];

/// The decoder grpcio-compiler writes into every method descriptor, and the one we use instead.
const GRPCIO_DECODER: &str = "::grpcio::pb_de";
const OUR_DECODER: &str = "crate::codec::decode";

/// The attribute grpcio-compiler puts atop every file, although the code it writes has no
/// `unsafe`.
const GRPCIO_ALLOWS_UNSAFE: &str = "#![allow(unsafe_code)]\n";

fn main() {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (folder, files) in PROTO_SETS {
        for file in *files {
            println!("cargo:rerun-if-changed={file}");
        }
        protobuf_codegen::Codegen::new()
            .pure()
            .include(PROTO_DIR)
            .inputs(*files)
            .cargo_out_dir(folder)
            .run_from_script();
        generate_services(&out_dir.join(folder), files);
    }
}

/// Writes `<name>_grpc.rs` next to the messages and declares it in the generated `mod.rs`.
fn generate_services(dir: &Path, files: &[&str]) {
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include(PROTO_DIR)
        .inputs(files)
        .parse_and_typecheck()
        .unwrap_or_else(|e| panic!("cannot parse {files:?}: {e:#}"));

    // grpcio-compiler takes protobuf 2 descriptors; the wire encoding of both is the same.
    let descriptors: Vec<protobuf2::descriptor::FileDescriptorProto> = parsed
        .file_descriptors
        .iter()
        .map(|fd| {
            let bytes = fd.write_to_bytes().expect("encode a parsed descriptor");
            protobuf2::Message::parse_from_bytes(&bytes).expect("decode a descriptor re-encoded")
        })
        .collect();
    let to_generate: Vec<String> = parsed
        .relative_paths
        .iter()
        .map(|p| p.to_str().to_owned())
        .collect();

    let mut mod_rs = fs::read_to_string(dir.join("mod.rs")).expect("read generated mod.rs");
    mod_rs.push_str(&service_names(&parsed.file_descriptors, &to_generate));
    for file in grpcio_compiler::codegen::gen(&descriptors, &to_generate) {
        let content = String::from_utf8(file.content).expect("generated code is UTF-8");
        // grpcio-compiler has no option for the decoder; ours logs messages that do not decode.
        assert!(
            content.contains(GRPCIO_DECODER),
            "grpcio-compiler no longer names {GRPCIO_DECODER}; update build.rs"
        );
        let content = content.replace(GRPCIO_DECODER, OUR_DECODER);
        // The crate forbids unsafe code, which an inner `allow` may not loosen; the generated
        // services use none.
        let content = content.replace(GRPCIO_ALLOWS_UNSAFE, "");
        fs::write(dir.join(&file.name), content).expect("write generated service");
        let module = file.name.trim_end_matches(".rs");
        mod_rs.push_str(&format!("pub mod {module};\n"));
    }
    fs::write(dir.join("mod.rs"), mod_rs).expect("write generated mod.rs");
}

/// A `service_names` module with the fully qualified name of every service the files define
/// (`GREETING_V1_PROTO = "GreetingV1Proto"`, `HEALTH = "grpc.health.v1.Health"`): the one place
/// servers, clients and tests take them from, so none is written by hand.
fn service_names(
    files: &[protobuf::descriptor::FileDescriptorProto],
    generated: &[String],
) -> String {
    let mut names = String::from(
        "/// The fully qualified name of each service, as health checking, reflection and \
         clients name it.\npub mod service_names {\n",
    );
    for file in files
        .iter()
        .filter(|f| generated.iter().any(|g| g == f.name()))
    {
        let prefix = match file.package() {
            "" => String::new(),
            package => format!("{package}."),
        };
        for service in &file.service {
            let name = service.name();
            names.push_str(&format!(
                "    /// `{prefix}{name}`.\n    pub const {}: &str = \"{prefix}{name}\";\n",
                upper_snake(name)
            ));
        }
    }
    names.push_str("}\n");
    names
}

/// `GreetingV1Proto` as `GREETING_V1_PROTO`.
fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
        previous = Some(c);
    }
    out
}
