//! n! exactly, with big integers: "20" -> 2432902008176640000.
use nebula_functions::{fail, input_text, numbers, print};
use num_bigint::BigUint;

const MAX_N: u64 = 20_000;

fn main() {
    let n: u64 = numbers(&input_text(), 1, 1)[0];
    if n > MAX_N {
        fail(&format!("n must be at most {MAX_N}"));
    }
    print((1..=n).fold(BigUint::from(1u32), |acc, k| acc * k));
}
