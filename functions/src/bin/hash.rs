//! BLAKE3 of the input, as hex.
fn main() {
    nebula_functions::print(blake3::hash(&nebula_functions::input_bytes()).to_hex());
}
