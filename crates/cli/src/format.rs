//! How `krab consume` prints records: a kcat-like format string, or one JSON object per line.
//!
//! Format tokens: `%t` topic, `%p` partition, `%o` offset, `%T` timestamp (ms), `%k` key,
//! `%s` value, `%h` headers (`name=value` joined by `,`; a null value prints the name alone),
//! `%K` key length, `%S` value length (-1 for null), `%%` a percent sign; escapes `\n`, `\t`,
//! `\r`, `\0`, `\\`. A null key or value prints as nothing.

use anyhow::{Result, bail};
use base64::Engine;
use krab_consumer::{ConsumerRecord, TimestampType};
use serde_json::{Value, json};

/// The default format: the value and a newline.
pub(crate) const DEFAULT_FORMAT: &str = "%s\\n";

/// One piece of a parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
    Headers,
    KeyLength,
    ValueLength,
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format {
    pieces: Vec<Piece>,
}

impl Format {
    /// Parses a format string; an unknown `%x` or `\x` is an error naming it.
    pub(crate) fn parse(spec: &str) -> Result<Format> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = spec.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let piece = match chars.next() {
                        Some('%') => {
                            text.push(b'%');
                            continue;
                        }
                        Some('t') => Piece::Topic,
                        Some('p') => Piece::Partition,
                        Some('o') => Piece::Offset,
                        Some('T') => Piece::Timestamp,
                        Some('k') => Piece::Key,
                        Some('s') => Piece::Value,
                        Some('h') => Piece::Headers,
                        Some('K') => Piece::KeyLength,
                        Some('S') => Piece::ValueLength,
                        Some(other) => bail!("unknown format token `%{other}` (known: %t %p %o %T %k %s %h %K %S %%)"),
                        None => bail!("the format ends with a lone `%` (write %% for a percent sign)"),
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
                '\\' => text.push(escaped(chars.next())?),
                other => {
                    let mut buf = [0u8; 4];
                    text.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Format { pieces })
    }

    /// Appends the record, formatted, to `out`.
    pub(crate) fn render(&self, r: &ConsumerRecord, out: &mut Vec<u8>) {
        use std::io::Write;
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Topic => out.extend_from_slice(r.topic.as_bytes()),
                // Writing to a Vec cannot fail.
                Piece::Partition => drop(write!(out, "{}", r.partition)),
                Piece::Offset => drop(write!(out, "{}", r.offset)),
                Piece::Timestamp => drop(write!(out, "{}", r.timestamp)),
                Piece::Key => out.extend_from_slice(r.key.as_deref().unwrap_or_default()),
                Piece::Value => out.extend_from_slice(r.value.as_deref().unwrap_or_default()),
                Piece::KeyLength => drop(write!(out, "{}", length(r.key.as_deref()))),
                Piece::ValueLength => drop(write!(out, "{}", length(r.value.as_deref()))),
                Piece::Headers => {
                    for (i, h) in r.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(&h.key);
                        if let Some(v) = &h.value {
                            out.push(b'=');
                            out.extend_from_slice(v);
                        }
                    }
                }
            }
        }
    }
}

fn length(b: Option<&[u8]>) -> i64 {
    b.map_or(-1, |b| b.len() as i64)
}

/// The byte a `\x` escape stands for.
fn escaped(c: Option<char>) -> Result<u8> {
    Ok(match c {
        Some('n') => b'\n',
        Some('t') => b'\t',
        Some('r') => b'\r',
        Some('0') => 0,
        Some('\\') => b'\\',
        Some(other) => bail!("unknown escape `\\{other}` (known: \\n \\t \\r \\0 \\\\)"),
        None => bail!("a lone `\\` at the end (write \\\\ for a backslash)"),
    })
}

/// A separator given on the command line (`--delimiter`, `-K`), with the same escapes as the
/// format string; it must not be empty.
pub(crate) fn unescape(s: &str, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(escaped(chars.next()).map_err(|e| anyhow::anyhow!("{what} `{s}`: {e}"))?);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    if out.is_empty() {
        bail!("{what} must not be empty");
    }
    Ok(out)
}

/// Bytes as JSON: a string when they are UTF-8, else `{"base64": "..."}`; null for null.
fn bytes_json(b: Option<&[u8]>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
        },
    }
}

/// One record as a JSON object (`krab consume --json`, one per line).
pub(crate) fn record_json(r: &ConsumerRecord) -> Value {
    let timestamp_type = match r.timestamp_type {
        TimestampType::CreateTime => "create",
        TimestampType::LogAppendTime => "log_append",
    };
    json!({
        "topic": &*r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": timestamp_type,
        "key": bytes_json(r.key.as_deref()),
        "value": bytes_json(r.value.as_deref()),
        "headers": r.headers.iter().map(|h| json!({
            "key": String::from_utf8_lossy(&h.key),
            "value": bytes_json(h.value.as_deref()),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use krab_consumer::RecordHeader;

    pub(crate) fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: "orders".into(),
            partition: 3,
            offset: 42,
            leader_epoch: Some(1),
            timestamp: 1_700_000_000_123,
            timestamp_type: TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![
                RecordHeader { key: Bytes::from_static(b"a"), value: Some(Bytes::from_static(b"1")) },
                RecordHeader { key: Bytes::from_static(b"flag"), value: None },
            ],
        }
    }

    fn render(spec: &str, r: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        Format::parse(spec).unwrap().render(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_token_renders() {
        let r = record();
        assert_eq!(render("%t/%p@%o %T", &r), "orders/3@42 1700000000123");
        assert_eq!(render("%k=%s (%K,%S)\\n", &r), "user-1=hello (6,5)\n");
        assert_eq!(render("[%h]\\t100%%\\\\\\r\\0", &r), "[a=1,flag]\t100%\\\r\0");
        assert_eq!(render(DEFAULT_FORMAT, &r), "hello\n");
        assert_eq!(render("plain ünïcode", &r), "plain ünïcode");
    }

    #[test]
    fn nulls_print_empty_with_length_minus_one() {
        let mut r = record();
        r.key = None;
        r.value = None;
        r.headers.clear();
        assert_eq!(render("<%k><%s><%h> %K %S", &r), "<><><> -1 -1");
        r.value = Some(Bytes::new());
        assert_eq!(render("%S", &r), "0");
    }

    #[test]
    fn bad_formats_are_refused_by_name() {
        let e = Format::parse("%k %x").unwrap_err().to_string();
        assert!(e.contains("%x"), "{e}");
        assert!(Format::parse("100%").unwrap_err().to_string().contains("lone `%`"));
        assert!(Format::parse("\\q").unwrap_err().to_string().contains("\\q"));
        assert!(Format::parse("end\\").is_err());
    }

    #[test]
    fn separators_unescape() {
        assert_eq!(unescape("\\n", "--delimiter").unwrap(), b"\n");
        assert_eq!(unescape("::\\t", "-K").unwrap(), b"::\t");
        assert_eq!(unescape("\\0", "-K").unwrap(), b"\0");
        assert!(unescape("", "-K").is_err());
        assert!(unescape("\\z", "-K").unwrap_err().to_string().contains("-K"));
    }

    #[test]
    fn json_lines_keep_bytes_and_nulls() {
        let mut r = record();
        let v = record_json(&r);
        assert_eq!(v["topic"], "orders");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 42);
        assert_eq!(v["timestamp_type"], "create");
        assert_eq!(v["key"], "user-1");
        assert_eq!(v["headers"][0]["key"], "a");
        assert_eq!(v["headers"][1]["value"], Value::Null);
        r.key = None;
        r.value = Some(Bytes::from_static(&[0xff, 0x00]));
        let v = record_json(&r);
        assert_eq!(v["key"], Value::Null);
        assert_eq!(v["value"]["base64"], "/wA=");
        assert!(!v.to_string().contains('\n'));
    }
}
