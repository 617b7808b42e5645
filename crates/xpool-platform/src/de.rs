//! Tolerant (de)serializers: the platform and its samples send numbers as strings and booleans as
//! `"true"`/`"false"` (binding-api.md §0.2). Reading accepts both; writing uses the documented type.

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

fn loose_u64<'de, D: Deserializer<'de>>(value: Loose) -> Result<u64, D::Error> {
    match value {
        Loose::U64(n) => Ok(n),
        Loose::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::invalid_value(Unexpected::Str(&s), &"an unsigned integer")),
        Loose::I64(n) => Err(de::Error::invalid_value(
            Unexpected::Signed(n),
            &"an unsigned integer",
        )),
        Loose::F64(n) => Err(de::Error::invalid_value(
            Unexpected::Float(n),
            &"an unsigned integer",
        )),
        Loose::Bool(b) => Err(de::Error::invalid_type(
            Unexpected::Bool(b),
            &"an unsigned integer",
        )),
    }
}

/// An optional unsigned integer sent as a JSON number or a numeric string.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Loose>::deserialize(d)? {
        None => Ok(None),
        Some(Loose::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => loose_u64::<D>(v).map(Some),
    }
}

/// An unsigned integer sent as a JSON number or a numeric string; absent or null is 0.
pub fn u64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_u64(d).map(Option::unwrap_or_default)
}

/// An optional boolean sent as JSON `true`/`false` or the strings `"true"`/`"false"`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Loose>::deserialize(d)? {
        None => Ok(None),
        Some(Loose::Bool(b)) => Ok(Some(b)),
        Some(Loose::Str(s)) => match s.trim() {
            "" => Ok(None),
            t if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
            t if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
            _ => Err(de::Error::invalid_value(
                Unexpected::Str(&s),
                &"true or false",
            )),
        },
        Some(_) => Err(de::Error::custom("expected true or false")),
    }
}

/// A string that some platform versions send as a JSON number (`resultcode`, ids, enum codes).
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_string(d).map(Option::unwrap_or_default)
}

/// An optional string that may arrive as a JSON number.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Loose>::deserialize(d)? {
        None => None,
        Some(Loose::Str(s)) => Some(s),
        Some(Loose::U64(n)) => Some(n.to_string()),
        Some(Loose::I64(n)) => Some(n.to_string()),
        Some(Loose::F64(n)) => Some(n.to_string()),
        Some(Loose::Bool(b)) => Some(b.to_string()),
    })
}

/// An optional object that some senders wrap in a one-element array (the X-mode Block answer's
/// `connectInfo` / `closeInfo`, notifications.md §1.5): either form, the first element of an array.
pub fn opt_one_or_first<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(v)) => Some(v),
        Some(OneOrMany::Many(v)) => v.into_iter().next(),
    })
}

/// Writes an optional boolean the way the docs type it: the string `"true"` or `"false"`.
pub fn ser_opt_bool_str<S: Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(if *b { "true" } else { "false" }),
        None => s.serialize_none(),
    }
}

/// Writes an optional integer as a string, for fields the docs type `String` (AXYB durations).
pub fn ser_opt_u64_str<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(n) => s.serialize_str(&n.to_string()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Probe {
        #[serde(default, deserialize_with = "super::opt_u64")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "super::opt_bool")]
        b: Option<bool>,
        #[serde(default, deserialize_with = "super::string")]
        s: String,
    }

    fn probe(json: &str) -> Result<Probe, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_and_booleans_are_read_from_either_form() {
        let want = Probe {
            n: Some(7),
            b: Some(true),
            s: "0".into(),
        };
        assert_eq!(probe(r#"{"n":7,"b":true,"s":"0"}"#).unwrap(), want);
        assert_eq!(probe(r#"{"n":"7","b":"true","s":0}"#).unwrap(), want);
        assert_eq!(
            probe(r#"{"other":1}"#).unwrap(),
            Probe {
                n: None,
                b: None,
                s: String::new()
            }
        );
        assert_eq!(
            probe(r#"{"n":null,"b":""}"#).unwrap(),
            Probe {
                n: None,
                b: None,
                s: String::new()
            }
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(probe(r#"{"n":"seven"}"#).is_err());
        assert!(probe(r#"{"n":-1}"#).is_err());
        assert!(probe(r#"{"b":"yes"}"#).is_err());
    }
}
