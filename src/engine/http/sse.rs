//! A small Server-Sent Events parser for OpenAI-style streaming responses.
//!
//! Bytes arrive in arbitrary pieces: an event may be split across reads and one read may carry
//! several events. The parser keeps the unfinished tail between [`SseParser::feed`] calls, joins
//! multi-line `data:` fields with `\n` (as the SSE specification says), ignores comments (`:`
//! lines) and the `event:`/`id:`/`retry:` fields, accepts `\r\n` line ends, reports `data: [DONE]`
//! as [`SseItem::Done`] and any other line (or invalid UTF-8) as [`SseItem::Malformed`] rather
//! than guessing. Interpreting the JSON payloads is the client's job.

/// One parsed item of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// The data of one event (all its `data:` lines joined by `\n`).
    Data(String),
    /// The OpenAI end-of-stream marker `data: [DONE]`.
    Done,
    /// A line that is not valid SSE, or an event that is not UTF-8 (excerpt of the offending line).
    Malformed(String),
}

/// Incremental SSE parser (see the module doc).
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unterminated line.
    line: Vec<u8>,
    /// `data:` lines of the event being assembled.
    data: Option<String>,
}

/// Longest excerpt of a malformed line kept in a failure reason.
const EXCERPT: usize = 120;

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Consume `bytes`, appending every completed item to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseItem>) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let head = &rest[..pos];
            rest = &rest[pos + 1..];
            if self.line.is_empty() {
                // The whole line is in this read: parse it in place, no copy.
                self.line_done(strip_cr(head), out);
            } else {
                // A line split across reads: finish it in the buffer, then keep the buffer's
                // allocation for the next split line.
                self.line.extend_from_slice(head);
                let mut line = std::mem::take(&mut self.line);
                self.line_done(strip_cr(&line), out);
                line.clear();
                self.line = line;
            }
        }
        self.line.extend_from_slice(rest);
    }

    /// The stream ended: flush an event that was not followed by a blank line (servers that close
    /// right after the last `data:` line) and report a dangling partial line as malformed.
    pub fn finish(&mut self, out: &mut Vec<SseItem>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out);
        }
        self.dispatch(out);
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseItem>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let Ok(text) = std::str::from_utf8(line) else {
            out.push(SseItem::Malformed(format!(
                "invalid UTF-8 in line: {}",
                excerpt(&String::from_utf8_lossy(line))
            )));
            return;
        };
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" | "id" | "retry" => {}
            _ => out.push(SseItem::Malformed(format!(
                "not an SSE line: {}",
                excerpt(text)
            ))),
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        if let Some(data) = self.data.take() {
            if data.trim() == "[DONE]" {
                out.push(SseItem::Done);
            } else {
                out.push(SseItem::Data(data));
            }
        }
    }
}

/// `line` without one trailing `\r` (a `\r\n` line end).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first [`EXCERPT`] characters of `text`.
pub fn excerpt(text: &str) -> String {
    let mut s: String = text.chars().take(EXCERPT).collect();
    if text.chars().count() > EXCERPT {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_pieces(pieces: &[&[u8]]) -> Vec<SseItem> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, &mut out);
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn events_split_across_reads_and_several_per_read() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        let whole = parse_pieces(&[stream]);
        assert_eq!(
            whole,
            vec![
                SseItem::Data("{\"a\":1}".into()),
                SseItem::Data("{\"b\":2}".into()),
                SseItem::Done
            ]
        );
        // Every possible split point gives the same items, and so does one byte per read.
        for cut in 0..stream.len() {
            assert_eq!(
                parse_pieces(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_pieces(&bytes), whole);
    }

    #[test]
    fn comments_crlf_fields_and_multiline_data() {
        let out = parse_pieces(&[
            b": keep-alive\r\n\r\nevent: message\r\nid: 7\r\ndata: line1\r\ndata:line2\r\n\r\n",
        ]);
        assert_eq!(out, vec![SseItem::Data("line1\nline2".into())]);
    }

    #[test]
    fn malformed_lines_and_invalid_utf8_are_reported() {
        let out = parse_pieces(&[b"garbage here\n\ndata: \xff\xfe\n\n"]);
        assert!(matches!(&out[0], SseItem::Malformed(m) if m.contains("garbage here")));
        // The invalid-UTF-8 data line is reported; its event carries nothing.
        assert!(matches!(&out[1], SseItem::Malformed(m) if m.contains("invalid UTF-8")));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn an_event_without_trailing_blank_line_is_flushed_at_the_end() {
        assert_eq!(
            parse_pieces(&[b"data: {\"x\":1}\n", b"data: [DONE]"]),
            vec![SseItem::Data("{\"x\":1}\n[DONE]".into())]
        );
        assert_eq!(parse_pieces(&[b"data: [DONE]"]), vec![SseItem::Done]);
        assert!(parse_pieces(&[b""]).is_empty());
    }

    #[test]
    fn error_payloads_pass_through_as_data() {
        let out = parse_pieces(&[b"data: {\"error\":{\"message\":\"boom\"}}\n\n"]);
        assert_eq!(
            out,
            vec![SseItem::Data("{\"error\":{\"message\":\"boom\"}}".into())]
        );
    }
}
