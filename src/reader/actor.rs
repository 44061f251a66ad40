//! Which field of an access-log line names the actor behind a request (`--correlate`).
//!
//! Common and combined lines (`%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`)
//! have these fields, by name:
//!
//! | name | field |
//! |---|---|
//! | `user` (or `remote-user`) | `%u`, the authenticated user |
//! | `ident` | `%l`, the identd answer |
//! | `request` | `%r`, the whole request line |
//! | `path` (or `target`) | the request target: the second word of `%r`, query string included |
//! | `referer` (or `referrer`) | the first quoted field after the size (combined) |
//! | `user-agent` (or `ua`) | the second quoted field after the size (combined) |
//!
//! For JSON lines the name is the key, taken literally, whatever it is; its value may be a
//! string or a number. Values are compared as logged (escapes left in). An empty value,
//! `-`, `null` or any other JSON type means "no value": such a request names no actor and
//! is not grouped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::reader::access_log::{LogFormat, Scalar, Tail, Token};

/// A field of the common/combined format that can name an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Ident,
    User,
    Request,
    Path,
    Referer,
    UserAgent,
}

impl TextField {
    fn from_name(name: &str) -> Option<TextField> {
        Some(match name.to_ascii_lowercase().as_str() {
            "ident" => TextField::Ident,
            "user" | "remote-user" | "remote_user" => TextField::User,
            "request" => TextField::Request,
            "path" | "target" => TextField::Path,
            "referer" | "referrer" => TextField::Referer,
            "user-agent" | "user_agent" | "useragent" | "ua" => TextField::UserAgent,
            _ => return None,
        })
    }
}

/// The names accepted for common and combined logs, for error messages.
pub const TEXT_FIELD_NAMES: &str = "user, ident, request, path, referer, user-agent";

/// The field named by `--correlate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorField {
    name: String,
    text: Option<TextField>,
}

/// A `--correlate` name that the log's format does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--correlate {0:?}: not a field of the common or combined format; expected one of {TEXT_FIELD_NAMES} (any key for JSON logs)"
)]
pub struct NotATextField(pub String);

impl ActorField {
    pub fn new(name: &str) -> ActorField {
        ActorField {
            name: name.to_owned(),
            text: TextField::from_name(name),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the name can be used on a log of `format` (`Auto` accepts anything: the
    /// format is known only once a line parses).
    pub fn check(&self, format: LogFormat) -> Result<(), NotATextField> {
        match format {
            LogFormat::Common | LogFormat::Combined if self.text.is_none() => {
                Err(NotATextField(self.name.clone()))
            }
            _ => Ok(()),
        }
    }

    /// The actor named by a line that parsed as `format`; `None` when it names none.
    pub fn value<'a>(
        &self,
        format: LogFormat,
        line: &'a str,
    ) -> Result<Option<Cow<'a, str>>, NotATextField> {
        let value = match format {
            LogFormat::Json => json_value(line.trim_ascii(), &self.name),
            _ => {
                let field = self.text.ok_or_else(|| NotATextField(self.name.clone()))?;
                text_value(line.trim_ascii(), field).map(Cow::Borrowed)
            }
        };
        Ok(value.filter(|v| !matches!(v.trim(), "" | "-")))
    }
}

/// The field of a common or combined line; `None` where the line does not have it.
fn text_value(line: &str, field: TextField) -> Option<&str> {
    let open = line.find('[')?;
    let mut head = line[..open].split_ascii_whitespace();
    let _host = head.next()?;
    let ident = head.next();
    match field {
        TextField::Ident => return ident,
        // The user is everything between the ident and the time (Apache escapes blanks,
        // other servers may not).
        TextField::User => {
            let ident = ident?;
            let after_ident = ident.as_ptr() as usize - line.as_ptr() as usize + ident.len();
            return Some(line[after_ident..open].trim());
        }
        _ => {}
    }
    let close = open + line[open..].find(']')?;
    let mut tail = Tail {
        text: line,
        at: close + 1,
    };
    let mut quoted_after_size = 0;
    let mut index = 0;
    while let Ok(Some(token)) = tail.next() {
        match (index, token, field) {
            (0, Token::Quoted(request), TextField::Request) => return Some(request),
            (0, Token::Quoted(request), TextField::Path) => {
                return request.split_ascii_whitespace().nth(1);
            }
            (0, _, TextField::Request | TextField::Path) => return None,
            (3.., Token::Quoted(text), _) => {
                quoted_after_size += 1;
                match (quoted_after_size, field) {
                    (1, TextField::Referer) | (2, TextField::UserAgent) => return Some(text),
                    _ => {}
                }
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// The value of `key` in a JSON object line: a string, or a number as written.
fn json_value<'a>(line: &'a str, key: &str) -> Option<Cow<'a, str>> {
    let mut deserializer = serde_json::Deserializer::from_str(line);
    match (OneKey { key }).deserialize(&mut deserializer).ok()?? {
        Scalar::Str(text) => Some(text),
        Scalar::Int(n) => Some(Cow::Owned(n.to_string())),
        Scalar::Float(x) => Some(Cow::Owned(x.to_string())),
        Scalar::Null | Scalar::Other => None,
    }
}

/// Finds one key of an object, skipping the rest without building anything.
struct OneKey<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for OneKey<'_> {
    type Value = Option<Scalar<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneKey<'_> {
    type Value = Option<Scalar<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && key == self.key {
                found = Some(map.next_value::<Scalar<'de>>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COMBINED: &str = r#"203.0.113.7 id42 alice smith [25/Nov/2026:10:11:12 +0000] "GET /a?k=1 HTTP/1.1" 200 5 "https://ref.example/" "Mozilla/5.0 (X11)" 40213"#;

    fn text(name: &str, line: &str) -> Option<String> {
        ActorField::new(name)
            .value(LogFormat::Combined, line)
            .unwrap()
            .map(Cow::into_owned)
    }

    #[test]
    fn text_fields() {
        assert_eq!(text("ident", COMBINED).as_deref(), Some("id42"));
        assert_eq!(text("user", COMBINED).as_deref(), Some("alice smith"));
        assert_eq!(
            text("request", COMBINED).as_deref(),
            Some("GET /a?k=1 HTTP/1.1")
        );
        assert_eq!(text("path", COMBINED).as_deref(), Some("/a?k=1"));
        assert_eq!(
            text("Referer", COMBINED).as_deref(),
            Some("https://ref.example/")
        );
        assert_eq!(
            text("user-agent", COMBINED).as_deref(),
            Some("Mozilla/5.0 (X11)")
        );
        let common = r#"203.0.113.7 - - [25/Nov/2026:10:11:12 +0000] "GET / HTTP/1.1" 200 5"#;
        assert_eq!(text("user", common), None, "'-' names nobody");
        assert_eq!(text("ident", common), None);
        assert_eq!(text("user-agent", common), None, "common has no agent");
        let escaped = r#"203.0.113.7 - - [25/Nov/2026:10:11:12 +0000] "GET / HTTP/1.1" 200 5 "-" "say \"hi\"""#;
        assert_eq!(text("ua", escaped).as_deref(), Some(r#"say \"hi\""#));
        assert_eq!(text("referer", escaped), None);
    }

    #[test]
    fn json_fields_and_refusals() {
        let field = ActorField::new("api_key");
        let value = |line: &str| {
            field
                .value(LogFormat::Json, line)
                .unwrap()
                .map(Cow::into_owned)
        };
        assert_eq!(value(r#"{"api_key":"k1","x":[1]}"#).as_deref(), Some("k1"));
        assert_eq!(value(r#"{"api_key":1234}"#).as_deref(), Some("1234"));
        assert_eq!(value(r#"{"api_key":"a\"b"}"#).as_deref(), Some("a\"b"));
        for none in [
            r#"{"api_key":""}"#,
            r#"{"api_key":"-"}"#,
            r#"{"api_key":null}"#,
            r#"{"api_key":true}"#,
            r#"{"other":"k1"}"#,
            "not json",
        ] {
            assert_eq!(value(none), None, "{none}");
        }
        assert!(field.check(LogFormat::Combined).is_err());
        assert!(field.check(LogFormat::Json).is_ok());
        assert!(field.value(LogFormat::Common, COMBINED).is_err());
        assert!(ActorField::new("user").check(LogFormat::Common).is_ok());
    }

    proptest! {
        #[test]
        fn any_line_any_field_never_panics(
            line in r#"[0-9a-z. :\[\]"\\/{},-]{0,80}"#,
            field in prop::sample::select(vec!["user", "ident", "request", "path", "referer", "ua", "k"]),
        ) {
            let field = ActorField::new(field);
            for format in [LogFormat::Common, LogFormat::Combined, LogFormat::Json] {
                let _ = field.value(format, &line);
            }
        }
    }
}
