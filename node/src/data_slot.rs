//! Packs data into a module built with a data slot (see
//! `functions/src/lib.rs`, `data_slot`): the function is compiled once, and
//! each packing of data is a new module with its own hash. This is how the
//! Academemes catalogue travels: adding memes is a deploy, not a rebuild.

/// Must match `nebula_functions::data_slot::MARKER`.
pub const MARKER: &[u8; 24] = b"NEBULA-DATA-SLOT-v1:\x7f\x7e\x7d\x7c";
const HEADER: usize = MARKER.len() + 8;

/// `wasm` with `data` written into its slot (a new module; `wasm` is not changed).
pub fn pack(wasm: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let mut found = wasm.windows(MARKER.len()).enumerate().filter(|(_, window)| window == MARKER).map(|(at, _)| at);
    let at = found.next().ok_or("this module has no data slot (build it with nebula_functions::data_slot)")?;
    if found.next().is_some() {
        return Err("this module has more than one data slot".into());
    }
    let header = wasm.get(at..at + HEADER).ok_or("the data slot is truncated")?;
    let capacity = u32::from_le_bytes(header[MARKER.len()..MARKER.len() + 4].try_into().expect("4 bytes")) as usize;
    if wasm.len() < at + HEADER + capacity {
        return Err("the data slot is truncated".into());
    }
    if data.len() > capacity {
        return Err(format!("{} bytes of data do not fit the slot of {capacity} bytes", data.len()));
    }
    let mut packed = wasm.to_vec();
    packed[at + MARKER.len() + 4..at + HEADER].copy_from_slice(&(data.len() as u32).to_le_bytes());
    packed[at + HEADER..at + HEADER + data.len()].copy_from_slice(data);
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(capacity: u32) -> Vec<u8> {
        let mut bytes = b"\0asm prefix".to_vec();
        bytes.extend_from_slice(MARKER);
        bytes.extend_from_slice(&capacity.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend(std::iter::repeat_n(0xA5, capacity as usize));
        bytes.extend_from_slice(b"suffix");
        bytes
    }

    #[test]
    fn writes_length_and_bytes_in_place() {
        let wasm = slot(16);
        let packed = pack(&wasm, b"hello").unwrap();
        assert_eq!(packed.len(), wasm.len());
        let at = 11 + MARKER.len();
        assert_eq!(&packed[at + 4..at + 8], &5u32.to_le_bytes());
        assert_eq!(&packed[at + 8..at + 13], b"hello");
        assert!(packed.ends_with(b"suffix"));
        // Packing again replaces the data.
        assert_eq!(&pack(&packed, b"hi").unwrap()[at + 4..at + 10], &[2, 0, 0, 0, b'h', b'i']);
    }

    #[test]
    fn refuses_what_does_not_fit_or_has_no_slot() {
        assert!(pack(&slot(4), b"hello").unwrap_err().contains("do not fit"));
        assert!(pack(b"\0asm", b"x").unwrap_err().contains("no data slot"));
        let mut twice = slot(4);
        twice.extend_from_slice(&slot(4));
        assert!(pack(&twice, b"x").unwrap_err().contains("more than one"));
    }
}
