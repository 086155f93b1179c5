//! Shared helpers for the guest functions: read the input, parse numbers,
//! report errors the same way everywhere, and a deterministic PRNG.

use std::io::{Read, Write};
use std::process::exit;

/// The whole of stdin, lossily decoded and trimmed.
pub fn input_text() -> String {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).unwrap_or_else(|e| fail(&format!("cannot read input: {e}")));
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

pub fn input_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).unwrap_or_else(|e| fail(&format!("cannot read input: {e}")));
    bytes
}

/// Prints a message on stderr and exits with status 2 (bad input).
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(2)
}

pub fn print(answer: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{answer}");
}

/// Whitespace- or comma-separated integers, at least `min` and at most `max` of them.
pub fn numbers<T: std::str::FromStr>(text: &str, min: usize, max: usize) -> Vec<T> {
    let parts: Vec<&str> = text.split(|c: char| c.is_whitespace() || c == ',').filter(|p| !p.is_empty()).collect();
    if parts.len() < min || parts.len() > max {
        fail(&format!("expected {min} to {max} numbers, got {}", parts.len()));
    }
    parts.iter().map(|p| p.parse().unwrap_or_else(|_| fail(&format!("'{p}' is not a valid number")))).collect()
}

/// SplitMix64: tiny, well-distributed and fully determined by its seed, so a
/// Monte Carlo function is a pure function of its input.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeds from arbitrary input bytes (through BLAKE3, so similar inputs diverge).
    pub fn from_input(bytes: &[u8]) -> Self {
        let hash = blake3::hash(bytes);
        Self(u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Parses "samples" or "samples seed"; the seed defaults to the whole input.
pub fn samples_and_rng(text: &str, max_samples: u64) -> (u64, SplitMix64) {
    let numbers: Vec<u64> = numbers(text, 1, 2);
    let samples = numbers[0];
    if samples == 0 || samples > max_samples {
        fail(&format!("samples must be between 1 and {max_samples}"));
    }
    (samples, SplitMix64::from_input(text.as_bytes()))
}

/// Data packed into a module after it was compiled (`nebula deploy --data FILE`
/// or `nebula pack`): a function built once can carry different data, and
/// each packing is its own content-addressed module.
///
/// The slot is a static array in the module's data segment: a marker the
/// packer searches for, the capacity and the length (both u32 little-endian),
/// then the bytes. The packer overwrites length and bytes in place; nothing
/// else in the module changes.
pub mod data_slot {
    /// Found exactly once in a module that has a slot (never used at run time,
    /// so the compiler does not emit a second copy of it).
    pub const MARKER: &[u8; 24] = b"NEBULA-DATA-SLOT-v1:\x7f\x7e\x7d\x7c";
    pub const HEADER: usize = MARKER.len() + 8;

    /// The initial slot: marker, capacity, length 0, and a non-zero filler so
    /// the linker keeps the whole array as literal bytes in the data segment.
    pub const fn empty<const N: usize>() -> [u8; N] {
        let mut slot = [0xA5u8; N];
        let mut i = 0;
        while i < MARKER.len() {
            slot[i] = MARKER[i];
            i += 1;
        }
        let capacity = ((N - HEADER) as u32).to_le_bytes();
        let mut j = 0;
        while j < 4 {
            slot[MARKER.len() + j] = capacity[j];
            slot[MARKER.len() + 4 + j] = 0;
            j += 1;
        }
        slot
    }

    /// The packed bytes. Reads are volatile: the compiler saw the slot's
    /// initial value and would otherwise fold "length 0" into the code.
    pub fn read<const N: usize>(slot: &'static [u8; N]) -> Vec<u8> {
        let byte = |i: usize| unsafe { core::ptr::read_volatile(&slot[i]) };
        let at = MARKER.len() + 4;
        let len = u32::from_le_bytes([byte(at), byte(at + 1), byte(at + 2), byte(at + 3)]) as usize;
        let len = len.min(N - HEADER);
        (HEADER..HEADER + len).map(byte).collect()
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(html_escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn empty_slot_reads_nothing() {
        static SLOT: [u8; 64] = data_slot::empty::<64>();
        assert_eq!(&SLOT[..24], data_slot::MARKER);
        assert!(data_slot::read(&SLOT).is_empty());
    }
}
