//! The embedded index kept on disk, so that `edict run --local` has a history, a commit log and
//! rollback that outlive the process, and so that `edict history` and `edict rollback` in
//! another terminal see and change what it published.
//!
//! Each tenant's items are a journal (`<dir>/<tenant>.jsonl`): every write appends the new
//! state of the items it changed, one line per item, so a write costs the size of what it
//! changed, at 10 Systems as at 10,000. Reading the journal from the start rebuilds the index;
//! before each operation, the lines another process appended since are applied (each line is
//! an item's whole state, so applying a line twice changes nothing). When the journal holds
//! many more lines than items, it is rewritten as one line per item (written beside, then
//! renamed). Two processes writing at the very same moment may both pass a version check: the
//! embedded store is for one machine, where that does not happen in practice.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::memory::{MinuteItem, TenantData};
use super::{CommitRecord, DecisionBatch, IndexError, RevisionRecord, StackRecord, SystemRecord, WrappedKey};

/// An item a write changed, named so its new state can be read back from the tenant's data.
#[derive(Clone, Debug)]
pub(super) enum Touched {
    System(String),
    Stack(String),
    /// (stack, system).
    Binding(String, String),
    /// (system, revision).
    Revision(String, String),
    Commit(u64),
    /// The commit log's last sequence.
    Head,
    Key(String),
    /// (system, batch sort key).
    Batch(String, String),
    /// (system, minute).
    Minute(String, String),
}

/// One journal line: an item's state (`None`: absent).
#[derive(Debug, Serialize, Deserialize)]
enum Line {
    System(String, Option<SystemRecord>),
    Stack(String, Option<StackRecord>),
    Binding(String, String, bool),
    Revision(String, String, Option<RevisionRecord>),
    Commit(u64, Option<CommitRecord>),
    Head(u64),
    Key(String, Option<WrappedKey>),
    Batch(String, String, Option<DecisionBatch>),
    Minute(String, String, Option<MinuteItem>),
}

impl Line {
    fn of(touched: &Touched, data: &TenantData) -> Line {
        match touched {
            Touched::System(id) => Line::System(id.clone(), data.systems.get(id).cloned()),
            Touched::Stack(id) => Line::Stack(id.clone(), data.stacks.get(id).cloned()),
            Touched::Binding(stack, system) => Line::Binding(
                stack.clone(),
                system.clone(),
                data.by_stack.contains(&(stack.clone(), system.clone())),
            ),
            Touched::Revision(system, rev) => Line::Revision(
                system.clone(),
                rev.clone(),
                data.revisions.get(system).and_then(|r| r.get(rev)).cloned(),
            ),
            Touched::Commit(seq) => Line::Commit(*seq, data.commits.get(seq).cloned()),
            Touched::Head => Line::Head(data.head),
            Touched::Key(id) => Line::Key(id.clone(), data.keys.get(id).cloned()),
            Touched::Batch(system, key) => Line::Batch(
                system.clone(),
                key.clone(),
                data.batches.get(system).and_then(|b| b.get(key)).cloned(),
            ),
            Touched::Minute(system, minute) => Line::Minute(
                system.clone(),
                minute.clone(),
                data.minutes.get(system).and_then(|m| m.get(minute)).cloned(),
            ),
        }
    }

    fn apply(self, data: &mut TenantData) {
        fn set<K: Ord, V>(map: &mut std::collections::BTreeMap<K, V>, k: K, v: Option<V>) {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        match self {
            Line::System(id, record) => set(&mut data.systems, id, record),
            Line::Stack(id, record) => set(&mut data.stacks, id, record),
            Line::Binding(stack, system, bound) => {
                if bound {
                    data.by_system.insert((system.clone(), stack.clone()));
                    data.by_stack.insert((stack, system));
                } else {
                    data.by_system.remove(&(system.clone(), stack.clone()));
                    data.by_stack.remove(&(stack, system));
                }
            }
            Line::Revision(system, rev, record) => {
                let revisions = data.revisions.entry(system.clone()).or_default();
                set(revisions, rev, record);
                if revisions.is_empty() {
                    data.revisions.remove(&system);
                }
            }
            Line::Commit(seq, record) => set(&mut data.commits, seq, record),
            Line::Head(head) => data.head = head,
            Line::Key(id, key) => set(&mut data.keys, id, key),
            Line::Batch(system, key, batch) => {
                let batches = data.batches.entry(system.clone()).or_default();
                set(batches, key, batch);
                if batches.is_empty() {
                    data.batches.remove(&system);
                }
            }
            Line::Minute(system, minute, item) => {
                let series = data.minutes.entry(system.clone()).or_default();
                set(series, minute, item);
                if series.is_empty() {
                    data.minutes.remove(&system);
                }
            }
        }
    }

    /// Every item of `data`, one line each: the journal rewritten.
    fn all(data: &TenantData) -> Vec<Line> {
        let mut lines: Vec<Line> = Vec::new();
        lines.extend(data.systems.values().map(|r| Line::System(r.id.clone(), Some(r.clone()))));
        lines.extend(data.stacks.values().map(|r| Line::Stack(r.id.clone(), Some(r.clone()))));
        lines.extend(
            data.by_stack.iter().map(|(stack, system)| Line::Binding(stack.clone(), system.clone(), true)),
        );
        for (system, revisions) in &data.revisions {
            lines.extend(
                revisions
                    .values()
                    .map(|r| Line::Revision(system.clone(), r.revision.clone(), Some(r.clone()))),
            );
        }
        lines.extend(data.commits.iter().map(|(seq, r)| Line::Commit(*seq, Some(r.clone()))));
        lines.push(Line::Head(data.head));
        lines.extend(data.keys.iter().map(|(id, k)| Line::Key(id.clone(), Some(k.clone()))));
        for (system, batches) in &data.batches {
            lines.extend(
                batches.iter().map(|(key, b)| Line::Batch(system.clone(), key.clone(), Some(b.clone()))),
            );
        }
        for (system, series) in &data.minutes {
            lines.extend(
                series
                    .iter()
                    .map(|(minute, m)| Line::Minute(system.clone(), minute.clone(), Some(m.clone()))),
            );
        }
        lines
    }
}

/// How far this process has read a tenant's journal: which file (every rewrite renames a new
/// one into place) and up to which byte, and how many lines that was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    inode: u64,
    offset: u64,
    lines: usize,
}

/// Where the tenants' journals are, and how far this process has read each.
#[derive(Debug)]
pub(super) struct Disk {
    dir: PathBuf,
    read: Mutex<HashMap<String, Cursor>>,
}

impl Disk {
    /// The journals under `dir` (created on the first write).
    pub(super) fn open(dir: &Path) -> Self {
        Disk { dir: dir.to_path_buf(), read: Mutex::new(HashMap::new()) }
    }

    fn path(&self, tenant: &str) -> PathBuf {
        // Tenant names are Kubernetes object names; keep any other name inside the directory.
        let safe: String = tenant
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        self.dir.join(format!("{safe}.jsonl"))
    }

    fn error(path: &Path, e: impl std::fmt::Display) -> IndexError {
        IndexError::Disk { path: path.display().to_string(), message: e.to_string() }
    }

    /// Bring `data` up to date with the tenant's journal: the lines appended since this process
    /// last read it, or all of it when the file is new to this process.
    pub(super) fn refresh(&self, tenant: &str, data: &mut TenantData) -> Result<(), IndexError> {
        let path = self.path(tenant);
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        // The common case, nothing appended since: one stat, no open.
        if let (Ok(meta), Some(c)) = (std::fs::metadata(&path), read.get(tenant))
            && c.inode == inode(&meta)
            && c.offset == meta.len()
        {
            return Ok(());
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if read.remove(tenant).is_some() {
                    *data = TenantData::default();
                }
                return Ok(());
            }
            Err(e) => return Err(Self::error(&path, e)),
        };
        let meta = file.metadata().map_err(|e| Self::error(&path, e))?;
        let inode = inode(&meta);
        let mut cursor = match read.get(tenant) {
            Some(c) if c.inode == inode && c.offset == meta.len() => return Ok(()),
            Some(c) if c.inode == inode && c.offset < meta.len() => *c,
            _ => {
                *data = TenantData::default();
                Cursor { inode, offset: 0, lines: 0 }
            }
        };
        file.seek(std::io::SeekFrom::Start(cursor.offset)).map_err(|e| Self::error(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Self::error(&path, e))?;
        // A line still being written by another process ends without a newline: later.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for (n, line) in bytes[..whole].split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let line: Line = serde_json::from_slice(line).map_err(|e| IndexError::Corrupt {
                what: format!(
                    "index journal {} (line {} from byte {})",
                    path.display(),
                    cursor.lines + n + 1,
                    cursor.offset
                ),
                message: e.to_string(),
            })?;
            line.apply(data);
        }
        cursor.lines += bytes[..whole].iter().filter(|b| **b == b'\n').count();
        cursor.offset += whole as u64;
        read.insert(tenant.to_string(), cursor);
        if cursor.lines > 1000 + 4 * items(data) {
            drop(read);
            self.rewrite(tenant, data)?;
        }
        Ok(())
    }

    /// Append the new state of what a write `touched`.
    pub(super) fn save(
        &self,
        tenant: &str,
        data: &TenantData,
        touched: &[Touched],
    ) -> Result<(), IndexError> {
        let lines: Vec<Line> = touched.iter().map(|t| Line::of(t, data)).collect();
        let path = self.path(tenant);
        let bytes = encode(&lines).map_err(|e| Self::error(&path, e))?;
        let open = || std::fs::OpenOptions::new().create(true).append(true).open(&path);
        let mut file = match open() {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir).map_err(|e| Self::error(&self.dir, e))?;
                open().map_err(|e| Self::error(&path, e))?
            }
            Err(e) => return Err(Self::error(&path, e)),
        };
        // One write: another process never sees half of this change's lines.
        file.write_all(&bytes).map_err(|e| Self::error(&path, e))?;
        let meta = file.metadata().map_err(|e| Self::error(&path, e))?;
        let (end, inode) = (meta.len(), inode(&meta));
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        match read.get_mut(tenant) {
            // Nobody else appended since this process last read: these lines are read.
            Some(c) if c.inode == inode && c.offset + bytes.len() as u64 == end => {
                c.offset = end;
                c.lines += lines.len();
            }
            // The file is new, or another process appended too: the next refresh reads them
            // (applying this write's lines again changes nothing).
            Some(_) => {}
            None if end == bytes.len() as u64 => {
                read.insert(tenant.to_string(), Cursor { inode, offset: end, lines: lines.len() });
            }
            None => {}
        }
        Ok(())
    }

    /// Replace the journal by one line per item.
    fn rewrite(&self, tenant: &str, data: &TenantData) -> Result<(), IndexError> {
        let path = self.path(tenant);
        let lines = Line::all(data);
        let bytes = encode(&lines).map_err(|e| Self::error(&path, e))?;
        let partial = path.with_extension("jsonl.partial");
        std::fs::write(&partial, &bytes).map_err(|e| Self::error(&partial, e))?;
        std::fs::rename(&partial, &path).map_err(|e| Self::error(&path, e))?;
        let meta = std::fs::metadata(&path).map_err(|e| Self::error(&path, e))?;
        let cursor = Cursor { inode: inode(&meta), offset: bytes.len() as u64, lines: lines.len() };
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant.to_string(), cursor);
        Ok(())
    }
}

fn encode(lines: &[Line]) -> serde_json::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut bytes, line)?;
        bytes.push(b'\n');
    }
    Ok(bytes)
}

fn items(data: &TenantData) -> usize {
    data.systems.len()
        + data.stacks.len()
        + data.by_stack.len()
        + data.revisions.values().map(|r| r.len()).sum::<usize>()
        + data.commits.len()
        + data.keys.len()
        + data.batches.values().map(|b| b.len()).sum::<usize>()
        + data.minutes.values().map(|m| m.len()).sum::<usize>()
}

fn inode(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    return std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    return 0;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::memory::MemoryIndex;
    use super::super::{CommitRecord, LiveRevision, RevisionRecord, SystemRecord, TenantIndex};

    fn system(id: &str) -> SystemRecord {
        SystemRecord {
            id: id.into(),
            system_type: "kubernetes".into(),
            labels: BTreeMap::new(),
            live: None,
            version: 0,
        }
    }

    fn revision(rev: &str, secs: u64) -> RevisionRecord {
        RevisionRecord {
            revision: rev.into(),
            key: format!("bundles/acme/c/ns/web/revisions/{rev}.tar.gz"),
            etag: "e".into(),
            size: 10,
            sha256: rev.repeat(2),
            created: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    fn commit(action: &str) -> CommitRecord {
        CommitRecord {
            sequence: 0,
            actor: "edict".into(),
            action: action.into(),
            system: Some("c/ns/web".into()),
            revision: None,
            time: UNIX_EPOCH + Duration::from_secs(5),
            payload: vec![1, 2, 3],
            payload_key_id: None,
        }
    }

    #[tokio::test]
    async fn what_one_run_wrote_the_next_run_reads() {
        let dir = tempfile::tempdir().unwrap();
        let first = MemoryIndex::on_disk(dir.path());
        let v = first.put_system("acme", &system("c/ns/web"), None).await.unwrap();
        let live = LiveRevision {
            revision: "aa".into(),
            key: "bundles/acme/c/ns/web/bundle.tar.gz".into(),
            etag: "e".into(),
            sha256: "s".into(),
            inputs: BTreeMap::from([("System/ns/web".into(), 2)]),
            stacks: vec![],
            published: None,
        };
        first.set_live("acme", "c/ns/web", &live, v).await.unwrap();
        first.record_revision("acme", "c/ns/web", &revision("aa", 1)).await.unwrap();
        first.record_revision("acme", "c/ns/web", &revision("bb", 2)).await.unwrap();
        let published = first.append_commit("acme", &commit("publish")).await.unwrap();
        drop(first);

        let second = MemoryIndex::on_disk(dir.path());
        let record = second.get_system("acme", "c/ns/web").await.unwrap().expect("the System survives");
        assert_eq!(record.live, Some(live));
        assert_eq!(record.version, v + 1);
        let revisions: Vec<String> = second
            .revisions("acme", "c/ns/web", None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(revisions, ["bb", "aa"]);
        assert_eq!(
            second.append_commit("acme", &commit("rollback")).await.unwrap(),
            published + 1,
            "the log goes on"
        );
        assert_eq!(second.commits("acme", 10).await.unwrap()[1].payload, vec![1, 2, 3]);
        assert!(second.get_system("other", "c/ns/web").await.unwrap().is_none(), "tenants stay apart");
    }

    #[tokio::test]
    async fn a_write_by_another_process_is_seen_by_a_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let running = MemoryIndex::on_disk(dir.path());
        running.put_system("acme", &system("c/ns/web"), None).await.unwrap();
        let cli = MemoryIndex::on_disk(dir.path());
        cli.put_system("acme", &system("c/ns/web"), Some(1)).await.unwrap();
        let seen = running.get_system("acme", "c/ns/web").await.unwrap().unwrap();
        assert_eq!(seen.version, 2, "the running index reads the file another process replaced");
        let stale = running.put_system("acme", &system("c/ns/web"), Some(1)).await;
        assert!(stale.unwrap_err().is_conflict(), "and its version checks hold across processes");
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_naming_it_not_an_empty_index() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.jsonl"), b"{ not json\n").unwrap();
        let index = MemoryIndex::on_disk(dir.path());
        let err = index.get_system("acme", "c/ns/web").await.unwrap_err().to_string();
        assert!(err.contains("acme.jsonl") && err.contains("line 1"), "{err}");
    }

    #[tokio::test]
    async fn deletes_bindings_trims_and_rewrites_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let first = MemoryIndex::on_disk(dir.path()).with_commit_limit(5);
        for name in ["c/ns/a", "c/ns/b", "c/ns/c"] {
            first.put_system("acme", &system(name), None).await.unwrap();
            first.record_revision("acme", name, &revision("aa", 1)).await.unwrap();
        }
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        first.set_bindings("acme", "ns/base", &ids(&["c/ns/a", "c/ns/b", "c/ns/c"])).await.unwrap();
        first.set_bindings("acme", "ns/base", &ids(&["c/ns/a", "c/ns/c"])).await.unwrap();
        first.delete_system("acme", "c/ns/c", None).await.unwrap();
        // Enough writes that the journal is rewritten on the next full read.
        let mut last = 0;
        for _ in 0..400 {
            last = first.append_commit("acme", &commit("publish")).await.unwrap();
        }
        let journal = dir.path().join("acme.jsonl");
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert!(lines(&journal) > 1000, "every write appended: {}", lines(&journal));

        let second = MemoryIndex::on_disk(dir.path());
        assert_eq!(second.systems_of_stack("acme", "ns/base").await.unwrap(), ["c/ns/a"]);
        assert_eq!(second.stacks_of_system("acme", "c/ns/b").await.unwrap(), Vec::<String>::new());
        assert!(second.get_system("acme", "c/ns/c").await.unwrap().is_none());
        assert!(second.revisions("acme", "c/ns/c", None).await.unwrap().is_empty());
        assert_eq!(second.revisions("acme", "c/ns/b", None).await.unwrap().len(), 1);
        let commits = second.commits("acme", 100).await.unwrap();
        assert_eq!(commits.len(), 5, "the limit's trimming is in the journal too");
        assert_eq!(commits[0].sequence, last);
        assert!(lines(&journal) < 30, "rewritten as one line per item: {}", lines(&journal));
        assert_eq!(second.append_commit("acme", &commit("publish")).await.unwrap(), last + 1);
        assert_eq!(
            first.commits("acme", 1).await.unwrap()[0].sequence,
            last + 1,
            "the rewrite is read by the first"
        );
    }

    #[tokio::test]
    async fn a_line_half_written_by_another_process_waits() {
        let dir = tempfile::tempdir().unwrap();
        let index = MemoryIndex::on_disk(dir.path());
        index.put_system("acme", &system("c/ns/web"), None).await.unwrap();
        let journal = dir.path().join("acme.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
        std::io::Write::write_all(&mut f, br#"{"System":["c/ns/other","#).unwrap();
        assert!(index.get_system("acme", "c/ns/other").await.unwrap().is_none());
        assert!(index.get_system("acme", "c/ns/web").await.unwrap().is_some());
        std::io::Write::write_all(&mut f, b"null]}\n").unwrap();
        assert!(index.get_system("acme", "c/ns/web").await.unwrap().is_some(), "the line completed");
    }
}
