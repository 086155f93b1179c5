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
