//! What `nebula deploy` (and `nebula hash`) send for a function: the module
//! as it is, or a bundle of the module with fixed arguments, environment and
//! the files of a directory (`nebula_protocol::manifest`), given by flags or
//! by a manifest file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use nebula_protocol::manifest::{self, FunctionParts};
use serde::Deserialize;

/// The flags that turn a module into a function with a manifest.
#[derive(Args, Debug, Default, Clone)]
pub struct ManifestFlags {
    /// A fixed argument after argument 0 (repeat for more, in order).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// A fixed environment variable NAME=VALUE (repeat for more).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A directory whose files the function reads (read-only, bundled).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Where the function finds those files.
    #[arg(long, value_name = "GUEST_PATH", requires = "dir", default_value = manifest::DEFAULT_MOUNT)]
    pub mount: String,
}

impl ManifestFlags {
    fn is_empty(&self) -> bool {
        self.args.is_empty() && self.env.is_empty() && self.dir.is_none()
    }
}

/// A manifest file (TOML): the same parts as the flags, paths relative to
/// the file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    module: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    dir: Option<PathBuf>,
    mount: Option<String>,
}

/// The bytes a deploy of `file` sends: the file as it is (no flags), a
/// module with `flags`, or the function a manifest file (`*.toml`) describes.
pub fn function_bytes(file: &Path, flags: &ManifestFlags) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let is_manifest_file = file.extension().is_some_and(|extension| extension == "toml");
    if !is_manifest_file {
        if flags.is_empty() {
            // As it is: the node judges it (and refuses what is not a function).
            return Ok(bytes);
        }
        if !bytes.starts_with(b"\0asm") {
            bail!("--arg, --env and --dir apply to a wasm module; {} is not one", file.display());
        }
        let env = flags.env.iter().map(|pair| split_env(pair)).collect::<anyhow::Result<_>>()?;
        let files = flags.dir.as_deref().map(read_dir_files).transpose()?.unwrap_or_default();
        let mount = flags.dir.as_ref().map(|_| flags.mount.clone());
        return bundle(FunctionParts { module: &bytes, args: flags.args.clone(), env, mount, files });
    }
    if !flags.is_empty() {
        bail!("--arg, --env and --dir apply to a wasm module, not to a manifest file ({})", file.display());
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", file.display()))?;
    let described: ManifestFile =
        toml::from_str(text).with_context(|| format!("reading manifest {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let module_path = base.join(&described.module);
    let module = std::fs::read(&module_path).with_context(|| format!("reading module {}", module_path.display()))?;
    let files = described.dir.as_ref().map(|dir| read_dir_files(&base.join(dir))).transpose()?.unwrap_or_default();
    let mount = described.dir.as_ref().map(|_| described.mount.unwrap_or_else(|| manifest::DEFAULT_MOUNT.into()));
    let env = described.env.into_iter().collect();
    bundle(FunctionParts { module: &module, args: described.args, env, mount, files })
}

fn bundle(parts: FunctionParts<'_>) -> anyhow::Result<Vec<u8>> {
    if !parts.module.starts_with(b"\0asm") {
        bail!("the manifest's module is not a wasm binary");
    }
    if parts.args.is_empty() && parts.env.is_empty() && parts.files.is_empty() {
        // Nothing to add (a manifest file naming only its module, an empty --dir): the module is the function.
        return Ok(parts.module.to_vec());
    }
    manifest::encode_bundle(parts).map_err(|error| anyhow::anyhow!("bad manifest: {error}"))
}

fn split_env(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => bail!("--env {pair:?}: expected NAME=VALUE"),
    }
}

/// Every regular file under `dir`, by its `/`-separated path relative to
/// it. Symbolic links are refused rather than followed out of the directory.
fn read_dir_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let here = dir.join(&relative);
        for entry in std::fs::read_dir(&here).with_context(|| format!("reading directory {}", here.display()))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let name = path
                    .to_str()
                    .ok_or_else(|| anyhow::anyhow!("{}: file names must be UTF-8", path.display()))?
                    .replace(std::path::MAIN_SEPARATOR, "/");
                let contents = std::fs::read(dir.join(&path))?;
                total += contents.len() as u64;
                if total > manifest::MAX_FILE_BYTES {
                    bail!(
                        "{}: the files take over {} bytes, the most a function carries",
                        dir.display(),
                        manifest::MAX_FILE_BYTES
                    );
                }
                files.push((name, contents));
            } else {
                bail!("{}: only regular files and directories can be bundled", dir.join(&path).display());
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::manifest::Bundle;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn flags_and_a_manifest_file_give_the_same_function() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prog.wasm"), MODULE).unwrap();
        std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
        std::fs::write(dir.path().join("data/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("data/sub/b.txt"), "bee").unwrap();
        let flags = ManifestFlags {
            args: vec!["-x".into(), "two words".into()],
            env: vec!["LANG=C".into(), "EMPTY=".into()],
            dir: Some(dir.path().join("data")),
            mount: "/data".into(),
        };
        let from_flags = function_bytes(&dir.path().join("prog.wasm"), &flags).unwrap();
        let manifest = "module = \"prog.wasm\"\nargs = [\"-x\", \"two words\"]\ndir = \"data\"\n\
                        [env]\nLANG = \"C\"\nEMPTY = \"\"\n";
        std::fs::write(dir.path().join("fn.toml"), manifest).unwrap();
        let from_file = function_bytes(&dir.path().join("fn.toml"), &ManifestFlags::default()).unwrap();
        assert_eq!(from_flags, from_file);
        let bundle = Bundle::parse(&from_flags).unwrap();
        assert_eq!(bundle.module, MODULE);
        let paths: Vec<&str> = bundle.manifest.files.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "sub/b.txt"]);
        assert_eq!(bundle.manifest.env, [("EMPTY".into(), "".into()), ("LANG".into(), "C".into())]);
    }

    #[test]
    fn a_module_without_flags_is_sent_as_it_is_and_bad_input_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("prog.wasm");
        std::fs::write(&module, MODULE).unwrap();
        assert_eq!(function_bytes(&module, &ManifestFlags::default()).unwrap(), MODULE);
        let bad_env = ManifestFlags { env: vec!["NOVALUE".into()], ..Default::default() };
        assert!(function_bytes(&module, &bad_env).unwrap_err().to_string().contains("NAME=VALUE"));
        let bad_mount = ManifestFlags { dir: Some(dir.path().into()), mount: "relative".into(), ..Default::default() };
        assert!(function_bytes(&module, &bad_mount).unwrap_err().to_string().contains("absolute"));
        std::fs::write(dir.path().join("fn.toml"), "module = \"prog.wasm\"\nargz = []\n").unwrap();
        let error = function_bytes(&dir.path().join("fn.toml"), &ManifestFlags::default()).unwrap_err();
        assert!(format!("{error:#}").contains("unknown field"), "{error:#}");
        std::fs::write(dir.path().join("only-module.toml"), "module = \"prog.wasm\"\n").unwrap();
        let only_module = function_bytes(&dir.path().join("only-module.toml"), &ManifestFlags::default()).unwrap();
        assert_eq!(only_module, MODULE, "a manifest that adds nothing is the module itself");
        std::fs::write(dir.path().join("text"), "hello").unwrap();
        let flags = ManifestFlags { args: vec!["x".into()], ..Default::default() };
        assert!(function_bytes(&dir.path().join("text"), &flags).unwrap_err().to_string().contains("not one"));
    }
}
