//! What the fuzz targets share: the text form of their inputs, so that the corpus in
//! `fuzz/corpus/` can be read and written by hand, and (from `tests/properties/`) the README's
//! status table and a body that arrives in chunks.

use http::{HeaderMap, HeaderName, HeaderValue};

#[path = "../../tests/properties/frames.rs"]
pub mod frames;
#[path = "../../tests/properties/status_table.rs"]
pub mod status_table;

/// The `name: value` lines of `text`, split at the first `:`, the value's surrounding blanks
/// dropped (as an HTTP parser drops them). Lines end with `\n` or `\r\n`; a line without `:` is
/// skipped.
pub fn header_lines(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    text.split(|&byte| byte == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&byte| byte == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

/// The header lines of `text` that make a valid header, in order (repeated names are kept, as
/// a client may repeat them).
pub fn header_map(text: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in header_lines(text) {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// A request as text, as HTTP/1.1 writes one without the version: `METHOD TARGET`, header
/// lines, an empty line, then the body.
pub struct TextRequest<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub head: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> TextRequest<'a> {
    /// Splits `data`; `None` without a request line. Without an empty line there is no body.
    pub fn split(data: &'a [u8]) -> Option<Self> {
        let line_end = data.iter().position(|&byte| byte == b'\n')?;
        let request_line = data[..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&data[..line_end]);
        let space = request_line.iter().position(|&byte| byte == b' ')?;
        let (method, target) = (&request_line[..space], &request_line[space + 1..]);
        let rest = &data[line_end + 1..];
        let (head, body) = match find(rest, b"\n\n")
            .map(|at| (at, 2))
            .or_else(|| find(rest, b"\r\n\r\n").map(|at| (at, 4)))
        {
            Some((at, separator)) => (&rest[..at], &rest[at + separator..]),
            None => (rest, &rest[rest.len()..]),
        };
        Some(Self {
            method,
            target,
            head,
            body,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
