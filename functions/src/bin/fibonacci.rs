//! The n-th Fibonacci number, iteratively, with big integers: "10" -> 55.
use nebula_functions::{fail, input_text, numbers, print};
use num_bigint::BigUint;

const MAX_N: u64 = 100_000;

fn main() {
    let n: u64 = numbers(&input_text(), 1, 1)[0];
    if n > MAX_N {
        fail(&format!("n must be at most {MAX_N}"));
    }
    let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
    for _ in 0..n {
        let next = &a + &b;
        a = std::mem::replace(&mut b, next);
    }
    print(a);
}
