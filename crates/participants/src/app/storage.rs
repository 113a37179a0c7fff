//! The app service's object storage: package files in a directory the service owns, each named by the
//! SHA-256 of its content, so one content is one file however many apps carry it. Which files should
//! exist is the `app.blobs` table's say; this module only moves bytes.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Files being written start with this; a leftover one is a write a crash interrupted.
const PARTIAL_PREFIX: &str = ".partial-";

/// A storage directory.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    dir: PathBuf,
}

/// What the directory holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    /// The objects, by checksum.
    pub(crate) objects: Vec<String>,
    /// Interrupted writes.
    pub(crate) partial: Vec<PathBuf>,
}

impl Storage {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `content` under its checksum `sha256`, unless it is there already. The bytes go to a
    /// temporary file that is synced, then renamed, so an object is whole or absent, never half written.
    /// The directory is created with the first object.
    pub(crate) async fn put(&self, sha256: &str, content: &[u8]) -> io::Result<()> {
        let path = self.dir.join(sha256);
        if tokio::fs::try_exists(&path).await? {
            return Ok(());
        }
        tokio::fs::create_dir_all(&self.dir).await?;
        let partial = self.dir.join(format!("{PARTIAL_PREFIX}{}", Uuid::now_v7()));
        let mut file = tokio::fs::File::create(&partial).await?;
        file.write_all(content).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&partial, &path).await
    }

    /// Removes the object `sha256`; one already gone is fine.
    pub(crate) async fn remove(&self, sha256: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.dir.join(sha256)).await {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// The checksum of the object stored as `sha256`, read back from disk (so a damaged file shows), or
    /// `None` when there is no such file.
    pub(crate) async fn checksum(&self, sha256: &str) -> io::Result<Option<String>> {
        match tokio::fs::read(self.dir.join(sha256)).await {
            Ok(content) => Ok(Some(checksum(&content))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The objects and interrupted writes in the directory (none before it exists); other files are not
    /// the storage's.
    pub(crate) async fn list(&self) -> io::Result<Listing> {
        let mut listing = Listing::default();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(listing),
            entries => entries?,
        };
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(PARTIAL_PREFIX) {
                listing.partial.push(entry.path());
            } else if is_checksum(name) {
                listing.objects.push(name.to_owned());
            }
        }
        listing.objects.sort();
        Ok(listing)
    }
}

/// The hex SHA-256 of `content`: an object's name.
pub(crate) fn checksum(content: &[u8]) -> String {
    Sha256::digest(content)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn is_checksum(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_is_stored_once_under_its_checksum_and_removed_idempotently() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::new(&dir.path().join("objects"));
        assert_eq!(
            storage.list().await.expect("list"),
            Listing::default(),
            "no directory yet"
        );
        let sum = checksum(b"package");
        assert_eq!(
            sum,
            "bc4a71180870f7945155fbb02f4b0a2e3faa2a62d6d31b7039013055ed19869a"
        );

        storage.put(&sum, b"package").await.expect("put");
        storage.put(&sum, b"package").await.expect("put again");
        assert_eq!(
            storage.checksum(&sum).await.expect("read"),
            Some(sum.clone())
        );
        assert_eq!(
            storage.list().await.expect("list"),
            Listing {
                objects: vec![sum.clone()],
                partial: vec![]
            }
        );

        storage.remove(&sum).await.expect("remove");
        storage.remove(&sum).await.expect("remove again");
        assert_eq!(storage.checksum(&sum).await.expect("read"), None);
    }

    #[tokio::test]
    async fn a_damaged_object_reads_back_with_another_checksum_and_strays_are_told_apart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::new(dir.path());
        let sum = checksum(b"package");
        std::fs::write(dir.path().join(&sum), b"packag").expect("damaged object");
        std::fs::write(dir.path().join(".partial-1"), b"pack").expect("interrupted write");
        std::fs::write(dir.path().join("README"), b"not an object").expect("other file");

        assert_eq!(
            storage.checksum(&sum).await.expect("read"),
            Some(checksum(b"packag"))
        );
        assert_eq!(
            storage.list().await.expect("list"),
            Listing {
                objects: vec![sum],
                partial: vec![dir.path().join(".partial-1")]
            }
        );
    }
}
