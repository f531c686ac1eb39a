//! A walk over a GGUF file's header that checks every length and count against the size of the
//! file before candle-core reads it.
//!
//! candle-core allocates what a header says (a string of 2⁵⁶ bytes, a tensor of 2⁴⁰ elements)
//! before reading it; with a corrupt header that allocation fails and aborts the process, which
//! no error handling can catch. Written here because no GGUF crate checks this; it reads no
//! value, it only skips over them.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::LoadError;

/// Deepest nesting of metadata arrays (GGUF writers nest none).
const MAX_NESTING: usize = 4;

/// Most dimensions a GGUF tensor may have (ggml has 4).
const MAX_DIMS: u64 = 8;

/// The fewest bytes any ggml type stores an element in, as a ratio: Q2_K packs 256 elements in
/// 84 bytes, about 3 per byte; 4 per byte bounds every type.
const MAX_ELEMENTS_PER_BYTE: u64 = 4;

struct Walker {
    r: BufReader<File>,
    pos: u64,
    len: u64,
    /// GGUF v1 writes lengths and counts as u32.
    v1: bool,
}

impl Walker {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|_| format!("the file ends inside the header (at byte {})", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u64, String> {
        Ok(u32::from_le_bytes(self.bytes()?).into())
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A length or count (u32 in v1, u64 after).
    fn count(&mut self) -> Result<u64, String> {
        if self.v1 {
            self.u32()
        } else {
            self.u64()
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.remaining() {
            return Err(format!(
                "{what} of {n} bytes at byte {} runs past the end of the file ({} bytes)",
                self.pos, self.len
            ));
        }
        let step = i64::try_from(n).map_err(|_| format!("{what} of {n} bytes is too long"))?;
        self.r.seek_relative(step).map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<(), String> {
        let n = self.count()?;
        self.skip(n, what)
    }

    /// Skips one metadata value of type `ty` (arrays nest at most `MAX_NESTING` deep).
    fn value(&mut self, ty: u64, key: &str, depth: usize) -> Result<(), String> {
        match ty {
            0 | 1 | 7 => self.skip(1, key),
            2 | 3 => self.skip(2, key),
            4..=6 => self.skip(4, key),
            10..=12 => self.skip(8, key),
            8 => self.string(key),
            9 if depth >= MAX_NESTING => Err(format!("metadata '{key}' nests arrays deeper than {MAX_NESTING}")),
            9 => {
                let elem = self.u32()?;
                let n = self.count()?;
                // Every element takes at least one byte (a string at least its length field).
                if n > self.remaining() {
                    return Err(format!("array '{key}' claims {n} elements, more than the file's remaining bytes"));
                }
                for _ in 0..n {
                    self.value(elem, key, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("metadata '{key}' has an unknown value type {other}")),
        }
    }
}

/// Checks the header of the GGUF file `path`: every string, array and tensor fits in the file.
pub(super) fn check_header(path: &Path) -> Result<(), LoadError> {
    let bad = |reason: String| LoadError::Gguf { path: path.to_path_buf(), reason };
    let file = File::open(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    let len = file.metadata().map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?.len();
    let mut w = Walker { r: BufReader::new(file), pos: 0, len, v1: false };
    let walk = |w: &mut Walker| -> Result<(), String> {
        if &w.bytes::<4>()? != b"GGUF" {
            return Err("not a GGUF file (no GGUF magic)".into());
        }
        let version = w.u32()?;
        if !(1..=3).contains(&version) {
            return Err(format!("unsupported GGUF version {version}"));
        }
        w.v1 = version == 1;
        let tensors = w.count()?;
        let kvs = w.count()?;
        if kvs > w.remaining() || tensors > w.remaining() {
            return Err(format!(
                "the header claims {kvs} metadata entries and {tensors} tensors, more than the file holds"
            ));
        }
        for _ in 0..kvs {
            w.string("a metadata key")?;
            let ty = w.u32()?;
            w.value(ty, "a metadata value", 0)?;
        }
        for _ in 0..tensors {
            w.string("a tensor name")?;
            let dims = w.u32()?;
            if dims > MAX_DIMS {
                return Err(format!("a tensor claims {dims} dimensions"));
            }
            let mut elements: u64 = 1;
            for _ in 0..dims {
                let d = if w.v1 { w.u32()? } else { w.u64()? };
                elements = elements.checked_mul(d).ok_or("a tensor's element count overflows")?;
            }
            if elements > MAX_ELEMENTS_PER_BYTE.saturating_mul(w.len) {
                return Err(format!("a tensor claims {elements} elements, more than a {}-byte file can hold", w.len));
            }
            w.u32()?;
            w.u64()?;
        }
        Ok(())
    };
    walk(&mut w).map_err(bad)
}
