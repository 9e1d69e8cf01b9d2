//! Server reflection (`grpc.reflection.v1` and `v1alpha`, served by the same code): lets tools
//! such as grpcurl list the services and fetch their descriptors, built from the descriptors
//! rust-protobuf generated, so no `.proto` file is needed at run time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::{SinkExt as _, TryStreamExt as _};
use grpcio::{DuplexSink, RequestStream, RpcContext, RpcStatusCode, WriteFlags};
use protobuf::descriptor::{DescriptorProto, FileDescriptorProto};
use protobuf::reflect::FileDescriptor;
use protobuf::{Message, MessageFull};

use crate::apis::call::Call;
use crate::apis::call::Kind;
use crate::apis::offer::{Api, DependsOn};
use crate::apis::streams;
use crate::proto::reflection::{v1, v1alpha};

/// The fully qualified names of the two versions of the service.
pub const NAMES: [&str; 2] = [
    v1::service_names::SERVER_REFLECTION,
    v1alpha::service_names::SERVER_REFLECTION,
];

/// The files that define the two versions of the service, in the order of [`NAMES`].
fn files() -> [&'static FileDescriptor; 2] {
    [
        v1::reflection::file_descriptor(),
        v1alpha::reflection::file_descriptor(),
    ]
}

/// Everything reflection can tell: the services, and the files that describe them.
#[derive(Debug, Default)]
pub struct Descriptors {
    services: Vec<String>,
    /// Serialized `FileDescriptorProto` by file name.
    files: HashMap<String, Vec<u8>>,
    /// The files each file imports, by file name.
    imports: HashMap<String, Vec<String>>,
    /// The file defining each fully qualified symbol (message, enum, service, method).
    symbols: HashMap<String, String>,
}

impl Descriptors {
    /// Descriptors of `apis` and of reflection itself, from the files that define them (whose
    /// imports are added too).
    pub fn of(apis: &[&Api]) -> Self {
        let own = files();
        let names: Vec<&str> = apis.iter().map(|api| api.name).chain(NAMES).collect();
        let files: Vec<&FileDescriptor> = apis.iter().map(|api| api.file).chain(own).collect();
        Self::new(&names, &files)
    }

    /// Descriptors of `services`, defined in `files` (whose imports are added too).
    pub fn new(services: &[&str], files: &[&FileDescriptor]) -> Self {
        let mut descriptors = Self {
            services: services.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        };
        let mut pending: Vec<FileDescriptor> = files.iter().map(|f| (*f).clone()).collect();
        while let Some(file) = pending.pop() {
            let proto = file.proto();
            if descriptors.files.contains_key(proto.name()) {
                continue;
            }
            descriptors.add(proto);
            pending.extend(file.deps().iter().cloned());
        }
        descriptors
    }

    fn add(&mut self, file: &FileDescriptorProto) {
        let name = file.name().to_owned();
        let prefix = match file.package() {
            "" => String::new(),
            package => format!("{package}."),
        };
        for message in &file.message_type {
            self.add_message(&name, &prefix, message);
        }
        for enumeration in &file.enum_type {
            self.symbol(&name, format!("{prefix}{}", enumeration.name()));
        }
        for service in &file.service {
            let service_name = format!("{prefix}{}", service.name());
            for method in &service.method {
                self.symbol(&name, format!("{service_name}.{}", method.name()));
            }
            self.symbol(&name, service_name);
        }
        let bytes = file
            .write_to_bytes()
            .expect("a generated descriptor encodes");
        self.imports.insert(name.clone(), file.dependency.clone());
        self.files.insert(name, bytes);
    }

    fn add_message(&mut self, file: &str, prefix: &str, message: &DescriptorProto) {
        let full_name = format!("{prefix}{}", message.name());
        for nested in &message.nested_type {
            self.add_message(file, &format!("{full_name}."), nested);
        }
        for enumeration in &message.enum_type {
            self.symbol(file, format!("{full_name}.{}", enumeration.name()));
        }
        self.symbol(file, full_name);
    }

    fn symbol(&mut self, file: &str, symbol: String) {
        self.symbols.insert(symbol, file.to_owned());
    }

    /// `file` and every file it imports, directly or not, each once, `file` first.
    fn with_imports(&self, file: &str) -> Vec<Vec<u8>> {
        let mut seen = BTreeSet::new();
        let mut order = vec![file.to_owned()];
        let mut next = 0;
        while next < order.len() {
            let current = order[next].clone();
            next += 1;
            if !seen.insert(current.clone()) {
                continue;
            }
            if let Some(imports) = self.imports.get(&current) {
                order.extend(imports.iter().filter(|i| !seen.contains(*i)).cloned());
            }
        }
        let mut sent = BTreeSet::new();
        order
            .into_iter()
            .filter(|name| sent.insert(name.clone()))
            .filter_map(|name| self.files.get(&name).cloned())
            .collect()
    }

    /// The answer to one reflection request.
    pub fn answer(&self, request: &v1::ServerReflectionRequest) -> v1::ServerReflectionResponse {
        use v1::server_reflection_request::Message_request as Asked;
        use v1::server_reflection_response::Message_response as Answer;

        let file_answer = |file: Option<&String>, what: &str| match file {
            Some(file) if self.files.contains_key(file) => {
                let mut found = v1::FileDescriptorResponse::new();
                found.file_descriptor_proto = self.with_imports(file);
                Answer::FileDescriptorResponse(found)
            }
            _ => not_found(format!("{what} is not known to this server")),
        };
        let answer = match &request.message_request {
            Some(Asked::FileByFilename(name)) => {
                file_answer(Some(name), &format!("the file `{name}`"))
            }
            Some(Asked::FileContainingSymbol(symbol)) => {
                let symbol = symbol.trim_start_matches('.');
                file_answer(self.symbols.get(symbol), &format!("the symbol `{symbol}`"))
            }
            Some(Asked::FileContainingExtension(extension)) => not_found(format!(
                "no extension {} of `{}`: this server defines no extensions",
                extension.extension_number, extension.containing_type
            )),
            Some(Asked::AllExtensionNumbersOfType(message)) => {
                if self.symbols.contains_key(message.as_str()) {
                    let mut numbers = v1::ExtensionNumberResponse::new();
                    numbers.base_type_name = message.clone();
                    Answer::AllExtensionNumbersResponse(numbers)
                } else {
                    not_found(format!("the type `{message}` is not known to this server"))
                }
            }
            Some(Asked::ListServices(_)) => {
                let mut list = v1::ListServiceResponse::new();
                list.service = self
                    .services
                    .iter()
                    .map(|name| {
                        let mut service = v1::ServiceResponse::new();
                        service.name = name.clone();
                        service
                    })
                    .collect();
                Answer::ListServicesResponse(list)
            }
            None => error(
                RpcStatusCode::INVALID_ARGUMENT,
                "the request asks for nothing".to_owned(),
            ),
        };
        let mut response = v1::ServerReflectionResponse::new();
        response.valid_host = request.host.clone();
        response.original_request = Some(request.clone()).into();
        response.message_response = Some(answer);
        response
    }
}

fn error(code: RpcStatusCode, message: String) -> v1::server_reflection_response::Message_response {
    let mut error = v1::ErrorResponse::new();
    error.error_code = code.into();
    error.error_message = message;
    v1::server_reflection_response::Message_response::ErrorResponse(error)
}

fn not_found(message: String) -> v1::server_reflection_response::Message_response {
    error(RpcStatusCode::NOT_FOUND, message)
}

/// Both versions of the reflection service over the same descriptors.
#[derive(Clone)]
pub struct ReflectionApi {
    descriptors: Arc<Descriptors>,
}

impl ReflectionApi {
    /// The services to register on a server: v1 and v1alpha.
    pub fn apis(descriptors: Descriptors) -> [Api; 2] {
        let api = Self {
            descriptors: Arc::new(descriptors),
        };
        let [v1_file, v1alpha_file] = files();
        [
            Api {
                name: NAMES[0],
                service: v1::create_server_reflection(api.clone()),
                file: v1_file,
                depends_on: DependsOn::Nothing,
            },
            Api {
                name: NAMES[1],
                service: v1alpha::create_server_reflection(api),
                file: v1alpha_file,
                depends_on: DependsOn::Nothing,
            },
        ]
    }

    /// Answers each request of the stream in turn. The two versions' messages differ only in
    /// package, so their encodings are the same: a version is served by re-reading its messages
    /// as v1 ones and back.
    fn serve<Req, Resp>(
        &self,
        ctx: &RpcContext,
        requests: RequestStream<Req>,
        sink: DuplexSink<Resp>,
    ) where
        Req: MessageFull,
        Resp: MessageFull,
    {
        let call = Call::start_stream(ctx, Kind::BidiStream);
        let descriptors = Arc::clone(&self.descriptors);
        let (mut requests, mut sink) = (requests, sink);
        ctx.spawn(async move {
            let served: grpcio::Result<RpcStatusCode> = async {
                while let Some(request) = requests.try_next().await? {
                    call.received();
                    let request: v1::ServerReflectionRequest = transcode(&request)?;
                    let response: Resp = transcode(&descriptors.answer(&request))?;
                    sink.send((response, WriteFlags::default())).await?;
                    call.sent();
                }
                sink.close().await.map(|()| RpcStatusCode::OK)
            }
            .await;
            let served = match served {
                Err(error) => match streams::read_failure(&error) {
                    Some(status) => {
                        let code = status.code();
                        sink.fail(status).await.map(|()| code)
                    }
                    None => Err(error),
                },
                served => served,
            };
            call.finish(served);
        });
    }
}

/// The same encoding read as another message type.
fn transcode<From: Message, To: Message>(message: &From) -> grpcio::Result<To> {
    let bytes = message
        .write_to_bytes()
        .map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    To::parse_from_bytes(&bytes).map_err(|e| grpcio::Error::Codec(Box::new(e)))
}

impl v1::ServerReflection for ReflectionApi {
    fn server_reflection_info(
        &mut self,
        ctx: RpcContext,
        requests: RequestStream<v1::ServerReflectionRequest>,
        sink: DuplexSink<v1::ServerReflectionResponse>,
    ) {
        self.serve(&ctx, requests, sink);
    }
}

impl v1alpha::ServerReflection for ReflectionApi {
    fn server_reflection_info(
        &mut self,
        ctx: RpcContext,
        requests: RequestStream<v1alpha::ServerReflectionRequest>,
        sink: DuplexSink<v1alpha::ServerReflectionResponse>,
    ) {
        self.serve(&ctx, requests, sink);
    }
}
