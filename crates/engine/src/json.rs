//! Strict JSON: request bodies (SPEC: Request bodies) and token payloads. writ decides on the values
//! a body holds, so it must read them exactly as the backend will: one JSON
//! value, valid UTF-8, no duplicate key at any depth (a validator reading the
//! last duplicate while the backend reads the first is APISIX CVE-2022-25757),
//! no lone surrogate escapes, at most [`MAX_DEPTH`] levels. serde_json does the
//! reading (UTF-8, escapes, lone surrogates, trailing bytes); the seed below
//! adds what `serde_json::Value` lets through: duplicate keys and depth.

use std::fmt;

use http::HeaderMap;
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 64;

/// Default for `requests.max_json_body`: 1 MiB.
pub const DEFAULT_MAX_JSON_BODY: usize = 1024 * 1024;

/// Why bytes are not strict JSON (the message never quotes the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Parses `bytes` as one strict JSON value (see the module doc).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    // serde_json checks UTF-8 of the whole input as it reads strings; bytes
    // outside strings must be JSON tokens anyway.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| JsonError(clean(&e)))?;
    de.end().map_err(|e| JsonError(clean(&e)))?;
    Ok(value)
}

/// serde_json's message: its own wording, without the position of a byte the
/// reader may not want echoed twice (the column stays: it helps the client).
fn clean(e: &serde_json::Error) -> String {
    format!("the body is not strict JSON: {e}")
}

/// A value at `depth` (the number of arrays and objects around it).
#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Strict {
    fn inner<E: de::Error>(self) -> Result<Strict, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                // The name stays out of the message: it is client bytes.
                return Err(de::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(inner)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Whether `Content-Type` is `application/json` (parameters allowed), and the
/// only one sent.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(http::header::CONTENT_TYPE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    v.as_bytes()
        .split(|&b| b == b';')
        .next()
        .map(|t| t.trim_ascii())
        .is_some_and(|t| t.eq_ignore_ascii_case(b"application/json"))
}

/// The value at a dotted path (`["a", "b"]` is `a.b`) inside objects; `None`
/// when a step is missing or not an object.
pub fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, k| v.as_object()?.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_json() {
        let v = parse_strict(br#"{"a":{"b":[1,2.5,"x",null,true]}}"#).unwrap();
        assert_eq!(
            lookup(&v, &["a".into(), "b".into()]),
            Some(&serde_json::json!([1, 2.5, "x", null, true]))
        );
        assert_eq!(lookup(&v, &["a".into(), "c".into()]), None);
        assert_eq!(
            parse_strict("\"\\ud83d\\ude00\"".as_bytes()).unwrap(),
            Value::String("😀".into())
        );
    }

    #[test]
    fn refuses_what_a_second_parser_could_read_differently() {
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(deep_ok.as_bytes()).is_ok());
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        for (bad, why) in [
            (br#"{"a":1,"a":2}"#.to_vec(), "duplicate key"),
            (br#"{"x":{"y":[{"k":1,"k":1}]}}"#.to_vec(), "duplicate key"),
            (br#"{"a\u0062":1,"ab":2}"#.to_vec(), "duplicate key"),
            (br#""\ud800""#.to_vec(), "escape"),
            (br#""\udc00x""#.to_vec(), "not strict JSON"),
            (br#""\ud800\u0041""#.to_vec(), "not strict JSON"),
            (b"\"\xff\"".to_vec(), "unicode"),
            (b"{} {}".to_vec(), "trailing"),
            (b"".to_vec(), "EOF"),
            (too_deep.into_bytes(), "nesting"),
        ] {
            let e = parse_strict(&bad).unwrap_err();
            assert!(
                e.to_string().contains(why),
                "{}: {e}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn content_type_is_application_json_only() {
        let mut h = HeaderMap::new();
        assert!(!is_json_content_type(&h));
        h.insert(
            "content-type",
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json_content_type(&h));
        h.insert(
            "content-type",
            "application/json-patch+json".parse().unwrap(),
        );
        assert!(!is_json_content_type(&h));
        h.insert("content-type", "text/plain".parse().unwrap());
        h.append("content-type", "application/json".parse().unwrap());
        assert!(!is_json_content_type(&h));
    }
}
