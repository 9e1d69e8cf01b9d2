//! `token v1 ...`: validate tokens (one-shot or a stream from stdin, both through the
//! [`TokenValidator`]), revoke one, and for trying the service, print a key's JWKS and mint
//! tokens.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt as _;
use serde_json::json;

use super::signing::SigningKey;
use crate::client::{
    malformed, to_json, too_long, write_answer, ClientError, Connection, OutputFormat,
    PendingValidation, Presented, Target, TokenAnswer, TokenValidator, ValidateError,
    ValidatorConfig, VALIDATOR_DEFAULTS,
};
use crate::proto::{TokenV1Output, TokenV1ProtoClient, TokenV1RevokeInput, TokenV1Verdict};
use crate::seconds::Seconds;
use crate::time::rfc3339;
use crate::tokens::MAX_TOKEN_BYTES;

/// Validations a `--stream` keeps outstanding: enough to fill the pipe to the server, few
/// enough that memory stays small whatever the input's length.
const STREAM_WINDOW: usize = 512;

/// Calls of the token API, version 1.
#[derive(Debug, clap::Subcommand)]
pub enum TokenV1Command {
    /// Ask whether tokens are valid; prints one line per token, in order.
    Validate(ValidateArgs),
    /// Refuse a token from now on, by its `jti` or the token itself (needs an admin client
    /// certificate: mTLS).
    Revoke {
        /// The `jti` of the token.
        #[arg(long, value_name = "JTI", required_unless_present = "token_file")]
        token_id: Option<String>,
        /// Or the token itself, read from FILE ('-': standard input), for a token without a
        /// `jti` (most opaque tokens); the server keeps only its SHA-256.
        #[arg(long, value_name = "FILE", conflicts_with = "token_id")]
        token_file: Option<std::path::PathBuf>,
        /// Keep the revocation until then, in Unix seconds (the token's `exp`); by default
        /// the longest the server allows.
        #[arg(long, value_name = "UNIX")]
        expires_at: Option<i64>,
    },
    /// Print the JWKS (for the server's --jwks-file) of a private key's public half. For trying
    /// the service: real keys belong to an identity provider.
    Jwks {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print tokens signed with a private key, one per line. For trying and testing the
    /// service: real tokens come from an identity provider.
    Mint(MintArgs),
}

/// How `token v1 validate` asks.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The tokens (compact JWS, without `Bearer `).
    #[arg(
        value_name = "TOKEN",
        required_unless_present = "stream",
        conflicts_with = "stream"
    )]
    pub tokens: Vec<String>,

    /// Read tokens from stdin, one per line, over one stream that survives server restarts;
    /// answers are printed in input order as they arrive.
    #[arg(long)]
    pub stream: bool,

    /// Ping the server after this long without hearing from it (at least the server's
    /// --keepalive-min-ping-interval).
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(VALIDATOR_DEFAULTS.keepalive_time), value_parser = Seconds::positive)]
    pub keepalive_time: Seconds,

    /// Drop a connection whose ping has no answer within this long, and reconnect.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(VALIDATOR_DEFAULTS.keepalive_timeout), value_parser = Seconds::positive)]
    pub keepalive_timeout: Seconds,

    /// The request's DPoP proof (RFC 9449), read from FILE ('-': stdin): the tokens came with
    /// the DPoP scheme. Needs --http-method and --http-url.
    #[arg(long, value_name = "FILE", requires_all = ["http_method", "http_url"], conflicts_with = "stream")]
    pub dpop_proof_file: Option<PathBuf>,

    /// The method of the request the proof was made for (its htm).
    #[arg(long, value_name = "METHOD", requires = "dpop_proof_file")]
    pub http_method: Option<String>,

    /// The URL of the request the proof was made for (its htu; the query is ignored).
    #[arg(long, value_name = "URL", requires = "dpop_proof_file")]
    pub http_url: Option<String>,

    /// The client certificate the request came with (PEM or DER), for certificate-bound tokens
    /// (RFC 8705).
    #[arg(long, value_name = "FILE", conflicts_with = "stream")]
    pub client_cert: Option<PathBuf>,
}

impl ValidateArgs {
    /// How the tokens given were presented, read from the files named.
    fn presented(&self) -> Result<Presented, ClientError> {
        let mut presented = Presented::default();
        if let Some(path) = &self.dpop_proof_file {
            presented.dpop_proof =
                crate::token_file::read(path, "--dpop-proof-file").map_err(ClientError::Input)?;
            presented.http_method = self.http_method.clone().unwrap_or_default();
            presented.http_url = self.http_url.clone().unwrap_or_default();
        }
        if let Some(path) = &self.client_cert {
            presented.client_certificate = std::fs::read(path).map_err(|e| {
                ClientError::Input(format!(
                    "--client-cert: cannot read {}: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(presented)
    }
}

/// A signing key and the kid to name it by.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// PEM private key (RSA of 2048 bits or more, EC P-256/P-384, Ed25519), e.g. from
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`.
    #[arg(long, value_name = "PEM")]
    pub key: PathBuf,
    /// Key id, in the JWKS and in each token's header.
    #[arg(long, value_name = "KID")]
    pub kid: String,
    /// Signing algorithm; by default RS256, ES256, ES384 or EdDSA after the key's type.
    #[arg(long, value_name = "ALG")]
    pub alg: Option<String>,
}

/// What `token v1 mint` signs.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// `iss`: the issuer, one the server accepts (--token-issuer).
    #[arg(long)]
    pub issuer: String,
    /// `sub`: whose token it is.
    #[arg(long)]
    pub subject: String,
    /// `aud`, repeatable.
    #[arg(long)]
    pub audience: Vec<String>,
    /// A scope, repeatable; the token's `scope` is them space separated.
    #[arg(long)]
    pub scope: Vec<String>,
    /// Seconds from now to `exp`.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..))]
    pub ttl: u32,
    /// Tokens to print, each with its own `jti`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
}

/// The CamelCase name of a verdict, as the text output prints it.
fn verdict_name(answer: &TokenV1Output) -> &'static str {
    match answer.verdict.enum_value_or_default() {
        TokenV1Verdict::TOKEN_V1_VALID => "Valid",
        TokenV1Verdict::TOKEN_V1_MALFORMED => "Malformed",
        TokenV1Verdict::TOKEN_V1_BAD_SIGNATURE => "BadSignature",
        TokenV1Verdict::TOKEN_V1_UNKNOWN_KEY => "UnknownKey",
        TokenV1Verdict::TOKEN_V1_UNSUPPORTED_ALGORITHM => "UnsupportedAlgorithm",
        TokenV1Verdict::TOKEN_V1_EXPIRED => "Expired",
        TokenV1Verdict::TOKEN_V1_NOT_YET_VALID => "NotYetValid",
        TokenV1Verdict::TOKEN_V1_WRONG_ISSUER => "WrongIssuer",
        TokenV1Verdict::TOKEN_V1_WRONG_AUDIENCE => "WrongAudience",
        TokenV1Verdict::TOKEN_V1_REVOKED => "Revoked",
        TokenV1Verdict::TOKEN_V1_UNAVAILABLE => "Unavailable",
        TokenV1Verdict::TOKEN_V1_INACTIVE => "Inactive",
        TokenV1Verdict::TOKEN_V1_INVALID_DPOP_PROOF => "InvalidDpopProof",
        TokenV1Verdict::TOKEN_V1_USE_DPOP_NONCE => "UseDpopNonce",
        TokenV1Verdict::TOKEN_V1_WRONG_BINDING => "WrongBinding",
        TokenV1Verdict::TOKEN_V1_VERDICT_UNSPECIFIED => "Unspecified",
    }
}

/// `[200] Valid: sub=alice iss=... aud=api exp=... scopes=read,write jti=...`, or
/// `[401] Expired: the token expired at ...`.
pub(super) fn answer_line(answer: &TokenV1Output) -> String {
    let verdict = verdict_name(answer);
    if answer.verdict.enum_value_or_default() != TokenV1Verdict::TOKEN_V1_VALID {
        return format!(
            "[{}] {verdict}: {}",
            answer.status.code, answer.status.message
        );
    }
    let mut line = format!(
        "[{}] {verdict}: sub={} iss={} aud={} exp={} scopes={}",
        answer.status.code,
        answer.subject,
        answer.issuer,
        answer.audience.join(","),
        rfc3339(answer.expires_at),
        answer.scopes.join(",")
    );
    if !answer.token_id.is_empty() {
        line.push_str(&format!(" jti={}", answer.token_id));
    }
    line
}

/// Writes one answer in `format`.
fn print(
    out: &mut dyn Write,
    format: OutputFormat,
    answer: TokenAnswer,
) -> Result<(), ClientError> {
    match format {
        OutputFormat::Text => writeln!(out, "{}", answer_line(answer.output()))?,
        OutputFormat::Json => {
            let mut answer = answer.into_output().map_err(|e| {
                ClientError::Input(format!(
                    "the server's answer has claims that do not decode: {e}"
                ))
            })?;
            // The validator's own request id means nothing to the reader: left out.
            answer.request_id = 0;
            writeln!(out, "{}", to_json(&answer))?
        }
    }
    Ok(())
}

/// Turns a validation's error into the client's, naming the server and which input it was.
fn failed(target: &Target, what: &str, e: ValidateError) -> ClientError {
    match e {
        ValidateError::Refused { code, message } => ClientError::Failed {
            server: target.server.to_owned(),
            code,
            detail: message,
        },
        other => ClientError::Unreachable {
            server: target.server.to_owned(),
            detail: format!("{what}: {other}"),
        },
    }
}

/// `token v1 validate`: the tokens given, or stdin's lines with `--stream`.
pub(super) fn validate(
    target: &Target,
    args: &ValidateArgs,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let config = ValidatorConfig {
        timeout: target.timeout,
        keepalive_time: args.keepalive_time.into(),
        keepalive_timeout: args.keepalive_timeout.into(),
        max_in_flight: STREAM_WINDOW,
        ..ValidatorConfig::default()
    };
    let validator =
        TokenValidator::connect(target.server, target.tls, config).map_err(ClientError::from)?;
    let result = if args.stream {
        let stdin = std::io::stdin();
        validate_lines(target, &validator, &mut stdin.lock(), out)
    } else {
        let presented = args.presented()?;
        let deadline = std::time::Instant::now() + target.timeout;
        let pending: Vec<PendingValidation> = args
            .tokens
            .iter()
            .map(|token| validator.validate_presented_async_before(token, &presented, deadline))
            .collect();
        pending.into_iter().enumerate().try_for_each(|(n, answer)| {
            let answer = futures::executor::block_on(answer)
                .map_err(|e| failed(target, &format!("token {}", n + 1), e))?;
            print(out, target.output, answer)
        })
    };
    validator.close_within(Duration::ZERO);
    result
}

/// Validates each line of `input` as a token, keeping [`STREAM_WINDOW`] outstanding, and prints
/// the answers in input order.
fn validate_lines(
    target: &Target,
    validator: &TokenValidator,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let mut out = std::io::BufWriter::new(out);
    let mut window: VecDeque<(u64, PendingValidation)> = VecDeque::with_capacity(STREAM_WINDOW);
    let next = |window: &mut VecDeque<(u64, PendingValidation)>,
                out: &mut std::io::BufWriter<&mut dyn Write>|
     -> Result<(), ClientError> {
        let Some((line, mut pending)) = window.pop_front() else {
            return Ok(());
        };
        let answer = match (&mut pending).now_or_never() {
            Some(answer) => answer,
            None => {
                // Show what is answered before waiting for more.
                out.flush()?;
                futures::executor::block_on(pending)
            }
        };
        let answer = answer.map_err(|e| failed(target, &format!("line {line}"), e))?;
        print(out, target.output, answer)
    };
    let mut line = Vec::with_capacity(MAX_TOKEN_BYTES + 1);
    let mut number = 0;
    while let Some(length) = read_line_at_most(input, MAX_TOKEN_BYTES, &mut line)
        .map_err(|e| ClientError::Input(format!("stdin, line {}: {e}", number + 1)))?
    {
        number += 1;
        if window.len() == STREAM_WINDOW {
            next(&mut window, &mut out)?;
        }
        // Refused here, in place, what cannot be a token: the answers due still all print.
        let pending = if length > MAX_TOKEN_BYTES {
            PendingValidation::answered(too_long(length))
        } else {
            match std::str::from_utf8(&line) {
                Ok(token) => validator.validate_async(token.trim()),
                Err(_) => PendingValidation::answered(malformed(
                    "the line is not UTF-8; a token is base64url parts joined by dots".to_owned(),
                )),
            }
        };
        window.push_back((number, pending));
    }
    while !window.is_empty() {
        next(&mut window, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Reads one line of `input` (its end of line left out) into `line`, keeping at most `max` + 1
/// of its bytes however long it is, so that memory stays bounded; returns its whole length, or
/// None at the end of the input.
fn read_line_at_most(
    input: &mut dyn BufRead,
    max: usize,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    line.clear();
    let mut length = 0usize;
    let mut any = false;
    let mut last = None;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(length));
        }
        any = true;
        let (part, used, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        let room = (max + 1).saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        length = length.saturating_add(part.len());
        last = part.last().copied().or(last);
        input.consume(used);
        if ended {
            if last == Some(b'\r') {
                length -= 1;
                line.truncate(length.min(line.len()));
            }
            return Ok(Some(length));
        }
    }
}

/// What `token v1 revoke` names.
pub(super) enum RevokeTarget {
    /// A token's `jti`.
    TokenId(String),
    /// The token itself.
    Token(String),
}

impl RevokeTarget {
    /// The token id given, or the token read from `token_file`.
    pub(super) fn of(
        token_id: Option<&String>,
        token_file: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        match (token_id, token_file) {
            (Some(id), _) => Ok(Self::TokenId(id.clone())),
            (None, Some(path)) => crate::token_file::read(path, "--token-file")
                .map(Self::Token)
                .map_err(ClientError::Input),
            (None, None) => Err(ClientError::Input(
                "give --token-id JTI or --token-file FILE".to_owned(),
            )),
        }
    }
}

/// `token v1 revoke`: prints the server's status line.
pub(super) fn revoke(
    conn: &Connection,
    target: &RevokeTarget,
    expires_at: Option<i64>,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let client = TokenV1ProtoClient::new(conn.channel.clone());
    let mut request = TokenV1RevokeInput::new();
    match target {
        RevokeTarget::TokenId(id) => request.token_id.clone_from(id),
        RevokeTarget::Token(token) => request.token.clone_from(token),
    }
    request.expires_at = expires_at.unwrap_or(0);
    let answer = client
        .revoke_opt(&request, conn.call_option())
        .map_err(|e| conn.error(e))?;
    write_answer(out, conn.output, &answer, |out| {
        writeln!(out, "[{}] {}", answer.code, answer.message)
    })
}

/// `token v1 jwks`: prints `{"keys": [the key's JWK]}`.
pub(super) fn jwks(key: &KeyArgs, out: &mut dyn Write) -> Result<(), ClientError> {
    let signing =
        SigningKey::read(&key.key, &key.kid, key.alg.as_deref()).map_err(ClientError::Input)?;
    let jwk = signing.jwk().map_err(ClientError::Input)?;
    writeln!(out, "{}", json!({ "keys": [jwk] }))?;
    Ok(())
}

/// `token v1 mint`: prints `--count` tokens.
pub(super) fn mint(args: &MintArgs, out: &mut dyn Write) -> Result<(), ClientError> {
    let key = &args.key;
    let signing =
        SigningKey::read(&key.key, &key.kid, key.alg.as_deref()).map_err(ClientError::Input)?;
    let now = crate::time::unix_now();
    let mut claims = json!({
        "iss": args.issuer,
        "sub": args.subject,
        "iat": now,
        "nbf": now,
        "exp": now + i64::from(args.ttl),
    });
    match args.audience.as_slice() {
        [] => {}
        [one] => claims["aud"] = json!(one),
        many => claims["aud"] = json!(many),
    }
    if !args.scope.is_empty() {
        claims["scope"] = json!(args.scope.join(" "));
    }
    // A unique prefix per run, so that tokens of two runs never share a jti.
    let run = format!("{:016x}", fastrand::u64(..));
    let mut out = std::io::BufWriter::new(out);
    for n in 0..args.count {
        claims["jti"] = json!(format!("{run}-{n}"));
        writeln!(
            out,
            "{}",
            signing.sign(&claims).map_err(ClientError::Input)?
        )?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::read_line_at_most;

    #[test]
    fn a_line_is_read_whole_or_cut_at_the_limit_with_its_whole_length() {
        let long = "a".repeat(100);
        let input = [format!("abc\r\n\n{long}\r\n").as_bytes(), b"x\xff\nlast"].concat();
        let mut input = std::io::BufReader::with_capacity(7, input.as_slice());
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while let Some(length) = read_line_at_most(&mut input, 10, &mut line).expect("reads") {
            lines.push((length, line.clone()));
        }
        let expected: Vec<(usize, Vec<u8>)> = vec![
            (3, b"abc".to_vec()),
            (0, Vec::new()),
            (100, vec![b'a'; 11]),
            (2, b"x\xff".to_vec()),
            (4, b"last".to_vec()),
        ];
        assert_eq!(lines, expected);
    }
}
