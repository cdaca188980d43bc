//! The directory store: objects are files under a root; writes go to a temporary file in
//! the same directory and are renamed into place, so a crash never leaves a torn object.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use super::{ObjectMeta, ObjectStore, StoreError, StoredObject, content_etag};

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

    /// Synchronous put (the async trait method delegates here).
    pub fn put_blocking(&self, key: &str, bytes: &[u8]) -> Result<ObjectMeta, StoreError> {
        let path = self.path(key)?;
        let io = |source| StoreError::Io { op: "put", key: key.to_string(), source };
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(ObjectMeta { etag: content_etag(bytes), size: bytes.len() as u64 })
    }

    /// Synchronous get.
    pub fn get_blocking(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let meta = ObjectMeta { etag: content_etag(&bytes), size: bytes.len() as u64 };
                Ok(Some(StoredObject { bytes, meta }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { op: "get", key: key.to_string(), source }),
        }
    }
}

#[async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<ObjectMeta, StoreError> {
        self.put_blocking(key, bytes)
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
        let mut stack = vec![self.root.clone()];
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
        let meta = store.put("a/b/c.tar.gz", b"one").await.expect("put");
        assert_eq!(meta.etag, content_etag(b"one"));
        assert_eq!(store.get("a/b/c.tar.gz").await.expect("get").expect("present").bytes, b"one");
        store.put("a/b/c.tar.gz", b"two").await.expect("overwrite");
        assert_eq!(store.head("a/b/c.tar.gz").await.expect("head").expect("present").size, 3);
        assert_eq!(store.list("a/").await.expect("list"), vec!["a/b/c.tar.gz"]);
        store.delete("a/b/c.tar.gz").await.expect("delete");
        assert!(store.get("a/b/c.tar.gz").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let store = DirStore::new("/tmp/nowhere");
        for key in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(matches!(store.put(key, b"x").await, Err(StoreError::InvalidKey(_))), "{key}");
        }
    }
}
