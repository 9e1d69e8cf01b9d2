//! A valid token's claims on the wire: the verified JSON payload as a `google.protobuf.Struct`.

use protobuf::well_known_types::struct_::{value, ListValue, NullValue, Struct, Value};
use protobuf::Message as _;
use serde_json::{Map, Value as Json};

/// JSON objects and lists nested deeper than this are sent as their JSON text: each level costs
/// a Struct three protobuf message levels, and decoders stop at 100 (rust-protobuf's and
/// Python's default), so a deeper claim would make the whole answer undecodable, or end an app's
/// stream. Real tokens nest a few levels.
pub const MAX_CLAIM_DEPTH: usize = 16;

/// The field number of `TokenV1Output.claims`.
pub const CLAIMS_FIELD: u32 = 10;

/// `claims` as the encoded Struct that [`CLAIMS_FIELD`] carries.
pub fn encode_claims(claims: &Map<String, Json>) -> Vec<u8> {
    // Encoding a Struct built here cannot fail: no size limit is near.
    claims_struct(claims).write_to_bytes().unwrap_or_default()
}

/// `claims` as a Struct: numbers become doubles, as a Struct holds them (and as JSON readers take
/// them).
fn claims_struct(claims: &Map<String, Json>) -> Struct {
    object(claims, 1)
}

fn object(fields: &Map<String, Json>, depth: usize) -> Struct {
    let mut object = Struct::new();
    object.fields = fields
        .iter()
        .map(|(name, value)| (name.clone(), struct_value(value, depth)))
        .collect();
    object
}

fn struct_value(value: &Json, depth: usize) -> Value {
    let nested = matches!(value, Json::Array(_) | Json::Object(_));
    let mut out = Value::new();
    out.kind = Some(match value {
        _ if nested && depth >= MAX_CLAIM_DEPTH => value::Kind::StringValue(value.to_string()),
        Json::Null => value::Kind::NullValue(NullValue::NULL_VALUE.into()),
        Json::Bool(b) => value::Kind::BoolValue(*b),
        // Always Some without serde_json's arbitrary_precision, which is off.
        Json::Number(n) => value::Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => value::Kind::StringValue(s.clone()),
        Json::Array(items) => {
            let mut list = ListValue::new();
            list.values = items.iter().map(|v| struct_value(v, depth + 1)).collect();
            value::Kind::ListValue(list)
        }
        Json::Object(fields) => value::Kind::StructValue(object(fields, depth + 1)),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::TokenV1Output;

    #[test]
    fn the_field_number_is_the_contracts() {
        use protobuf::MessageFull as _;
        let field = TokenV1Output::descriptor()
            .field_by_name("claims")
            .expect("TokenV1Output.claims");
        assert_eq!(u32::try_from(field.number()), Ok(CLAIMS_FIELD));
    }

    #[test]
    fn every_json_type_becomes_its_struct_kind() {
        let json = serde_json::json!({
            "s": "x", "n": 3, "f": 0.5, "b": true, "z": null, "l": [1, "a"], "o": {"k": [{}]}
        });
        let Json::Object(claims) = json else {
            panic!("an object")
        };
        let got = protobuf_json_mapping::print_to_string(&claims_struct(&claims)).expect("prints");
        let got: Json = serde_json::from_str(&got).expect("JSON");
        assert_eq!(
            got,
            serde_json::json!({
                "s": "x", "n": 3.0, "f": 0.5, "b": true, "z": null, "l": [1.0, "a"],
                "o": {"k": [{}]}
            })
        );
    }

    #[test]
    fn claims_nested_as_deep_as_json_allows_still_decode() {
        // serde_json reads up to 128 levels; the answer must decode in any client.
        let deep = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        let claims: Map<String, Json> =
            serde_json::from_str(&format!(r#"{{"deep": {deep}, "flat": 1}}"#)).expect("JSON");
        let mut answer = TokenV1Output::new();
        answer
            .special_fields
            .mut_unknown_fields()
            .add_length_delimited(CLAIMS_FIELD, encode_claims(&claims));
        let bytes = answer.write_to_bytes().expect("encodes");
        let decoded = TokenV1Output::parse_from_bytes(&bytes).expect("decodes");
        let mut value = &decoded.claims.fields["deep"];
        for _ in 1..MAX_CLAIM_DEPTH {
            value = &value.list_value().values[0];
        }
        assert!(
            value.string_value().starts_with("[[["),
            "the rest as JSON text"
        );
        assert_eq!(decoded.claims.fields["flat"].number_value(), 1.0);
    }
}
