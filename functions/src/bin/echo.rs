//! Returns its input unchanged (bytes, not text).
use std::io::Write;

fn main() {
    let input = nebula_functions::input_bytes();
    let _ = std::io::stdout().write_all(&input);
}
