//! JSON in: the same document with object keys sorted, pretty-printed.
//! Anything else: the text upper-cased, with its word and line counts.
fn main() {
    let text = String::from_utf8_lossy(&nebula_functions::input_bytes()).into_owned();
    match serde_json::from_str::<serde_json::Value>(&text) {
        // serde_json's default map is ordered by key, so re-serialising sorts.
        Ok(value) => nebula_functions::print(serde_json::to_string_pretty(&value).expect("a parsed value serialises")),
        Err(_) => nebula_functions::print(format!(
            "{}\nwords: {}\nlines: {}",
            text.to_uppercase(),
            text.split_whitespace().count(),
            text.lines().count()
        )),
    }
}
