//! The persistent tier: cached responses in an embedded `redb` file, so they survive a restart.
//!
//! Bounded in bytes, oldest written first out. Values are `seq (u64 LE) ++ entry::encode(..)`;
//! the sequence number orders eviction, the entry's checksum guards every read: a corrupt or
//! foreign value is deleted and reported as a miss, never served. A database file that cannot
//! be opened at all (corrupt, foreign) is moved aside and a fresh one created.
//!
//! Reads are a few microseconds against the OS page cache, so the actor does them inline.
//! Writes commit with fsync (milliseconds); the actor runs them on the blocking pool. The tier
//! is a cheap `Clone` handle for that reason.
//!
//! One tier is one table of the file. Other tables of the same file (stored Responses API
//! responses, see [`super::stored`]) open their own tier with [`DiskTier::open_table`]: redb
//! allows one open `Database` per file per process, so the tiers of one file share it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use redb::{Database, ReadableTable, TableDefinition};

use super::entry::{self, unix_now, CachedResponse};
use super::key::CacheKey;

/// The table of cached responses.
const CACHE_TABLE: &str = "responses_v1";
const SEQ_LEN: usize = 8;

/// The databases this process has open, by file, so tables of one file share its handle.
static OPEN: Mutex<Vec<(PathBuf, Weak<Database>)>> = Mutex::new(Vec::new());

/// Why the disk tier failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The store reported an error (boxed: redb's error type is large).
    #[error("disk cache store: {0}")]
    Store(Box<redb::Error>),
    /// Creating the directory or moving a bad file aside failed.
    #[error("disk cache file {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn store_err(e: impl Into<redb::Error>) -> DiskError {
    DiskError::Store(Box::new(e.into()))
}

/// Result of a disk read.
#[derive(Debug, PartialEq)]
pub enum DiskGet {
    /// A valid, fresh entry.
    Hit(CachedResponse),
    /// No entry.
    Missing,
    /// An entry past its TTL; it was deleted.
    Expired,
    /// An entry that failed its checksum or did not parse; it was deleted.
    Corrupt,
}

#[derive(Default)]
struct Index {
    by_key: HashMap<CacheKey, (u64, u64)>,
    by_age: BTreeMap<u64, CacheKey>,
    next_seq: u64,
}

struct Inner {
    db: Arc<Database>,
    table: &'static str,
    path: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    items: AtomicU64,
    bytes: AtomicU64,
}

/// Handle on the on-disk tier; clones share one database.
#[derive(Clone)]
pub struct DiskTier {
    inner: Arc<Inner>,
}

impl DiskTier {
    /// Opens (or creates) the response cache's store at `path`, indexing what it holds. Entries
    /// with a malformed key or value are deleted here; the number dropped is returned alongside.
    pub fn open(path: &Path, max_bytes: u64) -> Result<(Self, u64), DiskError> {
        Self::open_table(path, CACHE_TABLE, max_bytes)
    }

    /// Like [`DiskTier::open`], for the table `table` of the file at `path`, with its own byte
    /// bound. Values are whatever the caller encodes; [`DiskTier::get_bytes`] reads them back.
    pub fn open_table(
        path: &Path,
        table: &'static str,
        max_bytes: u64,
    ) -> Result<(Self, u64), DiskError> {
        let db = shared_database(path)?;
        let tier = Self {
            inner: Arc::new(Inner {
                db,
                table,
                path: path.to_owned(),
                max_bytes,
                index: Mutex::new(Index::default()),
                items: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
            }),
        };
        let dropped = tier.rebuild_index()?;
        Ok((tier, dropped))
    }

    fn entries(&self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.inner.table)
    }

    fn rebuild_index(&self) -> Result<u64, DiskError> {
        let txn = self.inner.db.begin_write().map_err(store_err)?;
        let mut bad: Vec<Vec<u8>> = Vec::new();
        let mut index = Index::default();
        {
            let table = txn.open_table(self.entries()).map_err(store_err)?;
            for row in table.iter().map_err(store_err)? {
                let (k, v) = row.map_err(store_err)?;
                let (k, v) = (k.value(), v.value());
                match (<[u8; 32]>::try_from(k), parse_seq(v)) {
                    (Ok(digest), Some(seq)) => {
                        let key = CacheKey::from_bytes(digest);
                        index.by_key.insert(key, (seq, v.len() as u64));
                        index.by_age.insert(seq, key);
                        index.next_seq = index.next_seq.max(seq + 1);
                    }
                    _ => bad.push(k.to_vec()),
                }
            }
        }
        {
            let mut table = txn.open_table(self.entries()).map_err(store_err)?;
            for k in &bad {
                table.remove(k.as_slice()).map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        let mut guard = self.lock();
        *guard = index;
        self.publish(&guard);
        drop(guard);
        // The bound may have been lowered since the file was written.
        self.evict_to(self.inner.max_bytes)?;
        Ok(bad.len() as u64)
    }

    /// Reads `key` as a cached response. Entries older than `ttl_seconds` (by their
    /// `created_at`) and corrupt entries are deleted and reported as such; entries of another
    /// format version are deleted and reported as missing.
    pub fn get(&self, key: &CacheKey, ttl_seconds: Option<u64>) -> Result<DiskGet, DiskError> {
        let Some(raw) = self.get_bytes(key)? else {
            return Ok(DiskGet::Missing);
        };
        let outcome = match entry::decode(&raw) {
            // Written by a build with another entry format: unusable, but not damage.
            Err(entry::DecodeError::Version(_)) => DiskGet::Missing,
            Err(_) => DiskGet::Corrupt,
            Ok(value) if is_expired(value.created_at, ttl_seconds) => DiskGet::Expired,
            Ok(value) => return Ok(DiskGet::Hit(value)),
        };
        self.remove(key)?;
        Ok(outcome)
    }

    /// The value stored under `key`, as it was handed to [`DiskTier::put`]; unchecked (the
    /// caller decodes it, and removes it when it does not decode).
    pub fn get_bytes(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, DiskError> {
        let txn = self.inner.db.begin_read().map_err(store_err)?;
        let table = match txn.open_table(self.entries()) {
            Ok(table) => table,
            // Nothing was ever written to this table of the file.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(store_err(e)),
        };
        let Some(raw) = table.get(key.as_bytes().as_slice()).map_err(store_err)? else {
            return Ok(None);
        };
        // Rows without a sequence header are dropped when the file is opened; one that appears
        // later anyway reads as an empty (undecodable) value.
        Ok(Some(
            raw.value().get(SEQ_LEN..).unwrap_or_default().to_vec(),
        ))
    }

    /// Writes an encoded entry (from [`entry::encode`]), then evicts the oldest entries until
    /// the byte bound holds. Returns how many were evicted. An entry larger than the whole bound
    /// is not written.
    pub fn put(&self, key: &CacheKey, encoded: &[u8]) -> Result<u64, DiskError> {
        let size = (SEQ_LEN + encoded.len()) as u64;
        if size > self.inner.max_bytes {
            return Ok(0);
        }
        let mut index = self.lock();
        let seq = index.next_seq;
        let mut value = Vec::with_capacity(size as usize);
        value.extend_from_slice(&seq.to_le_bytes());
        value.extend_from_slice(encoded);
        let txn = self.inner.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(self.entries()).map_err(store_err)?;
            table
                .insert(key.as_bytes().as_slice(), value.as_slice())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        index.next_seq += 1;
        if let Some((old_seq, _)) = index.by_key.insert(*key, (seq, size)) {
            index.by_age.remove(&old_seq);
        }
        index.by_age.insert(seq, *key);
        self.publish(&index);
        drop(index);
        self.evict_to(self.inner.max_bytes)
    }

    /// Deletes `key` if present; whether it was.
    pub fn remove(&self, key: &CacheKey) -> Result<bool, DiskError> {
        let mut index = self.lock();
        let txn = self.inner.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(self.entries()).map_err(store_err)?;
            table.remove(key.as_bytes().as_slice()).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        let present = index.by_key.remove(key);
        if let Some((seq, _)) = present {
            index.by_age.remove(&seq);
        }
        self.publish(&index);
        Ok(present.is_some())
    }

    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> Result<u64, DiskError> {
        let mut index = self.lock();
        let txn = self.inner.db.begin_write().map_err(store_err)?;
        txn.delete_table(self.entries()).map_err(store_err)?;
        txn.open_table(self.entries()).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        let removed = index.by_key.len() as u64;
        index.by_key.clear();
        index.by_age.clear();
        self.publish(&index);
        Ok(removed)
    }

    /// Entries on disk.
    pub fn items(&self) -> u64 {
        self.inner.items.load(Ordering::Relaxed)
    }

    /// Bytes of values on disk (keys and store overhead not counted).
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn evict_to(&self, max_bytes: u64) -> Result<u64, DiskError> {
        let mut index = self.lock();
        let total: u64 = index.by_key.values().map(|(_, size)| size).sum();
        if total <= max_bytes {
            return Ok(0);
        }
        let mut excess = total - max_bytes;
        let mut victims = Vec::new();
        for (seq, key) in &index.by_age {
            if excess == 0 {
                break;
            }
            let size = index.by_key.get(key).map_or(0, |(_, size)| *size);
            excess = excess.saturating_sub(size);
            victims.push((*seq, *key));
        }
        let txn = self.inner.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(self.entries()).map_err(store_err)?;
            for (_, key) in &victims {
                table.remove(key.as_bytes().as_slice()).map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        for (seq, key) in &victims {
            index.by_age.remove(seq);
            index.by_key.remove(key);
        }
        self.publish(&index);
        Ok(victims.len() as u64)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // The index is rebuilt from plain data; a panic elsewhere cannot leave it half-updated
        // in a way that matters more than a wrong byte count, so poisoning is ignored.
        self.inner
            .index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, index: &Index) {
        let bytes: u64 = index.by_key.values().map(|(_, size)| size).sum();
        self.inner
            .items
            .store(index.by_key.len() as u64, Ordering::Relaxed);
        self.inner.bytes.store(bytes, Ordering::Relaxed);
    }
}

/// The open database of the file at `path`, or a newly opened one (an unreadable file is moved
/// aside and replaced).
fn shared_database(path: &Path) -> Result<Arc<Database>, DiskError> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => PathBuf::from("."),
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DiskError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let file = path.file_name().ok_or_else(|| {
        io(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let id = std::fs::canonicalize(&dir).map_err(io(&dir))?.join(file);
    // Held while opening, so two tiers opening one file at once do not both try.
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    open.retain(|(_, db)| db.strong_count() > 0);
    if let Some(db) = open
        .iter()
        .find(|(p, _)| *p == id)
        .and_then(|(_, db)| db.upgrade())
    {
        return Ok(db);
    }
    let db = match Database::create(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(store_err(redb::DatabaseError::DatabaseAlreadyOpen))
        }
        Err(e) => {
            let aside = path.with_extension(format!("corrupt-{}", unix_now()));
            tracing::warn!(path = %path.display(), aside = %aside.display(), error = %e,
                "disk cache unreadable; moving it aside and starting empty");
            std::fs::rename(path, &aside).map_err(io(path))?;
            Database::create(path).map_err(store_err)?
        }
    };
    let db = Arc::new(db);
    open.push((id, Arc::downgrade(&db)));
    Ok(db)
}

fn parse_seq(value: &[u8]) -> Option<u64> {
    let head: [u8; SEQ_LEN] = value.get(..SEQ_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// Whether an entry created at `created_at` (Unix seconds) is past `ttl_seconds`.
pub(crate) fn is_expired(created_at: u64, ttl_seconds: Option<u64>) -> bool {
    ttl_seconds.is_some_and(|ttl| unix_now().saturating_sub(created_at) > ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{encode, sample};

    fn key(n: u8) -> CacheKey {
        CacheKey::from_bytes([n; 32])
    }

    #[test]
    fn entries_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/cache.redb");
        {
            let (disk, _) = DiskTier::open(&path, 1 << 20).expect("open");
            disk.put(&key(1), &encode(&sample("persisted")))
                .expect("put");
            assert_eq!(disk.items(), 1);
        }
        let (disk, dropped) = DiskTier::open(&path, 1 << 20).expect("reopen");
        assert_eq!(dropped, 0);
        assert_eq!(disk.items(), 1);
        match disk.get(&key(1), None).expect("get") {
            DiskGet::Hit(v) => assert_eq!(v.text, "persisted"),
            other => panic!("expected a hit, got {other:?}"),
        }
        assert_eq!(disk.get(&key(2), None).expect("get"), DiskGet::Missing);
    }

    #[test]
    fn byte_bound_evicts_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = encode(&sample(&"a".repeat(200)));
        let bound = (3 * (one.len() + SEQ_LEN)) as u64;
        let (disk, _) = DiskTier::open(&dir.path().join("c.redb"), bound).expect("open");
        for n in 1..=4 {
            disk.put(&key(n), &encode(&sample(&"a".repeat(200))))
                .expect("put");
        }
        assert_eq!(disk.items(), 3);
        assert!(disk.bytes() <= bound);
        assert_eq!(disk.get(&key(1), None).expect("get"), DiskGet::Missing);
        assert!(matches!(
            disk.get(&key(4), None).expect("get"),
            DiskGet::Hit(_)
        ));
        // Rewriting a key replaces, not duplicates, its bytes.
        disk.put(&key(4), &one).expect("put");
        assert_eq!(disk.items(), 3);
        // Lowering the bound on reopen evicts down to it.
        drop(disk);
        let (disk, _) = DiskTier::open(&dir.path().join("c.redb"), bound / 2).expect("open");
        assert_eq!(disk.items(), 1);
        assert!(matches!(
            disk.get(&key(4), None).expect("get"),
            DiskGet::Hit(_)
        ));
    }

    #[test]
    fn entries_of_an_older_format_are_misses_and_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (disk, _) = DiskTier::open(&dir.path().join("c.redb"), 1 << 20).expect("open");
        let mut old = encode(&sample("hello"));
        old[4] = entry::FORMAT_VERSION - 1;
        disk.put(&key(1), &old).expect("put");
        assert_eq!(disk.get(&key(1), None).expect("get"), DiskGet::Missing);
        assert_eq!(disk.items(), 0);
    }

    #[test]
    fn corrupt_values_are_dropped_not_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let (disk, _) = DiskTier::open(&path, 1 << 20).expect("open");
        let mut bad = encode(&sample("hello"));
        let last = bad.len() - 2;
        bad[last] ^= 1;
        disk.put(&key(1), &bad).expect("put");
        assert_eq!(disk.get(&key(1), None).expect("get"), DiskGet::Corrupt);
        assert_eq!(disk.items(), 0);
        assert_eq!(disk.get(&key(1), None).expect("get"), DiskGet::Missing);

        // Malformed rows written behind the tier's back are dropped on open.
        {
            let txn = disk.inner.db.begin_write().expect("txn");
            {
                let mut table = txn.open_table(disk.entries()).expect("table");
                table
                    .insert(b"short".as_slice(), b"x".as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        drop(disk);
        let (disk, dropped) = DiskTier::open(&path, 1 << 20).expect("reopen");
        assert_eq!(dropped, 1);
        assert_eq!(disk.items(), 0);
    }

    #[test]
    fn unreadable_file_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        std::fs::write(&path, vec![0xA5u8; 8192]).expect("write garbage");
        let (disk, _) = DiskTier::open(&path, 1 << 20).expect("open replaces garbage");
        disk.put(&key(1), &encode(&sample("fresh"))).expect("put");
        assert!(matches!(
            disk.get(&key(1), None).expect("get"),
            DiskGet::Hit(_)
        ));
        let moved = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("corrupt-"));
        assert!(moved);
    }

    #[test]
    fn expired_entries_are_deleted_on_read_and_clear_empties() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (disk, _) = DiskTier::open(&dir.path().join("c.redb"), 1 << 20).expect("open");
        let mut old = sample("old");
        old.created_at = unix_now() - 100;
        disk.put(&key(1), &encode(&old)).expect("put");
        disk.put(&key(2), &encode(&sample("new"))).expect("put");
        assert!(matches!(
            disk.get(&key(1), Some(1000)).expect("get"),
            DiskGet::Hit(_)
        ));
        assert_eq!(disk.get(&key(1), Some(10)).expect("get"), DiskGet::Expired);
        assert_eq!(disk.items(), 1);
        assert_eq!(disk.clear().expect("clear"), 1);
        assert_eq!(disk.items(), 0);
        assert_eq!(disk.get(&key(2), None).expect("get"), DiskGet::Missing);
    }

    /// Measures read and write latency: `cargo test ... disk_latency -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn disk_latency_benchmark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (disk, _) = DiskTier::open(&dir.path().join("c.redb"), 1 << 30).expect("open");
        let value = encode(&sample(&"answer ".repeat(100)));
        let writes = 200;
        let started = std::time::Instant::now();
        for n in 0..writes {
            disk.put(&CacheKey::from_bytes([n as u8; 32]), &value)
                .expect("put");
        }
        let per_write = started.elapsed() / writes;
        let reads = 20_000u32;
        let started = std::time::Instant::now();
        for n in 0..reads {
            let hit = disk.get(&CacheKey::from_bytes([(n % 200) as u8; 32]), None);
            assert!(matches!(hit, Ok(DiskGet::Hit(_))));
        }
        println!(
            "disk tier: put (fsync) {per_write:?}/entry, get+decode {:?}/entry",
            started.elapsed() / reads
        );
    }
}
