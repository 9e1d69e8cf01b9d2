//! A token part's JSON, read strictly: a member name given twice in one object, at any depth, is
//! refused rather than resolved. RFC 7515 section 4 lets a parser refuse duplicate header names
//! or keep the last; RFC 7519 section 4 says the same of claims. Refusing is the safer reading:
//! a token whose `{"alg":"none","alg":"ES256"}` one library reads one way and another the other
//! way is an attack on whichever reads it differently, and the claims a route's rule or an app
//! reads must be the ones that were verified.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a part's JSON was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum JsonError {
    /// Not JSON (or nested deeper than serde_json's 128 levels).
    Invalid,
    /// An object names this member more than once.
    Duplicate(String),
}

/// Parses `bytes` as one JSON value, refusing duplicate member names.
pub(super) fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let duplicate = RefCell::new(None);
    let mut parser = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict(&duplicate)
        .deserialize(&mut parser)
        .and_then(|value| parser.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(name)) => Err(JsonError::Duplicate(name)),
        (Err(_), None) => Err(JsonError::Invalid),
    }
}

/// One value, as serde_json's own `Value` reads it, but for duplicate names: the first one
/// found is kept in the cell, and the parse fails.
#[derive(Clone, Copy)]
struct Strict<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json never hands over a non-finite number; say so if it ever does.
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if object.contains_key(&name) {
                *self.0.borrow_mut() = Some(name);
                return Err(de::Error::custom("a member name given twice"));
            }
            let value = map.next_value_seed(self)?;
            object.insert(name, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        for json in [
            r#"{"a":1,"b":[true,null,-2,3.5,"x"],"c":{"d":{}},"e":18446744073709551615}"#,
            r#"[1e300, -0, "\u00e9\ud83d\ude00"]"#,
            "7",
            r#""text""#,
        ] {
            let expected: Value = serde_json::from_str(json).unwrap();
            assert_eq!(parse(json.as_bytes()), Ok(expected), "{json}");
        }
    }

    #[test]
    fn a_name_given_twice_is_refused_at_any_depth() {
        for (json, name) in [
            (r#"{"alg":"none","alg":"ES256"}"#, "alg"),
            (r#"{"a":{"b":1,"c":2,"b":3}}"#, "b"),
            (r#"{"a":[{"x":1},{"y":1,"y":2}]}"#, "y"),
            // The same name escaped differently is the same name.
            (r#"{"alg":"ES256","\u0061lg":"none"}"#, "alg"),
        ] {
            assert_eq!(
                parse(json.as_bytes()),
                Err(JsonError::Duplicate(name.to_owned())),
                "{json}"
            );
        }
        assert!(
            parse(br#"{"a":1,"b":{"a":2}}"#).is_ok(),
            "nested objects are scopes"
        );
    }

    #[test]
    fn what_is_not_json_is_invalid() {
        for json in [&b"{"[..], b"{\"a\":1} x", b"\xff", b"", b"{\"a\":1,}"] {
            assert_eq!(parse(json), Err(JsonError::Invalid), "{json:?}");
        }
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::Invalid));
    }
}
