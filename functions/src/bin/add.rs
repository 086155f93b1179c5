//! Sum of integers of any size: "3 4" -> 7.
use nebula_functions::{input_text, numbers, print};
use num_bigint::BigInt;

fn main() {
    let terms: Vec<BigInt> = numbers(&input_text(), 1, 1024);
    print(terms.iter().sum::<BigInt>());
}
