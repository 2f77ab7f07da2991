//! Canonical JSON: the one encoding of an event's payload and metadata that is hashed, stored and
//! served. `canonicalize` reads any JSON text and writes it canonically, in one pass:
//!
//! - no whitespace outside strings;
//! - object members sorted by the UTF-8 bytes of their keys; a key that appears twice in one
//!   object is refused (which of the two was meant cannot be known);
//! - strings with only `"`, `\` and U+0000–U+001F escaped (`\b \t \n \f \r`, else `\u00xx` in
//!   lower case), every other character as itself in UTF-8; an escaped surrogate must be half of
//!   a pair (a lone one is no character and cannot be stored as text);
//! - numbers exactly as written: the literal is kept byte for byte once it matches the JSON
//!   grammar, so `1.50`, `1E3`, `-0` and `123456789012345678901` stay what the client sent.
//!   Nothing is converted to binary floating point, so nothing is rounded;
//! - `true`, `false`, `null` as themselves.
//!
//! The text is parsed by hand rather than through `serde_json::Value`, which would turn numbers
//! into `f64` (and so change them) and keep only the last of two duplicate keys. `docs/audit.md`
//! specifies the same form for verifiers in other languages.

use std::fmt::Write;

/// Arrays and objects nested deeper than this are refused. Each level is one stack frame of the
/// parser, so the bound also keeps the stack small whatever a body holds.
pub const DEPTH_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("not valid JSON at byte {at}: {expected}")]
    Syntax { at: usize, expected: &'static str },
    #[error("the key {0:?} appears twice in one object")]
    DuplicateKey(String),
    #[error("nested deeper than {DEPTH_MAX} levels")]
    TooDeep,
    #[error(
        "a string holds the unpaired surrogate \\u{0:04x}, which is not a Unicode character and \
         cannot be kept as text"
    )]
    LoneSurrogate(u16),
}

/// `text` in canonical form, numbers as written.
pub fn canonicalize(text: &str) -> Result<String, JsonError> {
    canonicalize_numbers(text, &mut |literal, out| out.push_str(literal))
}

/// `text` in canonical form, each number literal written by `number`: for a verifier that wants
/// to show which other spelling of the same numbers an old hash covered.
pub fn canonicalize_numbers(
    text: &str,
    number: &mut dyn FnMut(&str, &mut String),
) -> Result<String, JsonError> {
    let mut parser = Parser {
        text: text.as_bytes(),
        at: 0,
        number,
    };
    let mut out = String::with_capacity(text.len());
    parser.skip_whitespace();
    parser.value(&mut out, 0)?;
    parser.skip_whitespace();
    if parser.at != parser.text.len() {
        return Err(parser.syntax("the end of the text"));
    }
    Ok(out)
}

/// `value` serialized by serde and put in canonical form: how the ledger encodes what it writes
/// itself (payloads, envelopes). `None` only if `value` cannot be serialized, which for the
/// ledger's own plain structs does not happen; an empty text in its place would be refused
/// wherever an event is read back.
pub fn to_canonical<T: serde::Serialize>(value: &T) -> Option<String> {
    let text = serde_json::to_string(value).ok()?;
    canonicalize(&text).ok()
}

/// `s` as a canonical JSON string, quotes included.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            // Writing to a String cannot fail.
            c if (c as u32) < 0x20 => drop(write!(out, "\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a, 'n> {
    text: &'a [u8],
    at: usize,
    number: &'n mut dyn FnMut(&str, &mut String),
}

impl Parser<'_, '_> {
    fn syntax(&self, expected: &'static str) -> JsonError {
        JsonError::Syntax {
            at: self.at,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), JsonError> {
        if self.peek() != Some(byte) {
            return Err(self.syntax(expected));
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(out, depth + 1),
            Some(b'[') => self.array(out, depth + 1),
            Some(b'"') => {
                let s = self.string()?;
                write_string(out, &s);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => self.number(out),
            Some(b't') => self.word("true", out),
            Some(b'f') => self.word("false", out),
            Some(b'n') => self.word("null", out),
            _ => Err(self.syntax("a value")),
        }
    }

    fn word(&mut self, word: &'static str, out: &mut String) -> Result<(), JsonError> {
        if !self.text[self.at..].starts_with(word.as_bytes()) {
            return Err(self.syntax(word));
        }
        self.at += word.len();
        out.push_str(word);
        Ok(())
    }

    fn array(&mut self, out: &mut String, depth: usize) -> Result<(), JsonError> {
        if depth > DEPTH_MAX {
            return Err(JsonError::TooDeep);
        }
        self.at += 1;
        out.push('[');
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            out.push(']');
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            self.value(out, depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => out.push(','),
                Some(b']') => break,
                _ => return Err(self.syntax("`,` or `]`")),
            }
            self.at += 1;
        }
        self.at += 1;
        out.push(']');
        Ok(())
    }

    fn object(&mut self, out: &mut String, depth: usize) -> Result<(), JsonError> {
        if depth > DEPTH_MAX {
            return Err(JsonError::TooDeep);
        }
        self.at += 1;
        let mut members: Vec<(String, String)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            out.push_str("{}");
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("a key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':', "`:`")?;
            self.skip_whitespace();
            let mut value = String::new();
            self.value(&mut value, depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => break,
                _ => return Err(self.syntax("`,` or `}`")),
            }
        }
        self.at += 1;
        members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if let Some(pair) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(JsonError::DuplicateKey(pair[0].0.clone()));
        }
        out.push('{');
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(out, key);
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        Ok(())
    }

    /// A string's characters, its escapes decoded.
    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1;
        let mut s = String::new();
        loop {
            let start = self.at;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            // The text is a &str and runs are cut at ASCII bytes only, so each run is UTF-8.
            s.push_str(std::str::from_utf8(&self.text[start..self.at]).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(s);
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut s)?;
                }
                Some(_) => return Err(self.syntax("a control character escaped")),
                None => return Err(self.syntax("the end of the string")),
            }
        }
    }

    fn escape(&mut self, s: &mut String) -> Result<(), JsonError> {
        let Some(byte) = self.peek() else {
            return Err(self.syntax("an escape"));
        };
        self.at += 1;
        let c = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.escaped_char()?,
            _ => return Err(self.syntax("an escape")),
        };
        s.push(c);
        Ok(())
    }

    /// The character of a `\uXXXX` escape (whose `\u` was read), joining a surrogate pair.
    fn escaped_char(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        if !(0xD800..0xE000).contains(&first) {
            return char::from_u32(u32::from(first)).ok_or(JsonError::LoneSurrogate(first));
        }
        if first >= 0xDC00 || !self.text[self.at..].starts_with(b"\\u") {
            return Err(JsonError::LoneSurrogate(first));
        }
        self.at += 2;
        let second = self.hex4()?;
        if !(0xDC00..0xE000).contains(&second) {
            return Err(JsonError::LoneSurrogate(first));
        }
        let code = 0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00);
        char::from_u32(code).ok_or(JsonError::LoneSurrogate(first))
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.syntax("four hexadecimal digits"))?;
        let digits = std::str::from_utf8(digits).unwrap_or_default();
        let value = u16::from_str_radix(digits, 16).map_err(|_| self.syntax("hex digits"))?;
        self.at += 4;
        Ok(value)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, handed on as written.
    fn number(&mut self, out: &mut String) -> Result<(), JsonError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        let literal = std::str::from_utf8(&self.text[start..self.at]).unwrap_or_default();
        (self.number)(literal, out);
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), JsonError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.syntax("a digit"));
        }
        self.digits();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_drops_whitespace_and_escapes_minimally() {
        let text = " { \"b\" : 1 , \"a\" : [ true , null , \"x\\\"y\\\\z\\n\\u0001é\\/\" ] , \"A\" : { \"z\" : \"\" , \"c\" : -2 } } ";
        assert_eq!(
            canonicalize(text).unwrap(),
            r#"{"A":{"c":-2,"z":""},"a":[true,null,"x\"y\\z\n\u0001é/"],"b":1}"#
        );
    }

    #[test]
    fn keeps_every_number_as_written() {
        for literal in [
            "1e16",
            "1E3",
            "1.50",
            "-0",
            "-0.0",
            "1e-7",
            "10000000000000000.0",
            "123456789012345678901",
            "3.141592653589793238462643383279",
            "1e999999999",
            "-1E-400",
        ] {
            let text = format!("{{\"x\":{literal}}}");
            assert_eq!(canonicalize(&text).unwrap(), text);
        }
    }

    #[test]
    fn refuses_what_is_not_a_json_number() {
        for literal in [
            "01", "1.", ".5", "+1", "1e", "1e+", "-", "NaN", "Infinity", "0x10",
        ] {
            let text = format!("{{\"x\":{literal}}}");
            assert!(
                matches!(canonicalize(&text), Err(JsonError::Syntax { .. })),
                "{literal}"
            );
        }
    }

    #[test]
    fn keeps_nul_controls_and_noncharacters_and_joins_surrogate_pairs() {
        assert_eq!(
            canonicalize(r#"["a\u0000b","\u001f\u007f","\uFFFE\uFDD0","\ud83d\ude00"]"#).unwrap(),
            "[\"a\\u0000b\",\"\\u001f\u{7f}\",\"\u{FFFE}\u{FDD0}\",\"😀\"]"
        );
    }

    #[test]
    fn refuses_lone_surrogates_raw_controls_and_duplicates_even_when_escaped() {
        for (text, expected) in [
            (r#"["\ud800"]"#, JsonError::LoneSurrogate(0xD800)),
            (r#"["\udc00x"]"#, JsonError::LoneSurrogate(0xDC00)),
            (r#"["\ud800\u0041"]"#, JsonError::LoneSurrogate(0xD800)),
            (
                r#"{"amount":"1","amo\u0075nt":"2"}"#,
                JsonError::DuplicateKey("amount".into()),
            ),
        ] {
            assert_eq!(canonicalize(text), Err(expected), "{text}");
        }
        assert!(matches!(
            canonicalize("[\"a\nb\"]"),
            Err(JsonError::Syntax { .. })
        ));
    }

    #[test]
    fn bounds_nesting_without_recursing_past_the_bound() {
        let ok = format!("{}{}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        assert!(canonicalize(&ok).is_ok());
        let over = format!("{}{}", "[".repeat(DEPTH_MAX + 1), "]".repeat(DEPTH_MAX + 1));
        assert_eq!(canonicalize(&over), Err(JsonError::TooDeep));
        let deep = "[{\"a\":".repeat(100_000);
        assert_eq!(canonicalize(&deep), Err(JsonError::TooDeep));
    }

    #[test]
    fn refuses_trailing_bytes_and_non_json() {
        for text in [
            "{} x",
            "{",
            "",
            "nope",
            "{\"a\":1}{}",
            "[1,]",
            "{\"a\":1,}",
            "tru",
        ] {
            assert!(
                matches!(canonicalize(text), Err(JsonError::Syntax { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn canonical_text_is_a_fixed_point() {
        let text = r#"{"z":[1.0,{"b":"\u0000","a":1E+2}],"é":"x","e":{}}"#;
        let once = canonicalize(text).unwrap();
        assert_eq!(canonicalize(&once).unwrap(), once);
    }
}
