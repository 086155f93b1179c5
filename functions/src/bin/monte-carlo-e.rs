//! Estimates e as the mean number of uniform draws needed for their sum to
//! exceed 1: "100000" or "100000 7" (samples, seed).
use nebula_functions::{input_text, print, samples_and_rng};

fn main() {
    let (samples, mut rng) = samples_and_rng(&input_text(), 50_000_000);
    let mut draws = 0u64;
    for _ in 0..samples {
        let mut sum = 0.0;
        while sum <= 1.0 {
            sum += rng.next_f64();
            draws += 1;
        }
    }
    print(format!("{:.6}", draws as f64 / samples as f64));
}
