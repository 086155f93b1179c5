//! Estimates pi from random points in the unit square: "100000" (samples) or
//! "100000 7" (samples, seed). The stream is seeded from the input, so the
//! estimate is a pure function of it.
use nebula_functions::{input_text, print, samples_and_rng};

fn main() {
    let (samples, mut rng) = samples_and_rng(&input_text(), 100_000_000);
    let inside = (0..samples)
        .filter(|_| {
            let (x, y) = (rng.next_f64(), rng.next_f64());
            x * x + y * y < 1.0
        })
        .count();
    print(format!("{:.6}", 4.0 * inside as f64 / samples as f64));
}
