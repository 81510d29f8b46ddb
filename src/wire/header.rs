//! Length headers packed exactly as Python's `struct` module packs a single integer.
//!
//! A format is an optional byte-order prefix and one integer code, for example `!I` or `i`.
//! The rules mirror CPython on the host (see the `struct` docs, "Byte Order, Size, and
//! Alignment"):
//!
//! ```text
//! prefix  byte order   sizes                       n / N allowed
//! (none)  native       native (C compiler's)       yes
//! @       native       native                      yes
//! =       native       standard                    no
//! <       little       standard                    no
//! > !     big          standard                    no
//!
//! code    b B  h H  i I  l L              q Q  n N
//! std     1 1  2 2  4 4  4 4              8 8  -
//! native  1 1  2 2  4 4  size_of::<c_long> 8 8  size_of::<usize>
//! ```
//!
//! Lower-case codes are signed, upper-case unsigned.

use std::fmt;
use std::str::FromStr;

use byteorder::{BigEndian, ByteOrder, LittleEndian, NativeEndian};

/// Byte order of a header, as chosen by the format's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    Native,
    Little,
    Big,
}

/// A Python `struct` format for one integer, used as a frame's length header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderFormat {
    prefix: Option<char>,
    code: char,
    endian: Endian,
    size: usize,
    signed: bool,
}

/// Why a format string was refused, or a value could not be packed or unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The format string is not one of the single-integer formats.
    BadFormat(String),
    /// The value lies outside what the format can hold; worded as Python words it.
    OutOfRange { format: HeaderFormat, value: i128 },
    /// A signed header carried a negative length.
    NegativeLength { format: HeaderFormat, value: i64 },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadFormat(s) => write!(
                f,
                "bad header format {s:?}: expected an optional byte order (@ = < > !) \
                 followed by one of b B h H i I l L q Q n N (n and N only with @ or no prefix)"
            ),
            HeaderError::OutOfRange { format, .. } => {
                // CPython names b and B by their C type ("byte format requires …"), h and H
                // too unless big-endian, and quotes the code everywhere else. Saying exactly
                // what Python says keeps the message familiar to anyone who met it there.
                let name = match format.code {
                    'b' => "byte".to_string(),
                    'B' => "ubyte".to_string(),
                    'h' if format.endian != Endian::Big => "short".to_string(),
                    'H' if format.endian != Endian::Big => "ushort".to_string(),
                    c => format!("'{c}'"),
                };
                write!(
                    f,
                    "{name} format requires {} <= number <= {}",
                    format.min_value(),
                    format.max_value()
                )
            }
            HeaderError::NegativeLength { format, value } => write!(
                f,
                "header {format} carried a negative length ({value}); a length is never negative"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

impl HeaderFormat {
    /// `!I`: four bytes, big-endian, unsigned; the `framed` protocol's default.
    pub const NETWORK_U32: HeaderFormat = HeaderFormat {
        prefix: Some('!'),
        code: 'I',
        endian: Endian::Big,
        size: 4,
        signed: false,
    };

    /// `i`: native-order C int; what the tutorials pack (`struct.pack('i', n)`).
    pub const NATIVE_INT: HeaderFormat = HeaderFormat {
        prefix: None,
        code: 'i',
        endian: Endian::Native,
        size: 4,
        signed: true,
    };

    /// Number of bytes the header occupies on the wire (`struct.calcsize`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the integer code is signed (lower-case).
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The smallest value the format holds.
    pub fn min_value(&self) -> i128 {
        if self.signed {
            -(1i128 << (self.size * 8 - 1))
        } else {
            0
        }
    }

    /// The largest value the format holds.
    pub fn max_value(&self) -> i128 {
        if self.signed {
            (1i128 << (self.size * 8 - 1)) - 1
        } else {
            (1i128 << (self.size * 8)) - 1
        }
    }

    /// The largest length this header can describe, capped to what fits in memory.
    pub fn max_len(&self) -> usize {
        usize::try_from(self.max_value()).unwrap_or(usize::MAX)
    }

    /// Packs `value` as `struct.pack(fmt, value)` does, appending to `dst`.
    ///
    /// # Errors
    /// [`HeaderError::OutOfRange`] when the format cannot hold `value`.
    pub fn pack_into(&self, value: i128, dst: &mut impl Extend<u8>) -> Result<(), HeaderError> {
        if value < self.min_value() || value > self.max_value() {
            return Err(HeaderError::OutOfRange {
                format: *self,
                value,
            });
        }
        let mut buf = [0u8; 8];
        let out = &mut buf[..self.size];
        // Two's complement truncation is exactly what the range check above allows.
        let bits = value as u64;
        match self.endian {
            Endian::Big => BigEndian::write_uint(out, bits & mask(self.size), self.size),
            Endian::Little => LittleEndian::write_uint(out, bits & mask(self.size), self.size),
            Endian::Native => NativeEndian::write_uint(out, bits & mask(self.size), self.size),
        }
        dst.extend(out.iter().copied());
        Ok(())
    }

    /// Packs a length already known to fit (see [`max_len`](Self::max_len)) into `out`,
    /// returning the header's bytes. The codec's hot path: no range check, no allocation.
    ///
    /// # Panics
    /// In debug builds, if `len` does not fit.
    pub fn pack_len<'a>(&self, len: usize, out: &'a mut [u8; 8]) -> &'a [u8] {
        debug_assert!(len <= self.max_len(), "{len} does not fit {self}");
        let out = &mut out[..self.size];
        let len = len as u64;
        match self.endian {
            Endian::Big => BigEndian::write_uint(out, len, self.size),
            Endian::Little => LittleEndian::write_uint(out, len, self.size),
            Endian::Native => NativeEndian::write_uint(out, len, self.size),
        }
        out
    }

    /// Packs `value` into a new vector; see [`HeaderFormat::pack_into`].
    ///
    /// # Errors
    /// [`HeaderError::OutOfRange`] when the format cannot hold `value`.
    pub fn pack(&self, value: i128) -> Result<Vec<u8>, HeaderError> {
        let mut v = Vec::with_capacity(self.size);
        self.pack_into(value, &mut v)?;
        Ok(v)
    }

    /// Unpacks exactly [`size`](Self::size) bytes as `struct.unpack(fmt, bytes)[0]`.
    ///
    /// # Panics
    /// If `bytes` is not exactly `size()` long; callers check that first.
    pub fn unpack(&self, bytes: &[u8]) -> i128 {
        assert_eq!(bytes.len(), self.size, "header needs {} bytes", self.size);
        let raw = match self.endian {
            Endian::Big => BigEndian::read_uint(bytes, self.size),
            Endian::Little => LittleEndian::read_uint(bytes, self.size),
            Endian::Native => NativeEndian::read_uint(bytes, self.size),
        };
        if self.signed {
            // Sign-extend from the header's width.
            let shift = 64 - self.size * 8;
            (((raw << shift) as i64) >> shift) as i128
        } else {
            raw as i128
        }
    }

    /// Unpacks a header as a frame length, refusing negative values.
    ///
    /// # Errors
    /// [`HeaderError::NegativeLength`] for a negative value from a signed format.
    pub fn unpack_len(&self, bytes: &[u8]) -> Result<u64, HeaderError> {
        let raw = self.read_raw(bytes);
        // The decoder's hot path: a signed length is negative exactly when its top bit is set.
        if self.signed && raw >> (self.size * 8 - 1) == 1 {
            return Err(HeaderError::NegativeLength {
                format: *self,
                value: self.unpack(bytes) as i64,
            });
        }
        Ok(raw)
    }
}

impl HeaderFormat {
    fn is_big_endian(&self) -> bool {
        match self.endian {
            Endian::Big => true,
            Endian::Little => false,
            Endian::Native => cfg!(target_endian = "big"),
        }
    }

    /// The header's bits as an unsigned number. One fixed-width load per size, so reading
    /// a length costs the decoder a single instruction or two per frame.
    fn read_raw(&self, b: &[u8]) -> u64 {
        let big = self.is_big_endian();
        match (self.size, big) {
            (1, _) => u64::from(b[0]),
            (2, true) => u64::from(u16::from_be_bytes([b[0], b[1]])),
            (2, false) => u64::from(u16::from_le_bytes([b[0], b[1]])),
            (4, true) => u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            (4, false) => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            (_, true) => BigEndian::read_u64(b),
            (_, false) => LittleEndian::read_u64(b),
        }
    }
}

fn mask(size: usize) -> u64 {
    if size == 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

impl FromStr for HeaderFormat {
    type Err = HeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || HeaderError::BadFormat(s.to_string());
        // Python ignores whitespace in formats and accepts an explicit count of one.
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let mut rest = compact.as_str();
        let prefix = match rest.chars().next() {
            Some(c @ ('@' | '=' | '<' | '>' | '!')) => {
                rest = &rest[1..];
                Some(c)
            }
            _ => None,
        };
        let rest = rest.strip_prefix('1').unwrap_or(rest);
        let mut chars = rest.chars();
        let (Some(code), None) = (chars.next(), chars.next()) else {
            return Err(bad());
        };
        let native = matches!(prefix, None | Some('@'));
        let size = match (code.to_ascii_lowercase(), native) {
            ('b', _) => 1,
            ('h', _) => 2,
            ('i', _) => 4,
            ('l', true) => std::mem::size_of::<std::ffi::c_long>(),
            ('l', false) => 4,
            ('q', _) => 8,
            ('n', true) => std::mem::size_of::<isize>(),
            _ => return Err(bad()),
        };
        let endian = match prefix {
            None | Some('@') | Some('=') => Endian::Native,
            Some('<') => Endian::Little,
            _ => Endian::Big,
        };
        Ok(HeaderFormat {
            prefix,
            code,
            endian,
            size,
            signed: code.is_ascii_lowercase(),
        })
    }
}

impl fmt::Display for HeaderFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.prefix {
            write!(f, "{p}")?;
        }
        write!(f, "{}", self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const PREFIXES: [&str; 6] = ["", "@", "=", "<", ">", "!"];
    const CODES: &str = "bBhHiIlLqQnN";

    /// Every format string Python accepts for one integer (n/N only in native mode).
    fn all_formats() -> Vec<String> {
        let mut v = Vec::new();
        for p in PREFIXES {
            for c in CODES.chars() {
                if matches!(c, 'n' | 'N') && !matches!(p, "" | "@") {
                    continue;
                }
                v.push(format!("{p}{c}"));
            }
        }
        v
    }

    /// Asks the real CPython what it does with each (format, value) pair: the packed bytes
    /// as hex, or the error text. One interpreter run for the whole table keeps this fast.
    fn python_pack(cases: &[(String, i128)]) -> Vec<Result<String, String>> {
        let mut script = String::from("import struct\n");
        for (fmt, v) in cases {
            script.push_str(&format!(
                "try:\n print('ok', struct.pack({fmt:?}, {v}).hex())\n\
                 except struct.error as e:\n print('err', e)\n"
            ));
        }
        let out = Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("python3 must be installed to cross-check struct packing");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| match l.split_once(' ') {
                Some(("ok", hex)) => Ok(hex.to_string()),
                Some(("err", msg)) => Err(msg.to_string()),
                _ => panic!("unexpected python output {l:?}"),
            })
            .collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sizes_match_python_calcsize() {
        let formats = all_formats();
        let script = format!(
            "import struct\nfor f in {formats:?}: print(struct.calcsize(f))",
            formats = formats
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let sizes: Vec<usize> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(sizes.len(), formats.len());
        for (f, py) in formats.iter().zip(sizes) {
            let ours: HeaderFormat = f.parse().unwrap();
            assert_eq!(ours.size(), py, "calcsize({f:?})");
        }
    }

    #[test]
    fn pack_matches_python_at_edges() {
        let mut cases = Vec::new();
        for f in all_formats() {
            let fmt: HeaderFormat = f.parse().unwrap();
            for v in [
                0,
                1,
                fmt.max_value(),
                fmt.max_value() + 1,
                fmt.min_value(),
                -1,
            ] {
                cases.push((f.clone(), v));
            }
        }
        let python = python_pack(&cases);
        for ((f, v), py) in cases.iter().zip(python) {
            let fmt: HeaderFormat = f.parse().unwrap();
            match (fmt.pack(*v), py) {
                (Ok(ours), Ok(theirs)) => assert_eq!(hex(&ours), theirs, "pack({f:?}, {v})"),
                (Err(ours), Err(theirs)) => {
                    // Where Python states the range, we say the very same words.
                    if theirs.contains("format requires") {
                        assert_eq!(ours.to_string(), theirs, "error for pack({f:?}, {v})");
                    }
                }
                (ours, theirs) => panic!("pack({f:?}, {v}): ours {ours:?}, python {theirs:?}"),
            }
        }
    }

    #[test]
    fn unpack_round_trips_python_bytes() {
        let mut cases = Vec::new();
        for f in all_formats() {
            let fmt: HeaderFormat = f.parse().unwrap();
            for v in [0, 1, fmt.max_value(), fmt.min_value()] {
                cases.push((f.clone(), v));
            }
        }
        for ((f, v), py) in cases.iter().zip(python_pack(&cases)) {
            let fmt: HeaderFormat = f.parse().unwrap();
            let bytes: Vec<u8> = (0..py.as_ref().unwrap().len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&py.as_ref().unwrap()[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(fmt.unpack(&bytes), *v, "unpack({f:?})");
        }
    }

    #[test]
    fn fast_length_packing_matches_the_checked_one() {
        for f in all_formats() {
            let fmt: HeaderFormat = f.parse().unwrap();
            for len in [0, 1, 127, fmt.max_len().min(1 << 40)] {
                let mut buf = [0u8; 8];
                assert_eq!(
                    fmt.pack_len(len, &mut buf),
                    &fmt.pack(len as i128).unwrap()[..],
                    "{f} {len}"
                );
            }
        }
    }

    #[test]
    fn length_reading_agrees_with_unpack() {
        for f in all_formats() {
            let fmt: HeaderFormat = f.parse().unwrap();
            for v in [0, 1, fmt.max_value(), fmt.min_value(), -1] {
                let Ok(bytes) = fmt.pack(v) else { continue };
                match fmt.unpack_len(&bytes) {
                    Ok(len) => assert_eq!(i128::from(len), v, "{f} {v}"),
                    Err(_) => assert!(v < 0, "{f} {v} refused"),
                }
            }
        }
    }

    #[test]
    fn negative_length_is_refused() {
        let fmt: HeaderFormat = "!i".parse().unwrap();
        let err = fmt.unpack_len(&[0xff, 0xff, 0xff, 0xfe]).unwrap_err();
        assert_eq!(
            err,
            HeaderError::NegativeLength {
                format: fmt,
                value: -2
            }
        );
        assert_eq!(fmt.unpack_len(&[0, 0, 1, 0]), Ok(256));
    }

    #[test]
    fn formats_python_rejects_are_rejected() {
        for bad in ["", "ii", "2i", "<n", "!N", "x", "<<i", "e", "P", "<"] {
            assert!(
                bad.parse::<HeaderFormat>().is_err(),
                "{bad:?} should be refused"
            );
        }
        for ok in [" !I ", "1i", "@ N"] {
            assert!(ok.parse::<HeaderFormat>().is_ok(), "{ok:?} should parse");
        }
    }
}
