//! Functions as content-addressed manifests: a module plus fixed arguments,
//! environment and read-only files, all in one blob (a *bundle*) whose
//! BLAKE3 hash is the function's id. The id names it, keys its calls, and it
//! travels, replicates and is verified exactly like a plain module, because to
//! the mesh it is one: a blob named by its hash.
//!
//! Layout: `MAGIC`, the header's length (u32, little-endian), the header
//! ([`Manifest`] in postcard), the module's bytes, then every file's bytes in
//! the header's order. Only one encoding of a manifest is accepted (sorted,
//! unique, re-encoding gives the same bytes), so one function has one id.
//!
//! The module is carried inside the bundle rather than referenced by its id:
//! a bundle is then complete on its own (no fetch of a second blob before a
//! call can run, nothing in the mesh core changes), at the price of sending a
//! module again with each manifest that uses it.

use serde::{Deserialize, Serialize};

use crate::ids::ModuleId;

/// First bytes of a bundle; a wasm binary starts with `\0asm` instead.
pub const MAGIC: &[u8; 8] = b"\0nebfn1\n";

/// Where the files appear to the guest unless the manifest says otherwise.
pub const DEFAULT_MOUNT: &str = "/data";

pub const MAX_ARGS: usize = 256;
pub const MAX_ENV: usize = 256;
/// Arguments and environment together (bytes of every string).
pub const MAX_ARGS_ENV_BYTES: usize = 64 * 1024;
pub const MAX_FILES: usize = 4096;
pub const MAX_PATH_BYTES: usize = 1024;
/// Files are held in memory while a function is loaded, so they are bounded
/// on their own, below any node's module limit.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
const MAX_HEADER_BYTES: usize = 4 << 20;

/// What a function is besides its module. Serialised as the bundle's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// BLAKE3 of the module's bytes, which follow the header.
    pub module: ModuleId,
    pub module_size: u64,
    /// Arguments after argument 0 (which stays the profile's fixed one).
    pub args: Vec<String>,
    /// Sorted by name, names unique.
    pub env: Vec<(String, String)>,
    /// The guest path of the read-only directory holding `files`.
    pub mount: String,
    /// Sorted by path, paths unique; directories are implied by the paths.
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative, `/`-separated, no `.` or `..` components.
    pub path: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not a function bundle (it does not start with Nebula's bundle header)")]
    NotABundle,
    #[error("the bundle's header is damaged: {0}")]
    Header(String),
    #[error("the bundle's header is not in canonical form (build bundles with `nebula deploy`)")]
    NotCanonical,
    #[error("the manifest adds nothing to its module (no arguments, environment or files): deploy the module itself")]
    Empty,
    #[error("too many arguments: {0}, at most {MAX_ARGS}")]
    TooManyArgs(usize),
    #[error("too many environment variables: {0}, at most {MAX_ENV}")]
    TooManyEnv(usize),
    #[error("arguments and environment take {0} bytes, at most {MAX_ARGS_ENV_BYTES}")]
    ArgsEnvTooLarge(usize),
    #[error("argument {0} contains a NUL byte")]
    NulInArg(usize),
    #[error("environment variable {0:?}: {1}")]
    BadEnv(String, &'static str),
    #[error("environment variable {0:?} is given twice (or the list is not sorted)")]
    EnvNotSorted(String),
    #[error("mount point {0:?}: {1}")]
    BadMount(String, &'static str),
    #[error("file path {0:?}: {1}")]
    BadPath(String, &'static str),
    #[error("file {0:?} is given twice (or the list is not sorted)")]
    FilesNotSorted(String),
    #[error("too many files: {0}, at most {MAX_FILES}")]
    TooManyFiles(usize),
    #[error("the files take {0} bytes, at most {MAX_FILE_BYTES}")]
    FilesTooLarge(u64),
    #[error("the bundle is {actual} bytes but its header describes {expected}")]
    WrongLength { expected: u64, actual: u64 },
    #[error("the module inside the bundle does not match the hash its header gives")]
    ModuleHashMismatch,
}

/// A bundle read in place: the header and slices of the blob.
#[derive(Debug)]
pub struct Bundle<'a> {
    pub manifest: Manifest,
    pub module: &'a [u8],
    /// Contents of `manifest.files`, in the same order.
    pub files: Vec<&'a [u8]>,
}

/// Whether `bytes` start like a bundle (then [`Bundle::parse`] says if it is one).
pub fn is_bundle(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

impl Manifest {
    /// Every rule a manifest must keep, apart from the bytes that follow it.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.args.len() > MAX_ARGS {
            return Err(ManifestError::TooManyArgs(self.args.len()));
        }
        if self.env.len() > MAX_ENV {
            return Err(ManifestError::TooManyEnv(self.env.len()));
        }
        let strings = self.args.iter().map(String::len).sum::<usize>()
            + self.env.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>();
        if strings > MAX_ARGS_ENV_BYTES {
            return Err(ManifestError::ArgsEnvTooLarge(strings));
        }
        if let Some(index) = self.args.iter().position(|arg| arg.contains('\0')) {
            return Err(ManifestError::NulInArg(index + 1));
        }
        for (name, value) in &self.env {
            let bad = |reason| Err(ManifestError::BadEnv(name.clone(), reason));
            if name.is_empty() {
                return bad("the name is empty");
            }
            if name.contains('=') || name.contains('\0') {
                return bad("the name contains '=' or a NUL byte");
            }
            if value.contains('\0') {
                return bad("the value contains a NUL byte");
            }
        }
        if let Some(pair) = self.env.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(ManifestError::EnvNotSorted(pair[1].0.clone()));
        }
        if self.args.is_empty() && self.env.is_empty() && self.files.is_empty() {
            return Err(ManifestError::Empty);
        }
        check_mount(&self.mount)?;
        if self.files.is_empty() && self.mount != DEFAULT_MOUNT {
            // Otherwise one function would have an id per unused mount point.
            return Err(ManifestError::BadMount(self.mount.clone(), "given without files"));
        }
        if self.files.len() > MAX_FILES {
            return Err(ManifestError::TooManyFiles(self.files.len()));
        }
        for file in &self.files {
            check_relative_path(&file.path).map_err(|reason| ManifestError::BadPath(file.path.clone(), reason))?;
        }
        if let Some(pair) = self.files.windows(2).find(|pair| pair[0].path >= pair[1].path) {
            return Err(ManifestError::FilesNotSorted(pair[1].path.clone()));
        }
        // A file that is also a directory of another ("a" and "a/b"; they need
        // not be neighbours: "a.txt" sorts between them).
        for file in &self.files {
            let directories = file.path.match_indices('/').map(|(at, _)| &file.path[..at]);
            for directory in directories {
                if self.files.binary_search_by(|other| other.path.as_str().cmp(directory)).is_ok() {
                    return Err(ManifestError::BadPath(directory.to_owned(), "is both a file and a directory"));
                }
            }
        }
        let file_bytes = self.file_bytes();
        if file_bytes > MAX_FILE_BYTES {
            return Err(ManifestError::FilesTooLarge(file_bytes));
        }
        Ok(())
    }

    /// Bytes of all files together (saturating: sizes come from a peer's blob).
    pub fn file_bytes(&self) -> u64 {
        self.files.iter().fold(0u64, |total, file| total.saturating_add(file.size))
    }

    /// The header bytes of a bundle for this manifest.
    fn header(&self) -> Vec<u8> {
        let header = postcard::to_stdvec(self).expect("a manifest always serialises");
        let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes
    }
}

/// The parts of a function before they are bundled.
pub struct FunctionParts<'a> {
    pub module: &'a [u8],
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mount: Option<String>,
    /// Relative paths and contents, in any order.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Builds the one canonical bundle of `parts` (sorting the environment and
/// the files), checked as a node would check it.
pub fn encode_bundle(parts: FunctionParts<'_>) -> Result<Vec<u8>, ManifestError> {
    let FunctionParts { module, args, mut env, mount, mut files } = parts;
    env.sort();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let manifest = Manifest {
        module: ModuleId::of_bytes(module),
        module_size: module.len() as u64,
        args,
        env,
        mount: mount.unwrap_or_else(|| DEFAULT_MOUNT.to_owned()),
        files: files
            .iter()
            .map(|(path, bytes)| ManifestFile { path: path.clone(), size: bytes.len() as u64 })
            .collect(),
    };
    manifest.validate()?;
    let mut bundle = manifest.header();
    bundle.extend_from_slice(module);
    for (_, bytes) in &files {
        bundle.extend_from_slice(bytes);
    }
    Ok(bundle)
}

impl<'a> Bundle<'a> {
    /// Reads and checks a bundle: header, lengths, the module's hash and the
    /// canonical encoding. The files are not copied.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ManifestError> {
        let bundle = Self::read_stored(bytes)?;
        if ModuleId::of_bytes(bundle.module) != bundle.manifest.module {
            return Err(ManifestError::ModuleHashMismatch);
        }
        Ok(bundle)
    }

    /// [`Bundle::parse`] of a blob whose bytes already match the id they
    /// were checked under (a stored blob, its hash verified): every rule but
    /// the module's own hash, which the blob's hash vouches for, so a 100 MB
    /// module is not hashed again each time it is loaded or compiled.
    pub fn read_stored(bytes: &'a [u8]) -> Result<Self, ManifestError> {
        let manifest = Self::parse_header(bytes)?;
        let header_end = header_end(bytes)?;
        let expected = (header_end as u64).saturating_add(manifest.module_size).saturating_add(manifest.file_bytes());
        if expected != bytes.len() as u64 {
            return Err(ManifestError::WrongLength { expected, actual: bytes.len() as u64 });
        }
        let (module, mut rest) = bytes[header_end..].split_at(manifest.module_size as usize);
        let mut files = Vec::with_capacity(manifest.files.len());
        for file in &manifest.files {
            let (contents, after) = rest.split_at(file.size as usize);
            files.push(contents);
            rest = after;
        }
        Ok(Self { manifest, module, files })
    }

    /// The header alone (for listings), with every rule checked but without
    /// reading or hashing what follows it.
    pub fn parse_header(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let end = header_end(bytes)?;
        let header = &bytes[MAGIC.len() + 4..end];
        let manifest: Manifest =
            postcard::from_bytes(header).map_err(|error| ManifestError::Header(error.to_string()))?;
        if manifest.header()[MAGIC.len() + 4..] != *header {
            return Err(ManifestError::NotCanonical);
        }
        manifest.validate()?;
        Ok(manifest)
    }
}

/// Where the header ends (and the module starts).
fn header_end(bytes: &[u8]) -> Result<usize, ManifestError> {
    if !is_bundle(bytes) {
        return Err(ManifestError::NotABundle);
    }
    let length = bytes
        .get(MAGIC.len()..MAGIC.len() + 4)
        .ok_or_else(|| ManifestError::Header("it ends before the header's length".into()))?;
    let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
    if length > MAX_HEADER_BYTES {
        return Err(ManifestError::Header(format!("a header of {length} bytes, at most {MAX_HEADER_BYTES}")));
    }
    let end = MAGIC.len() + 4 + length;
    if bytes.len() < end {
        return Err(ManifestError::Header("it ends inside the header".into()));
    }
    Ok(end)
}

fn check_mount(mount: &str) -> Result<(), ManifestError> {
    let bad = |reason| Err(ManifestError::BadMount(mount.to_owned(), reason));
    let Some(relative) = mount.strip_prefix('/') else { return bad("it must be an absolute path") };
    if relative.is_empty() {
        return bad("it cannot be the root directory");
    }
    check_relative_path(relative).or_else(bad)
}

/// A path inside the bundle: relative, `/`-separated, normal components only.
pub fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("it is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return Err("it is longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return Err("it must be relative to the bundle");
    }
    if path.contains('\0') || path.contains('\\') {
        return Err("it contains a NUL byte or a backslash");
    }
    for component in path.split('/') {
        match component {
            "" => return Err("it has an empty component (\"//\" or a trailing \"/\")"),
            "." | ".." => return Err("it has a \".\" or \"..\" component"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(files: Vec<(&str, &[u8])>) -> FunctionParts<'static> {
        FunctionParts {
            module: b"\0asm\x01\0\0\0",
            args: vec!["-Tsvg".into(), "in put".into()],
            env: vec![("Z".into(), "last".into()), ("A".into(), "first=1".into())],
            mount: None,
            files: files.into_iter().map(|(path, bytes)| (path.to_owned(), bytes.to_vec())).collect(),
        }
    }

    #[test]
    fn a_bundle_reads_back_with_its_parts_in_canonical_order() {
        let bundle = encode_bundle(parts(vec![("sub/b.txt", b"bee"), ("a.txt", b"a")])).unwrap();
        let parsed = Bundle::parse(&bundle).unwrap();
        assert_eq!(parsed.module, b"\0asm\x01\0\0\0");
        assert_eq!(parsed.manifest.args, ["-Tsvg", "in put"]);
        assert_eq!(parsed.manifest.env, [("A".into(), "first=1".into()), ("Z".into(), "last".into())]);
        assert_eq!(parsed.manifest.mount, DEFAULT_MOUNT);
        let paths: Vec<&str> = parsed.manifest.files.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "sub/b.txt"]);
        assert_eq!(parsed.files, [&b"a"[..], &b"bee"[..]]);
        // The order the parts were given in does not change the id.
        let reordered = encode_bundle(parts(vec![("a.txt", b"a"), ("sub/b.txt", b"bee")])).unwrap();
        assert_eq!(ModuleId::of_bytes(&bundle), ModuleId::of_bytes(&reordered));
    }

    #[test]
    fn damaged_or_non_canonical_bundles_are_refused() {
        let bundle = encode_bundle(parts(vec![("a.txt", b"a")])).unwrap();
        assert_eq!(Bundle::parse(b"\0asm").unwrap_err(), ManifestError::NotABundle);
        let truncated = &bundle[..bundle.len() - 1];
        assert!(matches!(Bundle::parse(truncated), Err(ManifestError::WrongLength { .. })));
        let mut extended = bundle.clone();
        extended.push(0);
        assert!(matches!(Bundle::parse(&extended), Err(ManifestError::WrongLength { .. })));
        let mut other_module = bundle.clone();
        let module_at = bundle.len() - 1 - 8;
        other_module[module_at] ^= 1;
        assert_eq!(Bundle::parse(&other_module).unwrap_err(), ManifestError::ModuleHashMismatch);
        assert!(matches!(Bundle::parse(&bundle[..10]), Err(ManifestError::Header(_))));
        // The same manifest with its files out of order is another encoding: refused.
        let mut manifest = Bundle::parse(&bundle).unwrap().manifest;
        manifest.env.reverse();
        let mut unsorted = manifest.header();
        unsorted.extend_from_slice(&bundle[header_end(&bundle).unwrap()..]);
        assert!(matches!(Bundle::parse(&unsorted), Err(ManifestError::EnvNotSorted(_))));
    }

    proptest::proptest! {
        /// Whatever a peer or a client sends, reading it is an answer, never a panic.
        #[test]
        fn reading_any_bytes_never_panics(header in proptest::collection::vec(0u8..=255, 0..300), at in 0usize..400, byte in 0u8..=255) {
            let mut random = MAGIC.to_vec();
            random.extend_from_slice(&(header.len() as u32).to_le_bytes());
            random.extend_from_slice(&header);
            let _ = Bundle::parse(&random);
            let mut damaged = encode_bundle(parts(vec![("a.txt", b"a"), ("b/c", b"cc")])).unwrap();
            let at = at % damaged.len();
            damaged[at] = byte;
            let _ = Bundle::parse(&damaged);
            let _ = Bundle::parse(&damaged[..at]);
        }
    }

    #[test]
    fn bad_manifests_get_a_reason() {
        let error = |parts: FunctionParts<'static>| encode_bundle(parts).unwrap_err().to_string();
        assert!(error(parts(vec![("../etc/passwd", b"")])).contains("\"..\""));
        assert!(error(parts(vec![("/abs", b"")])).contains("relative"));
        assert!(error(parts(vec![("a//b", b"")])).contains("empty component"));
        assert!(error(parts(vec![("a", b""), ("a/b", b"")])).contains("both a file and a directory"));
        let apart = parts(vec![("a", b""), ("a.txt", b""), ("a/b", b"")]);
        assert!(error(apart).contains("both a file and a directory"), "not neighbours once sorted");
        let nothing = FunctionParts { module: b"\0asm", args: vec![], env: vec![], mount: None, files: vec![] };
        assert!(error(nothing).contains("adds nothing"));
        let mut unused_mount = parts(vec![]);
        unused_mount.mount = Some("/elsewhere".into());
        assert!(error(unused_mount).contains("without files"));
        assert!(error(parts(vec![("a", b""), ("a", b"")])).contains("given twice"));
        let mut many = parts(vec![]);
        many.args = vec!["x".into(); MAX_ARGS + 1];
        assert!(error(many).contains("too many arguments"));
        let mut big = parts(vec![]);
        big.args = vec!["x".repeat(MAX_ARGS_ENV_BYTES + 1)];
        assert!(error(big).contains("bytes, at most"));
        let mut nul = parts(vec![]);
        nul.args = vec!["a\0b".into()];
        assert!(error(nul).contains("NUL"));
        let mut env = parts(vec![]);
        env.env = vec![("A=B".into(), "c".into())];
        assert!(error(env).contains("'='"));
        let mut mount = parts(vec![]);
        mount.mount = Some("data".into());
        assert!(error(mount).contains("absolute"));
        let mut root = parts(vec![]);
        root.mount = Some("/".into());
        assert!(error(root).contains("root"));
        let mut escape = parts(vec![]);
        escape.mount = Some("/data/../etc".into());
        assert!(error(escape).contains("\"..\""));
    }
}
