//! The validator's answers as they come off the wire: each `TokenV1Output` read as generated
//! code reads it, except `claims`, kept as the bytes it came in and decoded only when an app asks
//! for it. Decoding the Struct (a map of names, each value a message) was most of the
//! validator's CPU per answer, and most apps read the verdict, subject and scopes only.

use grpcio::{GrpcSlice, Marshaller, MessageReader, Method, MethodType};
use protobuf::rt::{read_singular_message_into_field, read_unknown_or_skip_group};
use protobuf::well_known_types::struct_::Struct;
use protobuf::{CodedInputStream, Message as _, UnknownFields};

use crate::codec::decode_with;
use crate::proto::{TokenV1Input, TokenV1InputBatch, TokenV1Output};

/// One validation's answer: the server's `TokenV1Output`, its claims decoded when asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenAnswer {
    /// Everything but `claims`, which is unset here.
    output: TokenV1Output,
    /// The encoded `claims` Struct (field 10), empty when the answer has none.
    claims: Vec<u8>,
}

impl TokenAnswer {
    /// The answer: verdict, status, subject, issuer, audience, expiry, scopes and token id. Its
    /// `claims` field is unset: [`Self::claims`] decodes them.
    pub fn output(&self) -> &TokenV1Output {
        &self.output
    }

    /// Every claim of the verified payload (empty unless valid), decoded now.
    pub fn claims(&self) -> protobuf::Result<Struct> {
        Struct::parse_from_bytes(&self.claims)
    }

    /// The whole answer, claims decoded, as the generated `TokenV1Output`.
    pub fn into_output(self) -> protobuf::Result<TokenV1Output> {
        let claims = self.claims()?;
        let mut output = self.output;
        if !self.claims.is_empty() {
            output.claims = Some(claims).into();
        }
        Ok(output)
    }
}

impl From<TokenV1Output> for TokenAnswer {
    /// An answer made here (a token refused before it is sent), or by generated code.
    fn from(mut output: TokenV1Output) -> Self {
        let claims = output
            .claims
            .take()
            .map(|claims| claims.write_to_bytes().unwrap_or_default())
            .unwrap_or_default();
        Self { output, claims }
    }
}

/// `ValidateBatches`, its answers read by [`decode_batch`].
pub(super) const VALIDATE_BATCHES: Method<TokenV1InputBatch, Vec<TokenAnswer>> = Method {
    ty: MethodType::Duplex,
    name: "/TokenV1Proto/ValidateBatches",
    req_mar: Marshaller {
        ser: grpcio::pb_ser,
        de: crate::codec::decode,
    },
    resp_mar: Marshaller {
        ser: never_sent,
        de: decode_batch,
    },
};

/// `ValidateStream`, for servers without batches, its answers read by [`decode_one`].
pub(super) const VALIDATE_STREAM: Method<TokenV1Input, TokenAnswer> = Method {
    ty: MethodType::Duplex,
    name: "/TokenV1Proto/ValidateStream",
    req_mar: Marshaller {
        ser: grpcio::pb_ser,
        de: crate::codec::decode,
    },
    resp_mar: Marshaller {
        ser: never_sent,
        de: decode_one,
    },
};

/// A client only reads answers.
fn never_sent<T>(_: &T, _: &mut GrpcSlice) -> grpcio::Result<()> {
    Err(grpcio::Error::Codec("a client sends no answers".into()))
}

/// A `TokenV1OutputBatch`: its answers, in order.
fn decode_batch(reader: MessageReader) -> grpcio::Result<Vec<TokenAnswer>> {
    decode_with(reader, "TokenV1OutputBatch", read_batch)
}

fn read_batch(input: &mut CodedInputStream<'_>) -> protobuf::Result<Vec<TokenAnswer>> {
    let mut answers = Vec::new();
    let mut unknown = UnknownFields::new();
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match tag {
            // Field 1, `outputs`, each length-delimited.
            10 => {
                let length = input.read_raw_varint64()?;
                let outer = input.push_limit(length)?;
                let answer = read_answer(input);
                input.pop_limit(outer);
                answers.push(answer?);
            }
            tag => read_unknown_or_skip_group(tag, input, &mut unknown)?,
        }
    }
    Ok(answers)
}

/// One `TokenV1Output`.
fn decode_one(reader: MessageReader) -> grpcio::Result<TokenAnswer> {
    decode_with(reader, "TokenV1Output", read_answer)
}

/// The fields of a `TokenV1Output` up to the end of `input` (or its limit), tag by tag as the
/// generated `merge_from` reads them; a field this version does not know is kept as unknown.
fn read_answer(input: &mut CodedInputStream<'_>) -> protobuf::Result<TokenAnswer> {
    let mut answer = TokenAnswer::default();
    let output = &mut answer.output;
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match tag {
            8 => output.request_id = input.read_uint64()?,
            18 => read_singular_message_into_field(input, &mut output.status)?,
            24 => output.verdict = input.read_enum_or_unknown()?,
            34 => output.subject = input.read_string()?,
            42 => output.issuer = input.read_string()?,
            50 => output.audience.push(input.read_string()?),
            56 => output.expires_at = input.read_int64()?,
            66 => output.scopes.push(input.read_string()?),
            74 => output.token_id = input.read_string()?,
            // Field 10, `claims`: a message field seen twice is the two merged, which is what
            // decoding its encodings one after the other gives.
            82 => {
                let bytes = input.read_bytes()?;
                if answer.claims.is_empty() {
                    answer.claims = bytes;
                } else {
                    answer.claims.extend_from_slice(&bytes);
                }
            }
            tag => {
                read_unknown_or_skip_group(tag, input, output.special_fields.mut_unknown_fields())?
            }
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{StatusOutput, TokenV1OutputBatch, TokenV1Verdict};
    use protobuf::well_known_types::struct_::Value;

    fn valid(id: u64, subject: &str) -> TokenV1Output {
        let mut status = StatusOutput::new();
        status.code = 200;
        status.message = "Valid".to_owned();
        let mut claims = Struct::new();
        let mut sub = Value::new();
        sub.set_string_value(subject.to_owned());
        claims.fields.insert("sub".to_owned(), sub);
        let mut output = TokenV1Output::new();
        output.request_id = id;
        output.status = Some(status).into();
        output.verdict = TokenV1Verdict::TOKEN_V1_VALID.into();
        output.subject = subject.to_owned();
        output.issuer = "https://id.example".to_owned();
        output.audience = vec!["api".to_owned(), "web".to_owned()];
        output.expires_at = 1_900_000_000;
        output.scopes = vec!["read".to_owned()];
        output.token_id = "t-1".to_owned();
        output.claims = Some(claims).into();
        output
    }

    /// Decodes `bytes` as grpcio would hand them to a Marshaller.
    fn read<T>(bytes: &[u8], read: impl FnOnce(&mut CodedInputStream<'_>) -> T) -> T {
        read(&mut CodedInputStream::from_bytes(bytes))
    }

    #[test]
    fn a_batch_reads_as_generated_code_reads_it_claims_when_asked() {
        let mut refused = TokenV1Output::new();
        refused.request_id = 3;
        refused.verdict = TokenV1Verdict::TOKEN_V1_EXPIRED.into();
        let mut batch = TokenV1OutputBatch::new();
        batch.outputs = vec![valid(1, "alice"), refused, valid(2, "bob")];
        let bytes = batch.write_to_bytes().unwrap();
        let answers = read(&bytes, read_batch).unwrap();
        let whole: Vec<TokenV1Output> = answers
            .iter()
            .cloned()
            .map(|answer| answer.into_output().unwrap())
            .collect();
        assert_eq!(whole, batch.outputs);
        assert!(
            answers[0].output().claims.is_none(),
            "decoded only when asked"
        );
        assert_eq!(answers[0].claims().unwrap(), *batch.outputs[0].claims);
        assert_eq!(answers[1].claims().unwrap(), Struct::new());
        assert!(answers[1].clone().into_output().unwrap().claims.is_none());
    }

    #[test]
    fn claims_sent_twice_merge_and_unknown_fields_are_kept() {
        let first = valid(1, "alice");
        let mut second = TokenV1Output::new();
        let mut claims = Struct::new();
        let mut email = Value::new();
        email.set_string_value("a@example.com".to_owned());
        claims.fields.insert("email".to_owned(), email);
        second.claims = Some(claims).into();
        second.special_fields.mut_unknown_fields().add_varint(99, 7);
        let mut bytes = first.write_to_bytes().unwrap();
        bytes.extend(second.write_to_bytes().unwrap());
        // Merged as the protobuf spec says (rust-protobuf's generated code keeps the last one).
        let mut expected = first.clone();
        let mut both = (*first.claims).clone();
        both.fields.extend(second.claims.fields.clone());
        expected.claims = Some(both).into();
        expected.special_fields = second.special_fields.clone();
        let answer = read(&bytes, |input| read_answer(input).unwrap());
        assert_eq!(answer.claims().unwrap().fields.len(), 2);
        assert_eq!(answer.into_output().unwrap(), expected);
    }

    #[test]
    fn a_batch_cut_short_is_an_error() {
        let mut batch = TokenV1OutputBatch::new();
        batch.outputs = vec![valid(1, "alice")];
        let bytes = batch.write_to_bytes().unwrap();
        assert!(read(&bytes[..bytes.len() - 1], read_batch).is_err());
        assert_eq!(read(&[], read_batch).unwrap(), vec![]);
    }

    #[test]
    fn a_broken_answer_is_an_error_and_broken_claims_fail_only_when_read() {
        // Field 4 (subject) not UTF-8.
        let bytes = [0x22, 0x01, 0xff];
        assert!(read(&bytes, read_answer).is_err());
        // Field 1 cut short.
        assert!(read(&[0x08], read_answer).is_err());
        // Claims that are not a Struct (a name that is not UTF-8): the answer is still read.
        let bytes = [0x18, 0x01, 0x52, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff];
        let answer = read(&bytes, read_answer).unwrap();
        assert_eq!(
            answer.output().verdict,
            TokenV1Verdict::TOKEN_V1_VALID.into()
        );
        assert!(answer.claims().is_err());
        assert!(answer.into_output().is_err());
    }

    #[test]
    fn an_answer_made_here_keeps_its_claims() {
        let output = valid(4, "carol");
        let answer = TokenAnswer::from(output.clone());
        assert!(answer.output().claims.is_none());
        assert_eq!(answer.into_output().unwrap(), output);
    }
}
