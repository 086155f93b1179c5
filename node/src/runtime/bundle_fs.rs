//! A function's read-only data files, served to a WASI preview 1 guest as a
//! preopened directory, from memory.
//!
//! Why not a host directory preopened by wasmtime-wasi: it lets host facts
//! through (inode numbers, device ids, access/modification/change times, and
//! the order of directory listings, which on ext4 follows a per-filesystem
//! hash seed), and any of them can make a function's output differ from node
//! to node. Here everything a guest can observe is a function of the bundle:
//! inode numbers are indices, all times are the frozen wall clock, listings
//! are sorted by name.
//!
//! How: the `wasi_snapshot_preview1` functions that take a descriptor or a
//! path are shadowed in the linker. Calls on bundle descriptors (the preopen,
//! fd 3, and what is opened under it) are served here; all others (stdin,
//! stdout, stderr) go to wasmtime-wasi's own implementation. That
//! implementation finds guest memory through the *calling instance's*
//! `memory` export, and a host function called from the host has no calling
//! instance; so each store gets a small wasm instance, the forwarders, that
//! imports the guest's memory, re-exports it, and passes each call on to the
//! original through a table of functions.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::{Caller, Extern, Func, Instance, Linker, Memory, Module, Ref, Table, WasmParams, bail, format_err};

use super::profile::FROZEN_WALL_CLOCK;

const P1: &str = "wasi_snapshot_preview1";

/// The bundle's preopened directory. wasmtime-wasi, given no preopens,
/// only ever holds 0, 1 and 2.
const PREOPEN_FD: u32 = 3;
/// Open bundle descriptors in one call, the preopen included.
const MAX_OPEN: usize = 128;
/// Buffers one read may scatter into (Linux's IOV_MAX): bounds the host's work.
const MAX_IOVS: u32 = 1024;
/// More than the forwarders' few instructions can burn (see `Originals::call`).
const FORWARDER_FUEL: u64 = 1_000;

/// The shadowed functions and their wasm parameters (`i`: i32, `I`: i64);
/// each returns an errno (i32). The forwarders are generated from this list,
/// the original of `SHADOWED[i]` at index `i` of their table.
/// `poll_oneoff` is left to wasmtime-wasi: it answers EBADF for a bundle
/// descriptor, and a guest under the purity profile has nothing to wait for.
const SHADOWED: &[(&str, &str)] = &[
    ("fd_advise", "iIIi"),
    ("fd_allocate", "iII"),
    ("fd_close", "i"),
    ("fd_datasync", "i"),
    ("fd_fdstat_get", "ii"),
    ("fd_fdstat_set_flags", "ii"),
    ("fd_fdstat_set_rights", "iII"),
    ("fd_filestat_get", "ii"),
    ("fd_filestat_set_size", "iI"),
    ("fd_filestat_set_times", "iIIi"),
    ("fd_pread", "iiiIi"),
    ("fd_prestat_dir_name", "iii"),
    ("fd_prestat_get", "ii"),
    ("fd_pwrite", "iiiIi"),
    ("fd_read", "iiii"),
    ("fd_readdir", "iiiIi"),
    ("fd_renumber", "ii"),
    ("fd_seek", "iIii"),
    ("fd_sync", "i"),
    ("fd_tell", "ii"),
    ("fd_write", "iiii"),
    ("path_create_directory", "iii"),
    ("path_filestat_get", "iiiii"),
    ("path_filestat_set_times", "iiiiIIi"),
    ("path_link", "iiiiiii"),
    ("path_open", "iiiiiIIii"),
    ("path_readlink", "iiiiii"),
    ("path_remove_directory", "iii"),
    ("path_rename", "iiiiii"),
    ("path_symlink", "iiiii"),
    ("path_unlink_file", "iii"),
    ("sock_accept", "iii"),
    ("sock_recv", "iiiiii"),
    ("sock_send", "iiiii"),
    ("sock_shutdown", "ii"),
];

/// The WASI errors this module answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Errno {
    Badf = 8,
    Fault = 21,
    Inval = 28,
    Isdir = 31,
    Mfile = 33,
    Nametoolong = 37,
    Noent = 44,
    Notdir = 54,
    Notsock = 57,
    Notsup = 58,
    Rofs = 69,
    Notcapable = 76,
}

const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
const WHENCE_CUR: u32 = 1;
const OFLAGS_CREAT: u32 = 1;
const OFLAGS_DIRECTORY: u32 = 2;
const OFLAGS_TRUNC: u32 = 8;
const FDFLAGS_APPEND: u32 = 1;
const FDFLAGS_NONBLOCK: u32 = 4;
const RIGHTS_FD_WRITE: u64 = 1 << 6;
const RIGHTS_ALL: u64 = (1 << 30) - 1;
/// What a bundle descriptor grants: everything but writing (whatever would
/// change something fails anyway). A directory passes FD_WRITE on, so that
/// wasi-libc asks for it when a program opens a file for writing, and the
/// program gets EROFS from the open, as on a read-only mount.
const RIGHTS_GRANTED: u64 = RIGHTS_ALL & !RIGHTS_FD_WRITE;

/// An immutable set of files: relative `/`-separated paths and their
/// contents; directories are implied by the paths. Shared by all calls of a
/// function (in an `Arc`).
#[derive(Debug)]
pub struct BundleFiles {
    /// The root first. Node `i` has inode number `i + 1`: like everything a
    /// guest sees, a function of the set of paths alone.
    nodes: Vec<Node>,
    bytes: u64,
}

#[derive(Debug)]
struct Node {
    /// The last component ("" for the root).
    name: String,
    /// The root is its own parent.
    parent: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    File(Bytes),
    /// Children, sorted by name (byte order).
    Dir(Vec<usize>),
}

impl BundleFiles {
    /// Checks the paths: no absolute path, no empty, `.` or `..` component,
    /// no NUL, no path twice, no file that is also a directory.
    pub fn new(files: Vec<(String, Bytes)>) -> Result<Self, String> {
        // Path → contents (None: a directory). Sorted, so nothing below
        // depends on the order of `files`.
        let mut paths: BTreeMap<String, Option<Bytes>> = BTreeMap::from([(String::new(), None)]);
        for (path, contents) in files {
            check_path(&path).map_err(|reason| format!("bundle path {path:?}: {reason}"))?;
            for (slash, _) in path.match_indices('/') {
                if let Some(Some(_)) = paths.insert(path[..slash].to_owned(), None) {
                    return Err(format!("bundle path {path:?}: {:?} is a file", &path[..slash]));
                }
            }
            match paths.get(&path) {
                Some(Some(_)) => return Err(format!("bundle path {path:?} appears twice")),
                Some(None) => return Err(format!("bundle path {path:?} is also a directory")),
                None => paths.insert(path, Some(contents)),
            };
        }
        let mut nodes = Vec::with_capacity(paths.len());
        let mut dirs = HashMap::new();
        let mut bytes = 0;
        // A directory sorts before what it holds, so `dirs` has every parent in time.
        for (path, contents) in paths {
            let (parent, name) = match path.rsplit_once('/') {
                Some((parent, name)) => (dirs[parent], name.to_owned()),
                None => (0, path.clone()),
            };
            bytes += (path.len() + contents.as_ref().map_or(0, Bytes::len)) as u64;
            let kind = match contents {
                Some(contents) => Kind::File(contents),
                None => {
                    dirs.insert(path, nodes.len());
                    Kind::Dir(Vec::new())
                }
            };
            nodes.push(Node { name, parent, kind });
        }
        let mut children = vec![Vec::new(); nodes.len()];
        for (index, node) in nodes.iter().enumerate().skip(1) {
            children[node.parent].push(index);
        }
        for list in &mut children {
            list.sort_by(|&a, &b| nodes[a].name.cmp(&nodes[b].name));
        }
        for (node, list) in nodes.iter_mut().zip(children) {
            if let Kind::Dir(children) = &mut node.kind {
                *children = list;
            }
        }
        Ok(Self { nodes, bytes })
    }

    /// Memory the files hold: contents and paths.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn contents(&self, node: usize) -> Option<&Bytes> {
        match &self.nodes[node].kind {
            Kind::File(contents) => Some(contents),
            Kind::Dir(_) => None,
        }
    }

    fn is_dir(&self, node: usize) -> bool {
        matches!(self.nodes[node].kind, Kind::Dir(_))
    }

    fn filetype(&self, node: usize) -> u8 {
        match self.is_dir(node) {
            true => FILETYPE_DIRECTORY,
            false => FILETYPE_REGULAR_FILE,
        }
    }

    /// The metadata of `node`, as a WASI `filestat`: device 0, one link, and
    /// all three times at the frozen wall clock. A directory's size is 0.
    fn filestat(&self, node: usize) -> [u8; 64] {
        let time = FROZEN_WALL_CLOCK.as_nanos() as u64;
        let size = self.contents(node).map_or(0, |contents| contents.len() as u64);
        let mut stat = [0; 64];
        put_u64(&mut stat, 8, node as u64 + 1);
        stat[16] = self.filetype(node);
        for (offset, value) in [(24, 1), (32, size), (40, time), (48, time), (56, time)] {
            put_u64(&mut stat, offset, value);
        }
        stat
    }

    /// What a directory lists: `.`, `..`, then its children by name.
    fn entries(&self, dir: usize) -> impl Iterator<Item = (&[u8], usize)> {
        let children = match &self.nodes[dir].kind {
            Kind::Dir(children) => children.as_slice(),
            Kind::File(_) => &[],
        };
        let dots = [(&b"."[..], dir), (&b".."[..], self.nodes[dir].parent)];
        dots.into_iter().chain(children.iter().map(|&child| (self.nodes[child].name.as_bytes(), child)))
    }

    fn child(&self, dir: usize, name: &[u8]) -> Option<usize> {
        let Kind::Dir(children) = &self.nodes[dir].kind else { return None };
        let found = children.binary_search_by(|&child| self.nodes[child].name.as_bytes().cmp(name));
        found.ok().map(|at| children[at])
    }

    /// The node `path` names from directory `start`. `..` may not climb
    /// above `start` (ENOTCAPABLE): a directory descriptor grants its
    /// subtree and nothing else, as in wasmtime-wasi.
    fn resolve(&self, start: usize, path: &[u8]) -> Result<usize, Errno> {
        if path.is_empty() {
            return Err(Errno::Noent);
        }
        if path.starts_with(b"/") {
            return Err(Errno::Notcapable);
        }
        let (mut node, mut depth) = (start, 0);
        // An empty component ("a//b", or after a trailing "/") stays put, but
        // like any other it needs a directory to stand in.
        for component in path.split(|&byte| byte == b'/') {
            if !self.is_dir(node) {
                return Err(Errno::Notdir);
            }
            match component {
                b"" | b"." => {}
                b".." if depth == 0 => return Err(Errno::Notcapable),
                b".." => (node, depth) = (self.nodes[node].parent, depth - 1),
                name => (node, depth) = (self.child(node, name).ok_or(Errno::Noent)?, depth + 1),
            }
        }
        Ok(node)
    }
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if path.starts_with('/') {
        return Err("it must be relative");
    }
    if path.contains('\0') {
        return Err("it contains a NUL byte");
    }
    match path.split('/').find(|component| ["", ".", ".."].contains(component)) {
        Some(_) => Err("it has an empty, \".\" or \"..\" component"),
        None => Ok(()),
    }
}

/// A bundle as one call's guest sees it: its files under `mount`, and the
/// bundle descriptors the guest holds.
pub struct BundleFs {
    files: Arc<BundleFiles>,
    mount: String,
    open: BTreeMap<u32, Open>,
    /// This store's way to wasmtime-wasi, made when a call on another
    /// descriptor first needs it.
    forwarders: Option<Forwarders>,
}

struct Forwarders {
    instance: Instance,
    /// Where they find the originals.
    originals: Table,
    /// In `SHADOWED` order, the forwarders used so far, each with its
    /// original in the table: most calls need two or three of them, and
    /// making all up front would cost more than the call.
    ready: [Option<Func>; SHADOWED.len()],
}

#[derive(Clone, Copy)]
struct Open {
    node: usize,
    position: u64,
    /// APPEND and NONBLOCK, as set; they change nothing on read-only memory.
    flags: u16,
    preopen: bool,
}

impl BundleFs {
    /// `files` preopened at fd 3 as `mount`, an absolute guest path such as
    /// `/data` (the manifest checks it).
    pub fn new(files: Arc<BundleFiles>, mount: &str) -> Self {
        let root = Open { node: 0, position: 0, flags: 0, preopen: true };
        Self { files, mount: mount.to_owned(), open: BTreeMap::from([(PREOPEN_FD, root)]), forwarders: None }
    }

    fn owns(&self, fd: u32) -> bool {
        self.open.contains_key(&fd)
    }

    fn get(&self, fd: u32) -> Result<Open, Errno> {
        self.open.get(&fd).copied().ok_or(Errno::Badf)
    }

    fn get_mut(&mut self, fd: u32) -> Result<&mut Open, Errno> {
        self.open.get_mut(&fd).ok_or(Errno::Badf)
    }

    fn dir(&self, fd: u32) -> Result<usize, Errno> {
        let node = self.get(fd)?.node;
        if !self.files.is_dir(node) {
            return Err(Errno::Notdir);
        }
        Ok(node)
    }

    /// The lowest free descriptor from 3 on.
    fn free_fd(&self) -> Result<u32, Errno> {
        if self.open.len() >= MAX_OPEN {
            return Err(Errno::Mfile);
        }
        (PREOPEN_FD..=PREOPEN_FD + MAX_OPEN as u32).find(|fd| !self.owns(*fd)).ok_or(Errno::Mfile)
    }

    fn fd_read(&mut self, mem: &mut GuestMemory, fd: u32, iovs: u32, iovs_len: u32, nread: u32) -> Result<(), Errno> {
        let open = self.get(fd)?;
        let contents = self.files.contents(open.node).ok_or(Errno::Isdir)?;
        let read = scatter(mem, iovs, iovs_len, rest(contents, open.position))?;
        mem.write(nread, &read.to_le_bytes())?;
        self.get_mut(fd)?.position += u64::from(read);
        Ok(())
    }

    fn fd_pread(
        &self,
        mem: &mut GuestMemory,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        at: u64,
        nread: u32,
    ) -> Result<(), Errno> {
        let contents = self.files.contents(self.get(fd)?.node).ok_or(Errno::Isdir)?;
        let read = scatter(mem, iovs, iovs_len, rest(contents, at))?;
        mem.write(nread, &read.to_le_bytes())
    }

    /// Directories cannot seek (EBADF, as in wasmtime-wasi); past the end is
    /// allowed, before the start is not.
    fn fd_seek(&mut self, mem: &mut GuestMemory, fd: u32, delta: i64, whence: u32, to: u32) -> Result<(), Errno> {
        let open = self.get(fd)?;
        let size = self.files.contents(open.node).ok_or(Errno::Badf)?.len();
        let base = match whence {
            0 => 0,
            WHENCE_CUR => i128::from(open.position),
            2 => size as i128,
            _ => return Err(Errno::Inval),
        };
        let position = u64::try_from(base + i128::from(delta)).map_err(|_| Errno::Inval)?;
        mem.write(to, &position.to_le_bytes())?;
        self.get_mut(fd)?.position = position;
        Ok(())
    }

    fn fd_fdstat_get(&self, mem: &mut GuestMemory, fd: u32, stat: u32) -> Result<(), Errno> {
        let open = self.get(fd)?;
        let inheriting = match self.files.is_dir(open.node) {
            true => RIGHTS_ALL,
            false => RIGHTS_GRANTED,
        };
        let mut fdstat = [0; 24];
        fdstat[0] = self.files.filetype(open.node);
        fdstat[2..4].copy_from_slice(&open.flags.to_le_bytes());
        put_u64(&mut fdstat, 8, RIGHTS_GRANTED);
        put_u64(&mut fdstat, 16, inheriting);
        mem.write(stat, &fdstat)
    }

    /// As wasmtime-wasi: files only, and only APPEND and NONBLOCK.
    fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u32) -> Result<(), Errno> {
        let node = self.get(fd)?.node;
        if self.files.is_dir(node) {
            return Err(Errno::Badf);
        }
        if flags & !(FDFLAGS_APPEND | FDFLAGS_NONBLOCK) != 0 {
            return Err(Errno::Inval);
        }
        self.get_mut(fd)?.flags = flags as u16;
        Ok(())
    }

    fn fd_advise(&self, fd: u32, advice: u32) -> Result<(), Errno> {
        if self.files.is_dir(self.get(fd)?.node) {
            return Err(Errno::Badf);
        }
        match advice {
            0..=5 => Ok(()),
            _ => Err(Errno::Inval),
        }
    }

    fn fd_readdir(
        &self,
        mem: &mut GuestMemory,
        fd: u32,
        buf: u32,
        len: u32,
        cookie: u64,
        used: u32,
    ) -> Result<(), Errno> {
        let dir = self.dir(fd)?;
        mem.range(buf, len)?;
        // Entry `i` has cookie `i`, so a listing can be resumed at any entry.
        let skip = usize::try_from(cookie).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for (index, (name, node)) in self.files.entries(dir).enumerate().skip(skip) {
            out.extend_from_slice(&(index as u64 + 1).to_le_bytes());
            out.extend_from_slice(&(node as u64 + 1).to_le_bytes());
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(&[self.files.filetype(node), 0, 0, 0]);
            out.extend_from_slice(name);
            // A full buffer (the last entry cut short) tells the guest to ask again.
            if out.len() >= len as usize {
                out.truncate(len as usize);
                break;
            }
        }
        mem.write(buf, &out)?;
        mem.write(used, &(out.len() as u32).to_le_bytes())
    }

    fn fd_prestat_get(&self, mem: &mut GuestMemory, fd: u32, prestat: u32) -> Result<(), Errno> {
        if !self.get(fd)?.preopen {
            return Err(Errno::Badf);
        }
        // Tag 0, a directory; then the length of its name.
        let mut bytes = [0; 8];
        bytes[4..].copy_from_slice(&(self.mount.len() as u32).to_le_bytes());
        mem.write(prestat, &bytes)
    }

    fn fd_prestat_dir_name(&self, mem: &mut GuestMemory, fd: u32, path: u32, len: u32) -> Result<(), Errno> {
        if !self.get(fd)?.preopen {
            return Err(Errno::Badf);
        }
        if self.mount.len() > len as usize {
            return Err(Errno::Nametoolong);
        }
        mem.write(path, self.mount.as_bytes())
    }

    /// `to` is closed first if open; it may be a descriptor wasmtime-wasi
    /// held (closed by the caller), which then becomes a bundle descriptor.
    fn fd_renumber(&mut self, from: u32, to: u32) -> Result<(), Errno> {
        let open = self.open.remove(&from).ok_or(Errno::Badf)?;
        self.open.insert(to, open);
        Ok(())
    }

    /// Opening for writing, creating or truncating is EROFS, before the path
    /// is even looked up. Only FD_WRITE among the rights counts (as in
    /// wasmtime-wasi): Rust's std asks for PATH_CREATE_FILE and others even
    /// to read, and WASI lets a runtime grant fewer rights than asked.
    #[allow(clippy::too_many_arguments)]
    fn path_open(
        &mut self,
        mem: &mut GuestMemory,
        fd: u32,
        path: u32,
        path_len: u32,
        oflags: u32,
        rights: u64,
        fdflags: u32,
        opened: u32,
    ) -> Result<(), Errno> {
        let dir = self.dir(fd)?;
        let path = mem.read(path, path_len)?;
        if oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0 || rights & RIGHTS_FD_WRITE != 0 {
            return Err(Errno::Rofs);
        }
        let node = self.files.resolve(dir, path)?;
        if oflags & OFLAGS_DIRECTORY != 0 && !self.files.is_dir(node) {
            return Err(Errno::Notdir);
        }
        let new = self.free_fd()?;
        mem.write(opened, &new.to_le_bytes())?;
        let flags = (fdflags & (FDFLAGS_APPEND | FDFLAGS_NONBLOCK)) as u16;
        self.open.insert(new, Open { node, position: 0, flags, preopen: false });
        Ok(())
    }

    fn path_filestat_get(&self, mem: &mut GuestMemory, fd: u32, path: u32, len: u32, stat: u32) -> Result<(), Errno> {
        let node = self.files.resolve(self.dir(fd)?, mem.read(path, len)?)?;
        mem.write(stat, &self.files.filestat(node))
    }

    /// There are no symbolic links: EINVAL for whatever exists.
    fn path_readlink(&self, mem: &GuestMemory, fd: u32, path: u32, len: u32) -> Result<(), Errno> {
        self.files.resolve(self.dir(fd)?, mem.read(path, len)?)?;
        Err(Errno::Inval)
    }
}

/// `contents` from `position` on (nothing past the end), at most what a
/// WASI size can count.
fn rest(contents: &[u8], position: u64) -> &[u8] {
    let start = usize::try_from(position).unwrap_or(usize::MAX).min(contents.len());
    let rest = &contents[start..];
    &rest[..rest.len().min(u32::MAX as usize)]
}

/// Copies `data` into the guest's buffers (an iovec array), in order; the
/// number of bytes copied. Every buffer is checked before any is written.
fn scatter(mem: &mut GuestMemory, iovs: u32, count: u32, data: &[u8]) -> Result<u32, Errno> {
    if count > MAX_IOVS {
        return Err(Errno::Inval);
    }
    let array = mem.read(iovs, count * 8)?;
    let buffers: Vec<(u32, u32)> = array.chunks_exact(8).map(|iov| (get_u32(iov, 0), get_u32(iov, 4))).collect();
    for &(buf, len) in &buffers {
        mem.range(buf, len)?;
    }
    let mut copied = 0;
    for (buf, len) in buffers {
        let chunk = &data[copied..][..(len as usize).min(data.len() - copied)];
        mem.write(buf, chunk)?;
        copied += chunk.len();
    }
    Ok(copied as u32)
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// A guest's linear memory. Every access is bounds-checked: a bad pointer
/// or length is EFAULT, never a host panic.
struct GuestMemory<'a>(&'a mut [u8]);

impl GuestMemory<'_> {
    fn range(&self, ptr: u32, len: u32) -> Result<Range<usize>, Errno> {
        let start = ptr as usize;
        match start.checked_add(len as usize) {
            Some(end) if end <= self.0.len() => Ok(start..end),
            _ => Err(Errno::Fault),
        }
    }

    fn read(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        Ok(&self.0[self.range(ptr, len)?])
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
        let range = self.range(ptr, u32::try_from(bytes.len()).map_err(|_| Errno::Fault)?)?;
        self.0[range].copy_from_slice(bytes);
        Ok(())
    }
}

/// Shadows, in `linker`, the `wasi_snapshot_preview1` functions that take a
/// descriptor or a path: bundle descriptors (found with `get`) are served
/// from memory, all others by the wasmtime-wasi functions `linker` holds
/// already (add them first: `wasmtime_wasi::p1::add_to_linker_async`).
/// The shadows are async host functions, as those are: a guest linked here
/// runs with `call_async`. Leaves `linker` refusing shadowing again.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut BundleFs,
) -> wasmtime::Result<()> {
    let mut before = linker.clone();
    // Aliasing a name onto itself checks, without a store, that it is defined.
    before.allow_shadowing(true);
    for (name, _) in SHADOWED {
        before
            .alias(P1, name, P1, name)
            .map_err(|_| format_err!("add wasmtime-wasi's preview 1 functions first: {P1}::{name} is missing"))?;
    }
    let engine = linker.engine().clone();
    let originals = Arc::new(Originals {
        linker: before,
        forwarders: Module::new(&engine, forwarders_wat("0"))?,
        // None where the engine has no 64-bit memories: then no guest has one.
        forwarders64: Module::new(&engine, forwarders_wat("i64 0")).ok(),
        get,
    });
    let index_of = |name: &str| {
        SHADOWED.iter().position(|(shadowed, _)| *shadowed == name).ok_or_else(|| format_err!("{name} not shadowed"))
    };
    linker.allow_shadowing(true);

    // shadow!(name(argument: type, ...) on [descriptors] => |fs, mem| what a bundle descriptor gets)
    macro_rules! shadow {
        ($name:ident($($arg:ident: $ty:ty),*) on [$($fd:ident),+] => |$fs:pat_param, $mem:pat_param| $serve:expr) => {{
            let (originals, index) = (originals.clone(), index_of(stringify!($name))?);
            let shadow = async_shadow(move |mut caller: Caller<'_, T>, ($($arg,)*): ($($ty,)*)| {
                let originals = originals.clone();
                Box::new(async move {
                    let fs = get(caller.data_mut());
                    if !($(fs.owns($fd))||+) {
                        return originals.call(&mut caller, index, ($($arg,)*)).await;
                    }
                    serve(&mut caller, get, |$fs, $mem| $serve)
                })
            });
            linker.func_wrap_async(P1, stringify!($name), shadow)?;
        }};
    }
    shadow!(fd_advise(fd: u32, offset: u64, len: u64, advice: u32) on [fd] => |fs, _| fs.fd_advise(fd, advice));
    shadow!(fd_allocate(fd: u32, offset: u64, len: u64) on [fd] => |_, _| Err(Errno::Badf));
    shadow!(fd_close(fd: u32) on [fd] => |fs, _| fs.open.remove(&fd).map(drop).ok_or(Errno::Badf));
    shadow!(fd_datasync(fd: u32) on [fd] => |_, _| Ok(()));
    shadow!(fd_fdstat_get(fd: u32, stat: u32) on [fd] => |fs, mem| fs.fd_fdstat_get(mem, fd, stat));
    shadow!(fd_fdstat_set_flags(fd: u32, flags: u32) on [fd] => |fs, _| fs.fd_fdstat_set_flags(fd, flags));
    shadow!(fd_fdstat_set_rights(fd: u32, base: u64, inheriting: u64) on [fd] => |_, _| Err(Errno::Notsup));
    shadow!(fd_filestat_get(fd: u32, stat: u32) on [fd] => |fs, mem| {
        mem.write(stat, &fs.files.filestat(fs.get(fd)?.node))
    });
    shadow!(fd_filestat_set_size(fd: u32, size: u64) on [fd] => |_, _| Err(Errno::Badf));
    shadow!(fd_filestat_set_times(fd: u32, atim: u64, mtim: u64, flags: u32) on [fd] => |_, _| Err(Errno::Rofs));
    shadow!(fd_pread(fd: u32, iovs: u32, iovs_len: u32, at: u64, nread: u32) on [fd] => |fs, mem| {
        fs.fd_pread(mem, fd, iovs, iovs_len, at, nread)
    });
    shadow!(fd_prestat_dir_name(fd: u32, path: u32, len: u32) on [fd] => |fs, mem| {
        fs.fd_prestat_dir_name(mem, fd, path, len)
    });
    shadow!(fd_prestat_get(fd: u32, prestat: u32) on [fd] => |fs, mem| fs.fd_prestat_get(mem, fd, prestat));
    shadow!(fd_pwrite(fd: u32, iovs: u32, iovs_len: u32, at: u64, nwritten: u32) on [fd] => |_, _| {
        Err(Errno::Badf)
    });
    shadow!(fd_read(fd: u32, iovs: u32, iovs_len: u32, nread: u32) on [fd] => |fs, mem| {
        fs.fd_read(mem, fd, iovs, iovs_len, nread)
    });
    shadow!(fd_readdir(fd: u32, buf: u32, len: u32, cookie: u64, used: u32) on [fd] => |fs, mem| {
        fs.fd_readdir(mem, fd, buf, len, cookie, used)
    });
    shadow!(fd_seek(fd: u32, delta: i64, whence: u32, to: u32) on [fd] => |fs, mem| {
        fs.fd_seek(mem, fd, delta, whence, to)
    });
    shadow!(fd_sync(fd: u32) on [fd] => |_, _| Ok(()));
    shadow!(fd_tell(fd: u32, to: u32) on [fd] => |fs, mem| fs.fd_seek(mem, fd, 0, WHENCE_CUR, to));
    shadow!(fd_write(fd: u32, iovs: u32, iovs_len: u32, nwritten: u32) on [fd] => |_, _| Err(Errno::Badf));
    shadow!(path_create_directory(fd: u32, path: u32, len: u32) on [fd] => |_, _| Err(Errno::Rofs));
    shadow!(path_filestat_get(fd: u32, lookup: u32, path: u32, len: u32, stat: u32) on [fd] => |fs, mem| {
        fs.path_filestat_get(mem, fd, path, len, stat)
    });
    shadow!(path_filestat_set_times(
        fd: u32, lookup: u32, path: u32, len: u32, atim: u64, mtim: u64, flags: u32
    ) on [fd] => |_, _| Err(Errno::Rofs));
    shadow!(path_link(
        old_fd: u32, lookup: u32, old_path: u32, old_len: u32, new_fd: u32, new_path: u32, new_len: u32
    ) on [old_fd, new_fd] => |_, _| Err(Errno::Rofs));
    shadow!(path_open(
        fd: u32, lookup: u32, path: u32, len: u32, oflags: u32, rights: u64, inheriting: u64, fdflags: u32, opened: u32
    ) on [fd] => |fs, mem| fs.path_open(mem, fd, path, len, oflags, rights, fdflags, opened));
    shadow!(path_readlink(fd: u32, path: u32, len: u32, buf: u32, buf_len: u32, used: u32) on [fd] => |fs, mem| {
        fs.path_readlink(mem, fd, path, len)
    });
    shadow!(path_remove_directory(fd: u32, path: u32, len: u32) on [fd] => |_, _| Err(Errno::Rofs));
    shadow!(path_rename(
        fd: u32, old_path: u32, old_len: u32, new_fd: u32, new_path: u32, new_len: u32
    ) on [fd, new_fd] => |_, _| Err(Errno::Rofs));
    shadow!(path_symlink(old_path: u32, old_len: u32, fd: u32, new_path: u32, new_len: u32) on [fd] => |_, _| {
        Err(Errno::Rofs)
    });
    shadow!(path_unlink_file(fd: u32, path: u32, len: u32) on [fd] => |_, _| Err(Errno::Rofs));
    shadow!(sock_accept(fd: u32, flags: u32, opened: u32) on [fd] => |_, _| Err(Errno::Notsock));
    shadow!(sock_recv(fd: u32, data: u32, data_len: u32, flags: u32, len: u32, out_flags: u32) on [fd] => |_, _| {
        Err(Errno::Notsock)
    });
    shadow!(sock_send(fd: u32, data: u32, data_len: u32, flags: u32, len: u32) on [fd] => |_, _| Err(Errno::Notsock));
    shadow!(sock_shutdown(fd: u32, how: u32) on [fd] => |_, _| Err(Errno::Notsock));

    // fd_renumber moves a bundle descriptor, or asks wasmtime-wasi to move
    // its own. A bundle descriptor may replace stdin, stdout or stderr
    // (wasmtime-wasi closes it first, and says EBADF if `to` is not open at
    // all); the reverse wasmtime-wasi refuses with EBADF.
    let (renumber, close) = (index_of("fd_renumber")?, index_of("fd_close")?);
    let shadow = async_shadow(move |mut caller: Caller<'_, T>, (from, to): (u32, u32)| {
        let originals = originals.clone();
        Box::new(async move {
            let fs = get(caller.data_mut());
            if !fs.owns(from) {
                return originals.call(&mut caller, renumber, (from, to)).await;
            }
            if !fs.owns(to) {
                let errno = originals.call(&mut caller, close, (to,)).await?;
                if errno != 0 {
                    return Ok(errno);
                }
            }
            serve(&mut caller, get, |fs, _| fs.fd_renumber(from, to))
        })
    });
    linker.func_wrap_async(P1, "fd_renumber", shadow)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What a shadow returns: its errno, once any call to the original is done.
type Shadowed<'a> = Box<dyn Future<Output = wasmtime::Result<i32>> + Send + 'a>;

/// Gives a shadow's closure the signature `func_wrap_async` needs (its
/// future borrows the caller for as long as the caller lives).
fn async_shadow<T, P, F>(shadow: F) -> F
where
    F: for<'a> Fn(Caller<'a, T>, P) -> Shadowed<'a> + Send + Sync + 'static,
{
    shadow
}

/// Runs `answer` on the bundle and the calling guest's memory; its errno.
fn serve<T: 'static>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut BundleFs,
    answer: impl FnOnce(&mut BundleFs, &mut GuestMemory) -> Result<(), Errno>,
) -> wasmtime::Result<i32> {
    let memory = exported_memory(caller)?;
    let (bytes, state) = memory.data_and_store_mut(&mut *caller);
    Ok(answer(get(state), &mut GuestMemory(bytes)).err().map_or(0, |errno| errno as i32))
}

fn exported_memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        // wasmtime-wasi's words, for a guest it would refuse the same way.
        _ => bail!("missing required memory export"),
    }
}

/// wasmtime-wasi's implementations of the shadowed functions, and the way
/// to call them.
struct Originals<T> {
    /// `linker` as it was before the shadows.
    linker: Linker<T>,
    /// For a guest with a 32-bit memory, and for one with a 64-bit memory.
    forwarders: Module,
    forwarders64: Option<Module>,
    get: fn(&mut T) -> &mut BundleFs,
}

impl<T: Send + 'static> Originals<T> {
    /// Calls the original `SHADOWED[index]` with `args`, through this
    /// store's forwarders.
    async fn call<P: WasmParams + Send + Sync>(
        &self,
        caller: &mut Caller<'_, T>,
        index: usize,
        args: P,
    ) -> wasmtime::Result<i32> {
        let func = self.forwarder(caller, index).await?.typed::<P, i32>(&*caller)?;
        // The forwarder burns a little fuel the guest did not: give it back,
        // so that a call uses the same fuel as without a bundle.
        let fuel = caller.get_fuel().ok();
        if let Some(fuel) = fuel {
            caller.set_fuel(fuel.saturating_add(FORWARDER_FUEL))?;
        }
        let result = func.call_async(&mut *caller, args).await;
        if let Some(fuel) = fuel {
            caller.set_fuel(fuel)?;
        }
        result
    }

    /// This store's forwarder to the original `SHADOWED[index]`, with the
    /// original in its table.
    async fn forwarder(&self, caller: &mut Caller<'_, T>, index: usize) -> wasmtime::Result<Func> {
        let (instance, originals) = match &(self.get)(caller.data_mut()).forwarders {
            Some(forwarders) => match forwarders.ready[index] {
                Some(func) => return Ok(func),
                None => (forwarders.instance, forwarders.originals),
            },
            None => self.instantiate(caller).await?,
        };
        let name = SHADOWED[index].0;
        let original = self.linker.get(&mut *caller, P1, name)?;
        originals.set(&mut *caller, index as u64, Ref::Func(original.into_func()))?;
        let func = instance.get_func(&mut *caller, name).ok_or_else(|| format_err!("no forwarder for {name}"))?;
        let new = Forwarders { instance, originals, ready: [None; SHADOWED.len()] };
        (self.get)(caller.data_mut()).forwarders.get_or_insert(new).ready[index] = Some(func);
        Ok(func)
    }

    /// The forwarders on the guest's memory, and their table.
    async fn instantiate(&self, caller: &mut Caller<'_, T>) -> wasmtime::Result<(Instance, Table)> {
        let memory = exported_memory(caller)?;
        let module = match memory.ty(&*caller).is_64() {
            false => &self.forwarders,
            true => self.forwarders64.as_ref().ok_or_else(|| format_err!("no forwarders for a 64-bit memory"))?,
        };
        let instance = Instance::new_async(&mut *caller, module, &[memory.into()]).await?;
        let originals = instance.get_table(&mut *caller, "originals").ok_or_else(|| format_err!("no table"))?;
        Ok((instance, originals))
    }
}

/// A module that imports the guest's memory (of type `memory`), exports it,
/// and exports each shadowed function, calling on to the function at its
/// index in the exported table `originals`.
fn forwarders_wat(memory: &str) -> String {
    let mut wat = format!("(module\n  (import \"guest\" \"memory\" (memory $m {memory}))\n");
    wat += &format!(
        "  (export \"memory\" (memory $m))\n  (table $originals (export \"originals\") {} funcref)\n",
        SHADOWED.len()
    );
    for (index, (name, params)) in SHADOWED.iter().enumerate() {
        let args: String = (0..params.len()).map(|arg| format!(" local.get {arg}")).collect();
        let signature = signature(params);
        wat += &format!(
            "  (func (export \"{name}\") {signature}{args} i32.const {index} call_indirect $originals {signature})\n"
        );
    }
    wat + ")\n"
}

/// The wasm type of a function in `SHADOWED`.
fn signature(params: &str) -> String {
    let types: Vec<&str> = params.chars().map(|kind| if kind == 'I' { "i64" } else { "i32" }).collect();
    format!("(param {}) (result i32)", types.join(" "))
}
#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::LazyLock;

    use futures::executor::block_on;
    use wasmtime::{Engine, Store, Val};
    use wasmtime_wasi::p1::WasiP1Ctx;
    use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
    use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

    use super::*;

    struct State {
        wasi: WasiP1Ctx,
        bundle: BundleFs,
    }

    fn bundle_of(state: &mut State) -> &mut BundleFs {
        &mut state.bundle
    }

    /// The node's engine: fuel, epochs, the pooling allocator.
    static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
        let spec =
            super::super::EngineSpec { concurrency: 4, max_memory_bytes: 256 << 20, compact_memory_reservation: false };
        super::super::engine::build_engine(&spec).expect("building the engine")
    });
    /// wasmtime-wasi alone, as a module without files is linked.
    static PLAIN: LazyLock<Linker<State>> = LazyLock::new(|| {
        let mut linker = Linker::new(&ENGINE);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut State| &mut state.wasi).expect("linking WASI");
        linker
    });
    /// The same with the bundle's shadows.
    static LINKER: LazyLock<Linker<State>> = LazyLock::new(|| {
        let mut linker = PLAIN.clone();
        add_to_linker(&mut linker, bundle_of).expect("shadowing");
        linker
    });
    /// A guest exporting a wrapper of each shadowed function, for tests to
    /// call with any arguments, and one page of memory.
    static PROBE: LazyLock<Module> = LazyLock::new(|| {
        let mut wat = String::from("(module\n");
        for (index, (name, params)) in SHADOWED.iter().enumerate() {
            wat += &format!("  (import \"{P1}\" \"{name}\" (func $f{index} {}))\n", signature(params));
        }
        wat += "  (memory (export \"memory\") 1)\n";
        for (index, (name, params)) in SHADOWED.iter().enumerate() {
            let args: String = (0..params.len()).map(|arg| format!(" local.get {arg}")).collect();
            wat += &format!("  (func (export \"{name}\") {}{args} call $f{index})\n", signature(params));
        }
        Module::new(&ENGINE, wat + ")").expect("compiling the probe")
    });

    const FUEL: u64 = 1 << 40;
    const PAGE: i64 = 65536;
    // Where the probe keeps a path, an iovec array, a result and a buffer.
    const PATH: i64 = 1024;
    const IOVS: i64 = 2048;
    const OUT: i64 = 3072;
    const BUF: i64 = 4096;
    const READ: i64 = RIGHTS_GRANTED as i64;
    const FROZEN_NS: u64 = 1_000_000_000_000_000_000;

    fn sample_files() -> Vec<(String, Bytes)> {
        let files: [(&str, &[u8]); 7] = [
            ("a.txt", b"hello\n"),
            ("Z.txt", b"upper"),
            ("sub/deeper/z.bin", &[0, 1, 2, 255]),
            ("a-b.txt", b"dash"),
            ("b", b""),
            ("sub/b.csv", b"x,y\n1,2\n"),
            ("é.txt", "accent".as_bytes()),
        ];
        files.into_iter().map(|(path, contents)| (path.to_owned(), Bytes::copy_from_slice(contents))).collect()
    }

    fn sample() -> Arc<BundleFiles> {
        Arc::new(BundleFiles::new(sample_files()).expect("a valid bundle"))
    }

    fn store(files: Arc<BundleFiles>, stdin: &[u8]) -> (Store<State>, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(Bytes::copy_from_slice(stdin)))
            .stdout(stdout.clone())
            .build_p1();
        let mut store = Store::new(&ENGINE, State { wasi, bundle: BundleFs::new(files, "/data") });
        store.set_fuel(FUEL).expect("fuel");
        store.set_epoch_deadline(1 << 30);
        (store, stdout)
    }

    struct Probe {
        store: Store<State>,
        instance: Instance,
    }

    impl Probe {
        fn new(files: Arc<BundleFiles>) -> Self {
            let (mut store, _) = store(files, b"");
            let instance = block_on(LINKER.instantiate_async(&mut store, &PROBE)).expect("instantiating the probe");
            Self { store, instance }
        }

        fn call(&mut self, name: &str, args: &[i64]) -> i32 {
            let (_, types) = SHADOWED.iter().find(|(shadowed, _)| *shadowed == name).expect("a shadowed function");
            assert_eq!(types.len(), args.len(), "arguments of {name}");
            let params: Vec<Val> = types
                .chars()
                .zip(args)
                .map(|(kind, &arg)| if kind == 'I' { Val::I64(arg) } else { Val::I32(arg as i32) })
                .collect();
            let func = self.instance.get_func(&mut self.store, name).expect("exported");
            let mut result = [Val::I32(-1)];
            block_on(func.call_async(&mut self.store, &params, &mut result)).expect("no trap");
            result[0].unwrap_i32()
        }

        fn memory(&mut self) -> &mut [u8] {
            let memory = self.instance.get_memory(&mut self.store, "memory").expect("memory");
            memory.data_mut(&mut self.store)
        }

        fn poke(&mut self, at: i64, bytes: &[u8]) {
            self.memory()[at as usize..][..bytes.len()].copy_from_slice(bytes);
        }

        fn peek(&mut self, at: i64, len: usize) -> Vec<u8> {
            self.memory()[at as usize..][..len].to_vec()
        }

        fn u32_at(&mut self, at: i64) -> u32 {
            get_u32(&self.peek(at, 4), 0)
        }

        fn u64_at(&mut self, at: i64) -> u64 {
            u64::from_le_bytes(self.peek(at, 8).try_into().expect("8 bytes"))
        }

        /// Puts `path` at PATH; its length.
        fn path(&mut self, path: &str) -> i64 {
            self.poke(PATH, path.as_bytes());
            path.len() as i64
        }

        fn open(&mut self, dir: i64, path: &str) -> Result<i64, i32> {
            self.open_with(dir, path, 0, READ)
        }

        fn open_with(&mut self, dir: i64, path: &str, oflags: i64, rights: i64) -> Result<i64, i32> {
            let len = self.path(path);
            match self.call("path_open", &[dir, 1, PATH, len, oflags, rights, rights, 0, OUT]) {
                0 => Ok(i64::from(self.u32_at(OUT))),
                errno => Err(errno),
            }
        }

        /// Reads up to `len` bytes into BUF through one iovec.
        fn read(&mut self, fd: i64, len: u32) -> Result<Vec<u8>, i32> {
            self.poke(IOVS, &[(BUF as u32).to_le_bytes(), len.to_le_bytes()].concat());
            match self.call("fd_read", &[fd, IOVS, 1, OUT]) {
                0 => {
                    let read = self.u32_at(OUT) as usize;
                    Ok(self.peek(BUF, read))
                }
                errno => Err(errno),
            }
        }

        /// The whole listing of `fd`, asking for `len` bytes at a time.
        fn list(&mut self, fd: i64, len: i64) -> Vec<(u64, u64, u8, String)> {
            let (mut entries, mut cookie) = (Vec::new(), 0);
            loop {
                assert_eq!(self.call("fd_readdir", &[fd, BUF, len, cookie, OUT]), 0);
                let used = self.u32_at(OUT) as usize;
                let batch = dirents(&self.peek(BUF, used));
                if let Some((next, ..)) = batch.last() {
                    cookie = *next as i64;
                }
                entries.extend(batch);
                if used < len as usize {
                    return entries;
                }
            }
        }

        fn filestat(&mut self, dir: i64, path: &str) -> Result<Vec<u8>, i32> {
            let len = self.path(path);
            match self.call("path_filestat_get", &[dir, 1, PATH, len, OUT]) {
                0 => Ok(self.peek(OUT, 64)),
                errno => Err(errno),
            }
        }
    }

    /// The complete entries in a `fd_readdir` buffer: (d_next, d_ino, d_type, name).
    fn dirents(mut bytes: &[u8]) -> Vec<(u64, u64, u8, String)> {
        let mut entries = Vec::new();
        while bytes.len() >= 24 {
            let len = get_u32(bytes, 16) as usize;
            let Some(name) = bytes.get(24..24 + len) else { break };
            let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            entries.push((field(0), field(8), bytes[20], String::from_utf8(name.to_vec()).expect("UTF-8")));
            bytes = &bytes[24 + len..];
        }
        entries
    }

    #[test]
    fn bundle_paths_are_checked() {
        for bad in ["", "/a", "a//b", "a/", "./a", "a/./b", "a/../b", "..", "a\0b"] {
            assert!(BundleFiles::new(vec![(bad.into(), Bytes::new())]).is_err(), "{bad:?}");
        }
        let file = |path: &str| (path.to_owned(), Bytes::from_static(b"x"));
        assert!(BundleFiles::new(vec![file("a"), file("a")]).unwrap_err().contains("twice"));
        assert!(BundleFiles::new(vec![file("a"), file("a/b")]).is_err());
        assert!(BundleFiles::new(vec![file("a/b/c"), file("a/b")]).is_err());
        assert!(BundleFiles::new(Vec::new()).is_ok(), "an empty bundle is an empty directory");
        // 33 bytes of contents and 62 of paths (with "sub" and "sub/deeper").
        assert_eq!(sample().bytes(), 95);
    }

    #[test]
    fn insertion_order_changes_nothing() {
        let mut reversed = sample_files();
        reversed.reverse();
        let reversed = BundleFiles::new(reversed).expect("a valid bundle");
        assert_eq!(format!("{:?}", reversed.nodes), format!("{:?}", sample().nodes));
    }

    #[test]
    fn shadows_keep_the_original_signatures() {
        let (mut store, _) = store(sample(), b"");
        let signature = |store: &mut Store<State>, linker: &Linker<State>, name: &str| {
            let func = linker.get(&mut *store, P1, name).expect("defined").into_func().expect("a function");
            let ty = func.ty(&*store);
            let params: String = ty.params().map(|param| if param.is_i64() { 'I' } else { 'i' }).collect();
            let results: Vec<String> = ty.results().map(|result| result.to_string()).collect();
            (params, results)
        };
        for (name, params) in SHADOWED {
            let original = signature(&mut store, &PLAIN, name);
            assert_eq!(original, (params.to_string(), vec!["i32".to_string()]), "{name}");
            assert_eq!(signature(&mut store, &LINKER, name), original, "{name}");
        }
        // Nothing else wasmtime-wasi offers takes a descriptor or a path.
        let mut others: Vec<String> = PLAIN
            .iter(&mut store)
            .map(|(_, name, _)| name.to_owned())
            .filter(|name| SHADOWED.iter().all(|(shadowed, _)| shadowed != name))
            .collect();
        others.sort();
        let expected = [
            "args_get",
            "args_sizes_get",
            "clock_res_get",
            "clock_time_get",
            "environ_get",
            "environ_sizes_get",
            "poll_oneoff",
            "proc_exit",
            "proc_raise",
            "random_get",
            "sched_yield",
        ];
        assert_eq!(others, expected);
    }

    /// Why the forwarders exist: called from the host, an original finds no
    /// memory. If this ever passes, they can go.
    #[test]
    fn originals_need_a_calling_instance() {
        let (mut store, _) = store(sample(), b"");
        let original = PLAIN.get(&mut store, P1, "fd_write").expect("defined").into_func().expect("a function");
        let original = original.typed::<(i32, i32, i32, i32), i32>(&store).expect("its type");
        let error = block_on(original.call_async(&mut store, (1, 0, 0, 0))).expect_err("no memory to find");
        assert!(format!("{error:#}").contains("missing required memory export"), "{error:#}");
    }

    #[test]
    fn shadows_need_wasi_first() {
        let error = add_to_linker(&mut Linker::<State>::new(&ENGINE), bundle_of).expect_err("no originals");
        assert!(error.to_string().contains("first"), "{error}");
    }

    struct Run {
        exit: Result<(), String>,
        stdout: Vec<u8>,
        fuel: u64,
    }

    fn run(linker: &Linker<State>, module: &Module, files: Arc<BundleFiles>, stdin: &[u8]) -> Run {
        let (mut store, stdout) = store(files, stdin);
        let exit = block_on(async {
            let instance = linker.instantiate_async(&mut store, module).await?;
            instance.get_typed_func::<(), ()>(&mut store, "_start")?.call_async(&mut store, ()).await
        })
        .map_err(|error| match error.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => format!("exit {code}"),
            None => format!("{error:#}"),
        });
        Run { exit, stdout: stdout.contents().to_vec(), fuel: FUEL - store.get_fuel().expect("fuel") }
    }

    /// Copies stdin to stdout 100 bytes at a time, then exits with 7.
    const ECHO: &str = r#"
        (module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (local $n i32)
            (loop $copy
              (i32.store (i32.const 0) (i32.const 1000))
              (i32.store (i32.const 4) (i32.const 100))
              (if (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
                (then (call $exit (i32.const 1))))
              (local.set $n (i32.load (i32.const 8)))
              (if (i32.eqz (local.get $n)) (then (call $exit (i32.const 7))))
              (i32.store (i32.const 4) (local.get $n))
              (if (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
                (then (call $exit (i32.const 2))))
              (br $copy))))
    "#;

    #[test]
    fn stdio_goes_to_wasmtime_wasi_unchanged() {
        let echo = Module::new(&ENGINE, ECHO).expect("compiling");
        let input: Vec<u8> = (0..1234u32).map(|i| (i % 251) as u8).collect();
        let plain = run(&PLAIN, &echo, sample(), &input);
        assert_eq!(plain.exit, Err("exit 7".into()));
        assert_eq!(plain.stdout, input);
        for files in [sample(), Arc::new(BundleFiles::new(Vec::new()).expect("empty"))] {
            let shadowed = run(&LINKER, &echo, files, &input);
            assert_eq!(shadowed.exit, plain.exit);
            assert_eq!(shadowed.stdout, plain.stdout);
            assert_eq!(shadowed.fuel, plain.fuel, "the forwarders cost the guest no fuel");
        }
    }

    /// Writes "hi" to stdout from a 64-bit memory, if the engine has them.
    const ECHO64: &str = r#"
        (module
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") i64 1)
          (data (i64.const 16) "hi")
          (func (export "_start")
            (i64.store32 (i64.const 0) (i64.const 16))
            (i64.store32 (i64.const 4) (i64.const 2))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
    "#;

    #[test]
    fn stdio_from_a_64_bit_memory() {
        let Ok(echo) = Module::new(&ENGINE, ECHO64) else { return };
        let plain = run(&PLAIN, &echo, sample(), b"");
        let shadowed = run(&LINKER, &echo, sample(), b"");
        assert_eq!((&shadowed.exit, &shadowed.stdout), (&plain.exit, &plain.stdout));
        assert_eq!(plain.stdout, b"hi");
    }

    #[test]
    fn the_preopen_announces_its_mount() {
        let mut probe = Probe::new(sample());
        assert_eq!(probe.call("fd_prestat_get", &[3, OUT]), 0);
        assert_eq!((probe.peek(OUT, 1)[0], probe.u32_at(OUT + 4)), (0, 5));
        assert_eq!(probe.call("fd_prestat_dir_name", &[3, BUF, 5]), 0);
        assert_eq!(probe.peek(BUF, 5), b"/data");
        assert_eq!(probe.call("fd_prestat_dir_name", &[3, BUF, 4]), Errno::Nametoolong as i32);
        // wasi-libc and Rust's std scan from 3 until EBADF, which wasmtime-wasi answers.
        assert_eq!(probe.call("fd_prestat_get", &[4, OUT]), Errno::Badf as i32);
        let file = probe.open(3, "a.txt").expect("opens");
        assert_eq!(probe.call("fd_prestat_get", &[file, OUT]), Errno::Badf as i32);
        assert_eq!(probe.call("fd_fdstat_get", &[3, OUT]), 0);
        assert_eq!(probe.peek(OUT, 1)[0], FILETYPE_DIRECTORY);
        assert_eq!(probe.u64_at(OUT + 16) & RIGHTS_FD_WRITE, RIGHTS_FD_WRITE, "passed on, for EROFS at open");
        assert_eq!(probe.call("fd_fdstat_get", &[file, OUT]), 0);
        assert_eq!(probe.peek(OUT, 1)[0], FILETYPE_REGULAR_FILE);
        assert_eq!(probe.u64_at(OUT + 8) & RIGHTS_FD_WRITE, 0);
        assert_eq!(probe.call("fd_fdstat_get", &[1, OUT]), 0, "stdout, from wasmtime-wasi");
    }

    #[test]
    fn files_read_seek_and_close() {
        let mut probe = Probe::new(sample());
        let fd = probe.open(3, "sub/b.csv").expect("opens");
        assert_eq!(fd, 4);
        // Two buffers, filled in order.
        let iovs = [(BUF as u32), 3, (BUF as u32 + 100), 100].map(u32::to_le_bytes).concat();
        probe.poke(IOVS, &iovs);
        assert_eq!(probe.call("fd_read", &[fd, IOVS, 2, OUT]), 0);
        assert_eq!(probe.u32_at(OUT), 8);
        assert_eq!((probe.peek(BUF, 3), probe.peek(BUF + 100, 5)), (b"x,y".to_vec(), b"\n1,2\n".to_vec()));
        assert_eq!(probe.read(fd, 10), Ok(Vec::new()), "at the end");

        assert_eq!(probe.call("fd_seek", &[fd, -3, 2, OUT]), 0);
        assert_eq!(probe.u64_at(OUT), 5);
        assert_eq!(probe.call("fd_tell", &[fd, OUT]), 0);
        assert_eq!(probe.u64_at(OUT), 5);
        assert_eq!(probe.read(fd, 10), Ok(b",2\n".to_vec()));
        assert_eq!(probe.call("fd_seek", &[fd, -100, 1, OUT]), Errno::Inval as i32);
        assert_eq!(probe.call("fd_seek", &[fd, 0, 3, OUT]), Errno::Inval as i32);
        assert_eq!(probe.call("fd_seek", &[fd, 100, 0, OUT]), 0, "past the end");
        assert_eq!(probe.read(fd, 10), Ok(Vec::new()));

        probe.poke(IOVS, &[(BUF as u32).to_le_bytes(), 100u32.to_le_bytes()].concat());
        assert_eq!(probe.call("fd_pread", &[fd, IOVS, 1, 4, OUT]), 0);
        let read = probe.u32_at(OUT) as usize;
        assert_eq!(probe.peek(BUF, read), b"1,2\n");
        assert_eq!(probe.call("fd_tell", &[fd, OUT]), 0);
        assert_eq!(probe.u64_at(OUT), 100, "pread leaves the position");

        assert_eq!(probe.call("fd_advise", &[fd, 0, 0, 2]), 0);
        assert_eq!(probe.call("fd_advise", &[fd, 0, 0, 6]), Errno::Inval as i32);
        assert_eq!(probe.call("fd_fdstat_set_flags", &[fd, FDFLAGS_NONBLOCK as i64]), 0);
        assert_eq!(probe.call("fd_fdstat_set_flags", &[fd, 16]), Errno::Inval as i32, "SYNC");
        assert_eq!(probe.read(3, 10), Err(Errno::Isdir as i32));
        assert_eq!(probe.call("fd_seek", &[3, 0, 0, OUT]), Errno::Badf as i32);

        assert_eq!(probe.call("fd_close", &[fd]), 0);
        assert_eq!(probe.call("fd_close", &[fd]), Errno::Badf as i32, "answered by wasmtime-wasi");
        assert_eq!(probe.open(3, "é.txt"), Ok(4), "the lowest free number again");
        assert_eq!(probe.read(4, 100), Ok(b"accent".to_vec()));
    }

    #[test]
    fn bad_pointers_are_efault() {
        let mut probe = Probe::new(sample());
        let path = probe.path("a.txt");
        for (at, len) in [(PAGE - 2, path), (u32::MAX as i64, path), (PAGE, 0x7fff_ffff)] {
            assert_eq!(probe.call("path_open", &[3, 1, at, len, 0, READ, READ, 0, OUT]), Errno::Fault as i32);
        }
        assert_eq!(probe.call("path_open", &[3, 1, PATH, path, 0, READ, READ, 0, PAGE - 3]), Errno::Fault as i32);
        let fd = probe.open(3, "a.txt").expect("opens");
        assert_eq!(fd, 4, "a failed open leaks no descriptor");

        // Buffers: one out of memory, after one in it; the array itself out; the count out.
        let iovs = [BUF as u32, 2, PAGE as u32 - 1, 10].map(u32::to_le_bytes).concat();
        probe.poke(IOVS, &iovs);
        assert_eq!(probe.call("fd_read", &[fd, IOVS, 2, OUT]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_read", &[fd, PAGE - 8, 2, OUT]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_read", &[fd, IOVS, 1, PAGE - 2]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_read", &[fd, IOVS, 1025, OUT]), Errno::Inval as i32);
        assert_eq!(probe.call("fd_pread", &[fd, IOVS, 2, 0, OUT]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_seek", &[fd, 2, 0, PAGE - 4]), Errno::Fault as i32);
        assert_eq!(probe.read(fd, 100), Ok(b"hello\n".to_vec()), "nothing was consumed");

        assert_eq!(probe.call("fd_readdir", &[3, PAGE - 10, 100, 0, OUT]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_readdir", &[3, BUF, 100, 0, PAGE]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_prestat_get", &[3, PAGE - 4]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_prestat_dir_name", &[3, PAGE - 4, 5]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_fdstat_get", &[3, PAGE - 4]), Errno::Fault as i32);
        assert_eq!(probe.call("fd_filestat_get", &[fd, PAGE - 63]), Errno::Fault as i32);
        assert_eq!(probe.call("path_filestat_get", &[3, 1, PATH, path, -1]), Errno::Fault as i32);
        assert_eq!(probe.call("path_filestat_get", &[3, 1, -1, path, OUT]), Errno::Fault as i32);
        assert_eq!(probe.call("path_readlink", &[3, -1, path, BUF, 10, OUT]), Errno::Fault as i32);
    }

    #[test]
    fn nothing_can_be_changed() {
        let rofs = Errno::Rofs as i32;
        let mut probe = Probe::new(sample());
        assert_eq!(probe.open_with(3, "new.txt", OFLAGS_CREAT as i64, READ), Err(rofs));
        assert_eq!(probe.open_with(3, "a.txt", (OFLAGS_CREAT | 4) as i64, READ), Err(rofs), "CREAT|EXCL");
        assert_eq!(probe.open_with(3, "a.txt", OFLAGS_TRUNC as i64, READ), Err(rofs));
        assert_eq!(probe.open_with(3, "a.txt", 0, READ | RIGHTS_FD_WRITE as i64), Err(rofs));
        let fd = probe.open(3, "a.txt").expect("opens");
        probe.poke(IOVS, &[(BUF as u32).to_le_bytes(), 3u32.to_le_bytes()].concat());
        for (name, args) in [
            ("fd_write", vec![fd, IOVS, 1, OUT]),
            ("fd_pwrite", vec![fd, IOVS, 1, 0, OUT]),
            ("fd_allocate", vec![fd, 0, 10]),
            ("fd_filestat_set_size", vec![fd, 0]),
        ] {
            assert_eq!(probe.call(name, &args), Errno::Badf as i32, "{name}: not open for writing");
        }
        let path = probe.path("a.txt");
        for (name, args) in [
            ("fd_filestat_set_times", vec![fd, 0, 0, 0]),
            ("path_filestat_set_times", vec![3, 1, PATH, path, 0, 0, 0]),
            ("path_create_directory", vec![3, PATH, path]),
            ("path_unlink_file", vec![3, PATH, path]),
            ("path_remove_directory", vec![3, PATH, path]),
            ("path_rename", vec![3, PATH, path, 3, PATH, 1]),
            ("path_rename", vec![1, PATH, path, 3, PATH, 1]),
            ("path_symlink", vec![PATH, path, 3, PATH, 1]),
            ("path_link", vec![3, 0, PATH, path, 3, PATH, 1]),
        ] {
            assert_eq!(probe.call(name, &args), rofs, "{name}");
        }
        assert_eq!(probe.call("path_readlink", &[3, PATH, path, BUF, 100, OUT]), Errno::Inval as i32);
        let missing = probe.path("nope");
        assert_eq!(probe.call("path_readlink", &[3, PATH, missing, BUF, 100, OUT]), Errno::Noent as i32);
        assert_eq!(probe.call("fd_fdstat_set_rights", &[fd, 0, 0]), Errno::Notsup as i32);
        assert_eq!(probe.call("fd_sync", &[fd]), 0);
        assert_eq!(probe.call("fd_datasync", &[fd]), 0);
        for (name, args) in [
            ("sock_accept", vec![3, 0, OUT]),
            ("sock_recv", vec![fd, IOVS, 1, 0, OUT, OUT + 4]),
            ("sock_send", vec![fd, IOVS, 1, 0, OUT]),
            ("sock_shutdown", vec![fd, 2]),
        ] {
            assert_eq!(probe.call(name, &args), Errno::Notsock as i32, "{name}");
        }
        assert_eq!(probe.read(fd, 100), Ok(b"hello\n".to_vec()));
    }

    #[test]
    fn paths_stay_inside_their_directory() {
        let mut probe = Probe::new(sample());
        let notcapable = Err(Errno::Notcapable as i32);
        for escape in ["..", "../a.txt", "sub/../../a.txt", "/data/a.txt", "/"] {
            assert_eq!(probe.open(3, escape), notcapable, "{escape:?}");
        }
        for (path, expected) in
            [("sub/../a.txt", "hello\n"), ("./sub/./b.csv", "x,y\n1,2\n"), ("sub//b.csv", "x,y\n1,2\n")]
        {
            let fd = probe.open(3, path).unwrap_or_else(|errno| panic!("{path:?}: {errno}"));
            assert_eq!(probe.read(fd, 100), Ok(expected.as_bytes().to_vec()), "{path:?}");
            assert_eq!(probe.call("fd_close", &[fd]), 0);
        }
        for (path, errno) in
            [("a.txt/", Errno::Notdir), ("a.txt/.", Errno::Notdir), ("nope", Errno::Noent), ("", Errno::Noent)]
        {
            assert_eq!(probe.open(3, path), Err(errno as i32), "{path:?}");
        }
        assert_eq!(probe.open_with(3, "a.txt", OFLAGS_DIRECTORY as i64, READ), Err(Errno::Notdir as i32));
        let sub = probe.open_with(3, "sub/", OFLAGS_DIRECTORY as i64, READ).expect("a directory");
        assert_eq!(probe.open(sub, "../a.txt"), notcapable, "a descriptor grants its subtree only");
        let file = probe.open(sub, "deeper/z.bin").expect("opens");
        assert_eq!(probe.read(file, 100), Ok(vec![0, 1, 2, 255]));
        assert_eq!(probe.open(file, "x"), Err(Errno::Notdir as i32));
        assert_eq!(probe.open(1, "a.txt"), Err(Errno::Badf as i32), "stdout, from wasmtime-wasi");
        let dot = probe.open(3, ".").expect("the root");
        assert_eq!(probe.call("fd_filestat_get", &[dot, OUT]), 0);
        assert_eq!(probe.u64_at(OUT + 8), 1, "inode 1, the root");
    }

    #[test]
    fn listings_are_sorted_and_resumable() {
        let mut probe = Probe::new(sample());
        let whole = probe.list(3, 4096);
        let names: Vec<&str> = whole.iter().map(|(.., name)| name.as_str()).collect();
        assert_eq!(names, [".", "..", "Z.txt", "a-b.txt", "a.txt", "b", "sub", "é.txt"]);
        let cookies: Vec<u64> = whole.iter().map(|(next, ..)| *next).collect();
        assert_eq!(cookies, (1..=8).collect::<Vec<_>>());
        let types: Vec<u8> = whole.iter().map(|(_, _, kind, _)| *kind).collect();
        assert_eq!(types, [3, 3, 4, 4, 4, 4, 3, 4]);
        assert_eq!((whole[0].1, whole[1].1), (1, 1), "the root is its own parent");
        for (_, ino, _, name) in &whole[2..] {
            let stat = probe.filestat(3, name).expect("exists");
            assert_eq!(u64::from_le_bytes(stat[8..16].try_into().expect("8 bytes")), *ino, "{name}");
        }
        // Small buffers cut entries short; cookies resume at the first one cut.
        for len in [31, 32, 40, 57, 100] {
            assert_eq!(probe.list(3, len), whole, "{len} bytes at a time");
        }
        for cookie in [8, 100, -1] {
            assert_eq!(probe.call("fd_readdir", &[3, BUF, 4096, cookie, OUT]), 0);
            assert_eq!(probe.u32_at(OUT), 0, "cookie {cookie}: the end");
        }
        let sub = probe.open(3, "sub").expect("opens");
        let names: Vec<String> = probe.list(sub, 4096).into_iter().map(|(.., name)| name).collect();
        assert_eq!(names, [".", "..", "b.csv", "deeper"]);
        let file = probe.open(3, "b").expect("opens");
        assert_eq!(probe.call("fd_readdir", &[file, BUF, 100, 0, OUT]), Errno::Notdir as i32);
    }

    #[test]
    fn metadata_is_fixed() {
        let mut probe = Probe::new(sample());
        let stat = probe.filestat(3, "sub/b.csv").expect("exists");
        let field = |at: usize| u64::from_le_bytes(stat[at..at + 8].try_into().expect("8 bytes"));
        assert_eq!(field(0), 0, "dev");
        assert_eq!(stat[16], FILETYPE_REGULAR_FILE);
        assert_eq!((field(24), field(32)), (1, 8), "nlink, size");
        assert_eq!((field(40), field(48), field(56)), (FROZEN_NS, FROZEN_NS, FROZEN_NS));
        let fd = probe.open(3, "sub/b.csv").expect("opens");
        assert_eq!(probe.call("fd_filestat_get", &[fd, OUT]), 0);
        assert_eq!(probe.peek(OUT, 64), stat);
        assert_eq!(probe.call("fd_filestat_get", &[3, OUT]), 0);
        let root = probe.peek(OUT, 64);
        assert_eq!(
            (root[16], &root[24..40]),
            (FILETYPE_DIRECTORY, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..])
        );
        assert_eq!(&root[40..], &stat[40..]);
    }

    #[test]
    fn descriptor_numbers() {
        let mut probe = Probe::new(sample());
        let fds: Vec<i64> = ["a.txt", "Z.txt", "b"].iter().map(|path| probe.open(3, path).expect("opens")).collect();
        assert_eq!(fds, [4, 5, 6]);
        assert_eq!(probe.call("fd_close", &[5]), 0);
        assert_eq!(probe.open(3, "sub/b.csv"), Ok(5));

        // Within the bundle: `to` is closed, `from` moves.
        assert_eq!(probe.call("fd_renumber", &[5, 4]), 0);
        assert_eq!(probe.read(4, 3), Ok(b"x,y".to_vec()));
        assert_eq!(probe.read(5, 3), Err(Errno::Badf as i32));
        // Onto stdout: wasmtime-wasi closes it, the file takes its number.
        assert_eq!(probe.call("fd_renumber", &[4, 1]), 0);
        assert_eq!(probe.read(1, 100), Ok(b"\n1,2\n".to_vec()));
        assert_eq!(probe.call("fd_write", &[1, IOVS, 1, OUT]), Errno::Badf as i32);
        // wasmtime-wasi moves only onto its own descriptors; `to` must be open.
        assert_eq!(probe.call("fd_renumber", &[0, 3]), Errno::Badf as i32);
        assert_eq!(probe.call("fd_renumber", &[6, 40]), Errno::Badf as i32);
        assert_eq!(probe.call("fd_renumber", &[9, 6]), Errno::Badf as i32);
        assert_eq!(probe.call("fd_prestat_get", &[3, OUT]), 0, "the preopen stays");

        let mut opened = 0;
        let errno = loop {
            match probe.open(3, "a.txt") {
                Ok(_) => opened += 1,
                Err(errno) => break errno,
            }
        };
        assert_eq!((errno, opened), (Errno::Mfile as i32, MAX_OPEN - 3));
        assert_eq!(probe.call("fd_close", &[100]), 0);
        assert_eq!(probe.open(3, "a.txt"), Ok(100));

        assert_eq!(probe.call("fd_close", &[3]), 0);
        assert_eq!(probe.call("fd_prestat_get", &[3, OUT]), Errno::Badf as i32);
        assert_eq!(probe.open(3, "a.txt"), Err(Errno::Badf as i32));
    }

    fn list_files() -> Module {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions/fixtures/list-files.wasm");
        let wasm = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("{}: {error}; run scripts/build-functions first", path.display()));
        Module::new(&ENGINE, wasm).expect("compiling list-files")
    }

    /// What functions/fixtures/src/bin/list-files.rs prints for `sample()`.
    const LISTING: &str = "\
/data dir len=0 modified=1000000000 accessed=1000000000
/data/Z.txt file len=5 modified=1000000000 accessed=1000000000 read=5 fnv=d23bb0589f3278e7 tail=706572
/data/a-b.txt file len=4 modified=1000000000 accessed=1000000000 read=4 fnv=85657e6730abe435 tail=617368
/data/a.txt file len=6 modified=1000000000 accessed=1000000000 read=6 fnv=a9bc80cca21f28b3 tail=6c6f0a
/data/b file len=0 modified=1000000000 accessed=1000000000 read=0 fnv=cbf29ce484222325 tail=
/data/sub dir len=0 modified=1000000000 accessed=1000000000
/data/sub/b.csv file len=8 modified=1000000000 accessed=1000000000 read=8 fnv=894cdc679ed13de3 tail=2c320a
/data/sub/deeper dir len=0 modified=1000000000 accessed=1000000000
/data/sub/deeper/z.bin file len=4 modified=1000000000 accessed=1000000000 read=4 fnv=4475de7f98e17855 tail=0102ff
/data/é.txt file len=6 modified=1000000000 accessed=1000000000 read=6 fnv=7e0686be09048697 tail=656e74
create=ReadOnlyFilesystem mkdir=ReadOnlyFilesystem
";

    #[test]
    fn a_rust_guest_sees_a_fixed_sorted_tree() {
        let guest = list_files();
        let first = run(&LINKER, &guest, sample(), b"");
        assert_eq!(first.exit, Ok(()));
        assert_eq!(String::from_utf8_lossy(&first.stdout), LISTING);
        let again = run(&LINKER, &guest, sample(), b"");
        let mut reversed = sample_files();
        reversed.reverse();
        let reordered = run(&LINKER, &guest, Arc::new(BundleFiles::new(reversed).expect("valid")), b"");
        assert_eq!((again.stdout, again.fuel), (first.stdout.clone(), first.fuel));
        assert_eq!((reordered.stdout, reordered.fuel), (first.stdout, first.fuel));
    }
}
