//! The directory store: objects are files under a root; writes go to a temporary file in
//! the same directory and are renamed into place, so a crash never leaves a torn object.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use super::{ObjectMeta, ObjectStore, Precondition, StoreError, StoredObject, content_digest};

/// Objects as files under `root`.
#[derive(Clone, Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let clean = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !clean {
            return Err(StoreError::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(rel))
    }

    /// Synchronous put (the async trait method delegates here). `IfAbsent` is atomic (a hard
    /// link that fails when the name exists); `IfMatch` compares then renames, which is enough for
    /// one process (the directory store has no concurrent writers).
    pub fn put_blocking(
        &self,
        key: &str,
        bytes: &[u8],
        precondition: Precondition,
    ) -> Result<ObjectMeta, StoreError> {
        let path = self.path(key)?;
        let io = |source| StoreError::Io { op: "put", key: key.to_string(), source };
        let failed = || StoreError::PreconditionFailed { op: "put", key: key.to_string() };
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(io)?;
        match precondition {
            Precondition::IfAbsent => {
                tmp.persist_noclobber(&path).map_err(|e| {
                    if e.error.kind() == std::io::ErrorKind::AlreadyExists { failed() } else { io(e.error) }
                })?;
            }
            Precondition::IfMatch(tag) => {
                if self.get_blocking(key)?.map(|o| o.meta.etag) != Some(tag) {
                    return Err(failed());
                }
                tmp.persist(&path).map_err(|e| io(e.error))?;
            }
            Precondition::None => {
                tmp.persist(&path).map_err(|e| io(e.error))?;
            }
        }
        let etag = content_digest(bytes);
        Ok(ObjectMeta { sha256: Some(etag.clone()), etag, size: bytes.len() as u64 })
    }

    /// Synchronous get.
    pub fn get_blocking(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let etag = content_digest(&bytes);
                let meta = ObjectMeta { sha256: Some(etag.clone()), etag, size: bytes.len() as u64 };
                Ok(Some(StoredObject { bytes, meta }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { op: "get", key: key.to_string(), source }),
        }
    }
}

#[async_trait]
impl ObjectStore for DirStore {
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        precondition: Precondition,
    ) -> Result<ObjectMeta, StoreError> {
        self.put_blocking(key, bytes, precondition)
    }

    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.get_blocking(key)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.get_blocking(key)?.map(|o| o.meta))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { op: "delete", key: key.to_string(), source }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        // Walk only the directory the prefix reaches down to.
        let start = match prefix.rfind('/') {
            Some(i) => self.path(&prefix[..i])?,
            None => self.root.clone(),
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { op: "list", key: prefix.to_string(), source }),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    let temp = rel.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp"));
                    if key.starts_with(prefix) && !temp {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        let meta = store.put("a/b/c.tar.gz", b"one", Precondition::IfAbsent).await.expect("put");
        assert_eq!(meta.etag, content_digest(b"one"));
        assert_eq!(store.get("a/b/c.tar.gz").await.expect("get").expect("present").bytes, b"one");
        let again = store.put("a/b/c.tar.gz", b"two", Precondition::IfAbsent).await;
        assert!(matches!(again, Err(StoreError::PreconditionFailed { .. })), "{again:?}");
        let stale = store.put("a/b/c.tar.gz", b"two", Precondition::IfMatch(content_digest(b"zero"))).await;
        assert!(matches!(stale, Err(StoreError::PreconditionFailed { .. })), "{stale:?}");
        store.put("a/b/c.tar.gz", b"two", Precondition::IfMatch(meta.etag)).await.expect("overwrite");
        assert_eq!(store.head("a/b/c.tar.gz").await.expect("head").expect("present").size, 3);
        assert_eq!(store.list("a/").await.expect("list"), vec!["a/b/c.tar.gz"]);
        store.delete("a/b/c.tar.gz").await.expect("delete");
        assert!(store.get("a/b/c.tar.gz").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let store = DirStore::new("/tmp/nowhere");
        for key in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(
                matches!(store.put(key, b"x", Precondition::None).await, Err(StoreError::InvalidKey(_))),
                "{key}"
            );
        }
    }
}
