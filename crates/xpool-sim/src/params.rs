//! Typed access to request parameters, from a JSON body or a query string alike.
//!
//! Every accessor turns a bad value into `1010002 "Invalid request. <name>"`. Integers may be JSON
//! numbers or numeric strings, booleans `true`/`false` or their strings; empty strings and nulls
//! count as absent; unknown fields are ignored.

use std::ops::RangeInclusive;

use axum::extract::Query;
use axum::http::Uri;
use serde_json::{Map, Value};

use super::reply::Fail;
use xpool_platform::number::{is_area_code, is_global, is_valid_user_data};

/// The parameters of one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    map: Map<String, Value>,
}

impl Params {
    /// Parses a JSON body, which must be an object.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Fail> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Ok(Params { map }),
            _ => Err(Fail::invalid("body")),
        }
    }

    /// Decodes the query string of `uri` (an unescaped `+` becomes a space).
    pub fn from_query(uri: &Uri) -> Result<Self, Fail> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|_| Fail::invalid("query"))?;
        let mut map = Map::new();
        for (key, value) in pairs {
            map.entry(key).or_insert(Value::String(value));
        }
        Ok(Params { map })
    }

    #[cfg(test)]
    pub fn from_value(value: Value) -> Self {
        match value {
            Value::Object(map) => Params { map },
            _ => Params::default(),
        }
    }

    fn raw(&self, name: &str) -> Option<&Value> {
        match self.map.get(name)? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            v => Some(v),
        }
    }

    /// True when the parameter is present and not empty.
    pub fn has(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// True when the parameter is there as an empty string (which [`Params::str`] reads as
    /// absent).
    pub fn is_empty_string(&self, name: &str) -> bool {
        matches!(self.map.get(name), Some(Value::String(s)) if s.is_empty())
    }

    /// A string; JSON numbers are taken as their decimal text.
    pub fn str(&self, name: &str) -> Result<Option<String>, Fail> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Fail::invalid(name)),
        }
    }

    /// A required string.
    pub fn req_str(&self, name: &str) -> Result<String, Fail> {
        self.str(name)?.ok_or_else(|| Fail::invalid(name))
    }

    /// A string limited to `max` characters.
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, Fail> {
        let value = self.str(name)?;
        match &value {
            Some(s) if s.chars().count() > max => Err(Fail::invalid(name)),
            _ => Ok(value),
        }
    }

    /// A number in global format.
    pub fn number(&self, name: &str) -> Result<Option<String>, Fail> {
        let value = self.str(name)?;
        match &value {
            Some(n) if !is_global(n) => Err(Fail::invalid(name)),
            _ => Ok(value),
        }
    }

    /// A required number in global format.
    pub fn req_number(&self, name: &str) -> Result<String, Fail> {
        self.number(name)?.ok_or_else(|| Fail::invalid(name))
    }

    /// `areaCode`: a city code of digits.
    pub fn area_code(&self) -> Result<Option<String>, Fail> {
        let value = self.str("areaCode")?;
        match &value {
            Some(code) if !is_area_code(code) => Err(Fail::invalid("areaCode")),
            _ => Ok(value),
        }
    }

    /// `areaMatchMode`: false for strict (`"0"` or absent), true for non-strict (`"1"`).
    pub fn loose_area_match(&self) -> Result<bool, Fail> {
        match self.one_of("areaMatchMode", &["0", "1"])?.as_deref() {
            Some("1") => Ok(true),
            _ => Ok(false),
        }
    }

    /// An unsigned integer.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, Fail> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| Fail::invalid(name)),
            Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map(Some).map_err(|_| Fail::invalid(name))
            }
            Some(_) => Err(Fail::invalid(name)),
        }
    }

    /// An unsigned integer within `range`.
    pub fn u64_in(&self, name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, Fail> {
        match self.u64(name)? {
            Some(n) if !range.contains(&n) => Err(Fail::invalid(name)),
            value => Ok(value),
        }
    }

    /// A boolean.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, Fail> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" => Ok(Some(false)),
            Some(_) => Err(Fail::invalid(name)),
        }
    }

    /// A string that must be one of `allowed`.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, Fail> {
        let value = self.str(name)?;
        match &value {
            Some(v) if !allowed.contains(&v.as_str()) => Err(Fail::invalid(name)),
            _ => Ok(value),
        }
    }

    /// `userData` (binding-api.md §0.4).
    pub fn user_data(&self) -> Result<Option<String>, Fail> {
        let value = self.str("userData")?;
        match &value {
            Some(data) if !is_valid_user_data(data) => Err(Fail::invalid("userData")),
            _ => Ok(value),
        }
    }

    /// A JSON object (tone settings such as `preVoice`), kept as it came.
    pub fn object(&self, name: &str) -> Result<Option<Value>, Fail> {
        match self.raw(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(Fail::invalid(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_and_booleans_accept_both_forms() {
        let p = Params::from_value(
            json!({"a": 7, "b": "8", "c": -1, "d": "x", "t": "true", "f": false}),
        );
        assert_eq!(p.u64("a").unwrap(), Some(7));
        assert_eq!(p.u64("b").unwrap(), Some(8));
        assert_eq!(p.u64("c").unwrap_err().desc, "Invalid request. c");
        assert!(p.u64("d").is_err());
        assert_eq!(p.u64("missing").unwrap(), None);
        assert_eq!(p.bool("t").unwrap(), Some(true));
        assert_eq!(p.bool("f").unwrap(), Some(false));
        assert!(p.bool("a").is_err());
        assert!(p.u64_in("a", 0..=5).is_err());
    }

    #[test]
    fn an_unescaped_plus_in_a_query_fails_the_number_check() {
        let uri: Uri = "/p?relationNum=+8617000000001&callerNum=%2B8613800000001"
            .parse()
            .unwrap();
        let p = Params::from_query(&uri).unwrap();
        assert_eq!(
            p.number("relationNum").unwrap_err().desc,
            "Invalid request. relationNum"
        );
        assert_eq!(
            p.number("callerNum").unwrap().as_deref(),
            Some("+8613800000001")
        );
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(Params::from_json(b"[1]").is_err());
        assert!(Params::from_json(b"{").is_err());
        assert!(Params::from_json(b"").is_err());
        assert!(Params::from_json(br#"{"x":1}"#).is_ok());
    }
}
