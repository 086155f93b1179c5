//! Exact integer power: "2 100" -> 2^100; a single number n gives 2^n.
use nebula_functions::{fail, input_text, numbers, print};
use num_bigint::BigInt;

const MAX_EXPONENT: u32 = 100_000;

fn main() {
    let args: Vec<i64> = numbers(&input_text(), 1, 2);
    let (base, exponent) = if args.len() == 1 { (2, args[0]) } else { (args[0], args[1]) };
    if !(0..=MAX_EXPONENT as i64).contains(&exponent) {
        fail(&format!("exponent must be between 0 and {MAX_EXPONENT}"));
    }
    print(BigInt::from(base).pow(exponent as u32));
}
