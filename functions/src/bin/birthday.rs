//! Birthday paradox by simulation: "23 10000" (people, trials) -> the estimated
//! probability that two of them share a birthday.
use nebula_functions::{SplitMix64, fail, input_text, numbers, print};

fn main() {
    let text = input_text();
    let args: Vec<u64> = numbers(&text, 2, 2);
    let (people, trials) = (args[0], args[1]);
    if !(1..=366).contains(&people) || !(1..=10_000_000).contains(&trials) {
        fail("people must be 1..=366 and trials 1..=10000000");
    }
    let mut rng = SplitMix64::from_input(text.as_bytes());
    let shared = (0..trials)
        .filter(|_| {
            let mut seen = [false; 365];
            (0..people).any(|_| std::mem::replace(&mut seen[rng.below(365) as usize], true))
        })
        .count();
    print(format!("{:.6}", shared as f64 / trials as f64));
}
