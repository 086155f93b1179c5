//! The n-th prime (1-based) by a sieve sized from the prime number theorem: "6" -> 13.
use nebula_functions::{fail, input_text, numbers, print};

const MAX_N: u64 = 5_000_000;

/// An upper bound for the n-th prime (Rosser's theorem), valid for n >= 6.
fn sieve_bound(n: u64) -> usize {
    if n < 6 {
        return 15;
    }
    let n = n as f64;
    (n * (n.ln() + n.ln().ln())).ceil() as usize
}

fn main() {
    let n: u64 = numbers(&input_text(), 1, 1)[0];
    if n == 0 || n > MAX_N {
        fail(&format!("n must be between 1 and {MAX_N}"));
    }
    let bound = sieve_bound(n);
    let mut composite = vec![false; bound + 1];
    let mut count = 0;
    for i in 2..=bound {
        if composite[i] {
            continue;
        }
        count += 1;
        if count == n {
            return print(i);
        }
        for multiple in (i * i..=bound).step_by(i) {
            composite[multiple] = true;
        }
    }
    fail("sieve bound too small")
}
