//! The n-th Fibonacci number by naive recursion (the thesis's CPU-bound load).
//! Above n = 93 the answer no longer fits in 64 bits: that is an error, never a wrap.
use nebula_functions::{fail, input_text, numbers, print};

const MAX_N: u64 = 93;

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn main() {
    let n: u64 = numbers(&input_text(), 1, 1)[0];
    if n > MAX_N {
        fail(&format!("n must be at most {MAX_N} (fib({}) overflows 64 bits)", MAX_N + 1));
    }
    print(fib(n));
}
