//! Resource limits of one call: node defaults, per-call overrides, node maximums.

use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Wasm fuel (roughly one unit per instruction); bounds work deterministically.
    pub fuel: u64,
    /// Wall-clock deadline in milliseconds; bounds time on a slow or busy machine.
    pub deadline_ms: u64,
    /// Linear memory a call may grow to.
    pub memory_bytes: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            deadline_ms: 10_000,
            memory_bytes: 256 << 20,
            input_bytes: 8 << 20,
            output_bytes: 8 << 20,
        }
    }
}

/// What a caller may ask for; `None` keeps the node's default.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    pub fuel: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
}

impl Limits {
    /// These limits, none above `maximum`.
    pub fn clamped_to(&self, maximum: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.min(maximum.fuel),
            deadline_ms: self.deadline_ms.min(maximum.deadline_ms),
            memory_bytes: self.memory_bytes.min(maximum.memory_bytes),
            input_bytes: self.input_bytes.min(maximum.input_bytes),
            output_bytes: self.output_bytes.min(maximum.output_bytes),
        }
    }

    /// Applies a caller's overrides, never exceeding `maximum` (the node's ceiling).
    pub fn with_overrides(&self, overrides: &LimitOverrides, maximum: &Limits) -> Limits {
        let wanted = Limits {
            fuel: overrides.fuel.unwrap_or(self.fuel),
            deadline_ms: overrides.deadline_ms.unwrap_or(self.deadline_ms),
            memory_bytes: overrides.memory_bytes.unwrap_or(self.memory_bytes),
            input_bytes: self.input_bytes,
            output_bytes: overrides.output_bytes.unwrap_or(self.output_bytes),
        };
        wanted.clamped_to(maximum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_clamped_to_the_maximum() {
        let defaults = Limits::default();
        let maximum = Limits { fuel: 100, ..Limits::default() };
        let wanted = LimitOverrides { fuel: Some(1_000), deadline_ms: Some(5), ..Default::default() };
        let limits = defaults.with_overrides(&wanted, &maximum);
        assert_eq!(limits.fuel, 100);
        assert_eq!(limits.deadline_ms, 5);
        assert_eq!(limits.memory_bytes, defaults.memory_bytes);
    }
}
