//! What a call of a function sees besides its input: the fixed arguments,
//! environment and read-only files of its manifest (none for a plain module).
//! Read once when the function is loaded, shared by all its calls.

use std::sync::Arc;

use nebula_protocol::manifest::{self, Bundle};

use super::bundle_fs::BundleFiles;

#[derive(Default)]
pub struct CallSetup {
    /// After argument 0, which every call sees (`profile::ARGV0`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub files: Option<MountedFiles>,
}

/// A bundle's files and where the guest finds them.
pub struct MountedFiles {
    pub mount: String,
    pub files: Arc<BundleFiles>,
}

impl CallSetup {
    /// The setup a stored blob (its hash checked) gives its calls.
    pub fn of_blob(blob: &[u8]) -> Result<Self, String> {
        if !manifest::is_bundle(blob) {
            return Ok(Self::default());
        }
        let bundle = Bundle::read_stored(blob).map_err(|error| error.to_string())?;
        let manifest = bundle.manifest;
        let files = match manifest.files.is_empty() {
            true => None,
            false => {
                let entries = manifest
                    .files
                    .iter()
                    .zip(&bundle.files)
                    .map(|(file, contents)| (file.path.clone(), bytes::Bytes::copy_from_slice(contents)))
                    .collect();
                Some(MountedFiles { mount: manifest.mount, files: Arc::new(BundleFiles::new(entries)?) })
            }
        };
        Ok(Self { args: manifest.args, env: manifest.env, files })
    }

    /// Memory it holds, counted in the loaded modules' byte budget.
    pub fn bytes(&self) -> u64 {
        let strings = self.args.iter().map(String::len).sum::<usize>()
            + self.env.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>();
        strings as u64 + self.files.as_ref().map_or(0, |mounted| mounted.files.bytes())
    }
}
