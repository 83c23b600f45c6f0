//! DATA framing (RFC 5321 §4.1.1.4, §4.5.2): the end of data is only
//! CRLF.CRLF, leading dots are removed, and a bare CR or bare LF anywhere
//! makes the message invalid. Treating `\n.\n` or `\r\n.\r\r\n` as an end
//! would let a sender smuggle a second message past the filter into a
//! server that reads it differently, so such input is refused whole.

/// What the decoder found when it saw the end of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataFlags {
    pub bare_cr: bool,
    pub bare_lf: bool,
    pub too_large: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    DotAtStart,
    DotCr,
    Mid,
    Cr,
}

/// A streaming decoder: feed it bytes, it writes unstuffed content to a sink.
pub struct DataDecoder {
    state: State,
    flags: DataFlags,
    limit: u64,
    written: u64,
    done: bool,
}

impl DataDecoder {
    pub fn new(limit: u64) -> Self {
        DataDecoder {
            state: State::LineStart,
            flags: DataFlags::default(),
            limit,
            written: 0,
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn flags(&self) -> DataFlags {
        self.flags
    }

    fn rejected(&self) -> bool {
        self.flags.bare_cr || self.flags.bare_lf || self.flags.too_large
    }

    /// Decodes from `input` until the end of data or the end of input.
    /// Content goes to `out` (which the caller drains); returns the number of
    /// input bytes consumed, so bytes after the end stay for the next command.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() && !self.done {
            let b = input[i];
            i += 1;
            self.step(b, out);
        }
        i
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.rejected() {
            return;
        }
        if self.written + bytes.len() as u64 > self.limit {
            self.flags.too_large = true;
            return;
        }
        self.written += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::LineStart => match b {
                b'.' => self.state = State::DotAtStart,
                _ => self.mid(b, out),
            },
            State::DotAtStart => match b {
                b'\r' => self.state = State::DotCr,
                // The stuffed dot is dropped; whatever follows is content.
                _ => self.mid(b, out),
            },
            State::DotCr => {
                if b == b'\n' {
                    self.done = true;
                    self.state = State::LineStart;
                } else {
                    // ".\r" then not LF: the CR was bare; the dot was a
                    // stuffing dot. Carry on with this byte as content.
                    self.flags.bare_cr = true;
                    self.mid(b, out);
                }
            }
            State::Mid => self.mid(b, out),
            State::Cr => {
                if b == b'\n' {
                    self.emit(b"\r\n", out);
                    self.state = State::LineStart;
                } else {
                    self.flags.bare_cr = true;
                    self.mid(b, out);
                }
            }
        }
    }

    fn mid(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                // A bare LF does not start a line: only CRLF.CRLF ends the
                // data, so `\n.\r\n` must not either.
                self.flags.bare_lf = true;
                self.state = State::Mid;
            }
            _ => {
                self.emit(&[b], out);
                self.state = State::Mid;
            }
        }
    }
}

/// Dot-stuffs content for sending (the reverse of `DataDecoder`). Content
/// produced by the decoder always ends in CRLF or is empty, so the caller
/// terminates with `.\r\n`.
pub struct DotStuffer {
    at_line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
        }
    }
}

impl DotStuffer {
    pub fn stuff(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut from = 0;
        for (i, &b) in input.iter().enumerate() {
            if self.at_line_start && b == b'.' {
                out.extend_from_slice(&input[from..i]);
                out.push(b'.');
                from = i;
            }
            self.at_line_start = b == b'\n';
        }
        out.extend_from_slice(&input[from..]);
    }

    /// The terminator, with a CRLF first if the content did not end in one.
    pub fn finish(&self) -> &'static [u8] {
        if self.at_line_start {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> (Vec<u8>, DataFlags, bool, usize) {
        let mut d = DataDecoder::new(1 << 20);
        let mut out = Vec::new();
        let used = d.feed(input, &mut out);
        (out, d.flags(), d.is_done(), used)
    }

    #[test]
    fn plain_message_ends_at_crlf_dot_crlf() {
        let (out, flags, done, used) = decode(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(flags, DataFlags::default());
        assert!(done);
        assert_eq!(used, 21);
    }

    #[test]
    fn leading_dots_are_unstuffed() {
        let (out, _, done, _) = decode(b"..hidden\r\n...\r\n.\r\n");
        assert_eq!(out, b".hidden\r\n..\r\n");
        assert!(done);
    }

    #[test]
    fn bare_lf_dot_bare_lf_is_not_an_end() {
        let (_, flags, done, _) = decode(b"a\n.\nMAIL FROM:<x>\r\n");
        assert!(flags.bare_lf);
        assert!(!done);
    }

    #[test]
    fn bare_lf_dot_crlf_is_not_an_end() {
        let (_, flags, done, _) = decode(b"a\n.\r\nMAIL FROM:<x>\r\n");
        assert!(flags.bare_lf);
        assert!(!done);
    }

    #[test]
    fn crlf_dot_cr_cr_lf_is_not_an_end() {
        let (_, flags, done, _) = decode(b"a\r\n.\r\r\nb\r\n");
        assert!(flags.bare_cr);
        assert!(!done);
    }

    #[test]
    fn oversize_is_flagged_and_output_bounded() {
        let mut d = DataDecoder::new(4);
        let mut out = Vec::new();
        d.feed(b"123456789\r\n.\r\n", &mut out);
        assert!(d.flags().too_large);
        assert!(out.len() <= 4);
        assert!(d.is_done());
    }

    #[test]
    fn stuffing_round_trips() {
        let content = b".a\r\n..b\r\nc.\r\n.\r\n";
        let mut s = DotStuffer::default();
        let mut wire = Vec::new();
        s.stuff(content, &mut wire);
        wire.extend_from_slice(s.finish());
        let (out, flags, done, used) = decode(&wire);
        assert_eq!(out, content);
        assert_eq!(flags, DataFlags::default());
        assert!(done);
        assert_eq!(used, wire.len());
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = b"x\r\n..y\r\n.\r\n";
        let mut d = DataDecoder::new(100);
        let mut out = Vec::new();
        for b in input.iter() {
            d.feed(std::slice::from_ref(b), &mut out);
        }
        assert!(d.is_done());
        assert_eq!(out, b"x\r\n.y\r\n");
    }
}
