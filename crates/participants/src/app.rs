//! app: app records and their packages (app_upload). The record is UPLOADING while its package is put in
//! the storage directory, then AVAILABLE (published); undone, the package file is removed and the record
//! DELETED. No stored package without an AVAILABLE app, no AVAILABLE app without its package: the storage
//! leak this flow exists to close.
//!
//! The package file is written inside the step's transaction but is not part of it. Uploads and removals
//! of one content take the `app.blobs` row lock first, so they never cross; a removal whose commit fails
//! is retried by the coordinator (a compensation always is) and converges; an upload whose commit fails
//! leaves a file no row counts, which [`prepare_storage`] removes at the next start.

mod storage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use saga_participant::{Action, ActionFuture, Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tracing::info;
use uuid::Uuid;

use self::storage::{Storage, checksum};

/// The app service's actions, with its packages kept in `storage_dir`.
pub(crate) fn router(storage_dir: &Path) -> Router {
    let storage = Arc::new(Storage::new(storage_dir));
    let with_storage = |step| WithStorage {
        storage: storage.clone(),
        step,
    };
    Router::new()
        .execute("CreateAppRecord", create_app_record)
        .compensate("DeleteAppRecord", delete_app_record)
        .execute("UploadToStorage", with_storage(StorageStep::Upload))
        .compensate("DeleteFromStorage", with_storage(StorageStep::Delete))
        .execute("PublishApp", with_storage(StorageStep::Publish))
}

/// Storage could not be made ready at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The directory cannot be listed or cleaned.
    #[error("cannot use the storage directory {dir}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The blob table cannot be read.
    #[error("cannot read the stored objects")]
    Database(#[from] sqlx::Error),
}

/// Removes from the storage directory what no row counts: files of uploads whose transaction never
/// committed, and interrupted writes. Run before serving, so that no upload is in flight.
pub(crate) async fn prepare_storage(pool: &PgPool, dir: &Path) -> Result<(), StorageError> {
    let storage = Storage::new(dir);
    let io = |source| StorageError::Io {
        dir: dir.to_owned(),
        source,
    };
    let listing = storage.list().await.map_err(io)?;
    for partial in &listing.partial {
        tokio::fs::remove_file(partial).await.map_err(io)?;
    }
    let held: HashSet<String> = sqlx::query_scalar("SELECT sha256 FROM app.blobs WHERE refs > 0")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    for sha256 in listing
        .objects
        .iter()
        .filter(|sha256| !held.contains(*sha256))
    {
        storage.remove(sha256).await.map_err(io)?;
        info!(sha256, "removed a stored object no app holds");
    }
    Ok(())
}

/// The actions that use the storage directory.
#[derive(Debug, Clone, Copy)]
enum StorageStep {
    Upload,
    Delete,
    Publish,
}

/// A [`StorageStep`] bound to the service's storage.
struct WithStorage {
    storage: Arc<Storage>,
    step: StorageStep,
}

impl Action for WithStorage {
    fn run<'a>(&'a self, call: &'a StepCall, tx: &'a mut PgConnection) -> ActionFuture<'a> {
        let storage = &*self.storage;
        match self.step {
            StorageStep::Upload => Box::pin(upload_to_storage(storage, call, tx)),
            StorageStep::Delete => Box::pin(delete_from_storage(storage, call, tx)),
            StorageStep::Publish => Box::pin(publish_app(storage, call, tx)),
        }
    }
}

/// Records an UPLOADING app, refusing a name and version that already has a live upload:
/// `{"appId", "appStatus"}`.
async fn create_app_record(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let developer_id = call.str("developerId")?;
    let name = call.str("appName")?;
    let version = call.str("version")?;
    let app_id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO app.apps (id, saga_id, developer_id, name, version, status)
         VALUES ($1, $2, $3, $4, $5, 'UPLOADING')
         ON CONFLICT (name, version) WHERE status <> 'DELETED' DO NOTHING",
    )
    .bind(app_id)
    .bind(call.saga_id)
    .bind(developer_id)
    .bind(name)
    .bind(version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(StepError::already_exists(format!(
            "app {name} {version} already exists"
        )));
    }
    Ok(app_output(Some(app_id), "UPLOADING"))
}

/// UPLOADING → DELETED for the saga's app: `{"deletedApps": n}`.
async fn delete_app_record(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let deleted = sqlx::query(
        "UPDATE app.apps SET status = 'DELETED', updated_at = now()
         WHERE saga_id = $1 AND status = 'UPLOADING'",
    )
    .bind(call.saga_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("deletedApps", json!(deleted))]))
}

/// Stores the base64 `packageBase64` under its checksum (which must equal `packageSha256` when given)
/// as the app's package: `{"objectId", "packageSha256", "packageBytes"}`.
async fn upload_to_storage(
    storage: &Storage,
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let app_id = call.uuid("appId")?;
    let package = BASE64.decode(call.str("packageBase64")?).map_err(|err| {
        StepError::invalid_argument(format!("field \"packageBase64\" is not base64: {err}"))
    })?;
    let size_bytes = i64::try_from(package.len())
        .map_err(|_| StepError::out_of_range("the package is too large"))?;
    let sha256 = checksum(&package);
    if let Some(expected) = call.opt_str("packageSha256")?
        && expected != sha256
    {
        return Err(StepError::invalid_argument(format!(
            "the package's sha256 is {sha256}, not {expected}"
        )));
    }
    let status = app_status(tx, app_id, call.saga_id).await?;
    if status != "UPLOADING" {
        return Err(StepError::failed_precondition(format!(
            "app {app_id} is {}",
            status.to_lowercase()
        )));
    }
    sqlx::query(
        "INSERT INTO app.blobs (sha256, refs) VALUES ($1, 1)
         ON CONFLICT (sha256) DO UPDATE SET refs = app.blobs.refs + 1",
    )
    .bind(&sha256)
    .execute(&mut *tx)
    .await?;
    storage
        .put(&sha256, &package)
        .await
        .map_err(|err| StepError::internal("cannot write to the storage", err))?;
    let object_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO app.objects (id, app_id, saga_id, sha256, size_bytes, status)
         VALUES ($1, $2, $3, $4, $5, 'STORED')",
    )
    .bind(object_id)
    .bind(app_id)
    .bind(call.saga_id)
    .bind(&sha256)
    .bind(size_bytes)
    .execute(&mut *tx)
    .await?;
    Ok(output([
        ("objectId", json!(object_id)),
        ("packageSha256", json!(sha256)),
        ("packageBytes", json!(size_bytes)),
    ]))
}

/// Deletes the saga's package, removing its file when no other object has that content:
/// `{"deletedObjects": n}`.
async fn delete_from_storage(
    storage: &Storage,
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let deleted: Vec<String> = sqlx::query_scalar(
        "UPDATE app.objects SET status = 'DELETED', deleted_at = now()
         WHERE saga_id = $1 AND status = 'STORED'
         RETURNING sha256",
    )
    .bind(call.saga_id)
    .fetch_all(&mut *tx)
    .await?;
    for sha256 in &deleted {
        let refs: i32 = sqlx::query_scalar(
            "UPDATE app.blobs SET refs = refs - 1 WHERE sha256 = $1 RETURNING refs",
        )
        .bind(sha256)
        .fetch_one(&mut *tx)
        .await?;
        if refs == 0 {
            storage
                .remove(sha256)
                .await
                .map_err(|err| StepError::internal("cannot remove from the storage", err))?;
        }
    }
    Ok(output([("deletedObjects", json!(deleted.len()))]))
}

/// UPLOADING → AVAILABLE, once the app's package is in the storage with its checksum:
/// `{"appStatus": "AVAILABLE"}`. Publishing a published app is a no-op.
async fn publish_app(
    storage: &Storage,
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let app_id = call.uuid("appId")?;
    match app_status(tx, app_id, call.saga_id).await?.as_str() {
        "AVAILABLE" => return Ok(app_output(None, "AVAILABLE")),
        "UPLOADING" => {}
        other => {
            return Err(StepError::failed_precondition(format!(
                "app {app_id} is {}",
                other.to_lowercase()
            )));
        }
    }
    let sha256: Option<String> = sqlx::query_scalar(
        "SELECT sha256 FROM app.objects WHERE app_id = $1 AND status = 'STORED'",
    )
    .bind(app_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(sha256) = sha256 else {
        return Err(StepError::failed_precondition(format!(
            "app {app_id} has no stored package"
        )));
    };
    let stored = storage
        .checksum(&sha256)
        .await
        .map_err(|err| StepError::internal("cannot read the storage", err))?;
    if stored.as_deref() != Some(sha256.as_str()) {
        return Err(StepError::failed_precondition(format!(
            "the package {sha256} of app {app_id} is missing or damaged in {}",
            storage.dir().display()
        )));
    }
    sqlx::query("UPDATE app.apps SET status = 'AVAILABLE', updated_at = now() WHERE id = $1")
        .bind(app_id)
        .execute(&mut *tx)
        .await?;
    Ok(app_output(None, "AVAILABLE"))
}

/// The status of the saga's app `app_id`, its row locked.
async fn app_status(
    tx: &mut PgConnection,
    app_id: Uuid,
    saga_id: Uuid,
) -> Result<String, StepError> {
    sqlx::query_scalar("SELECT status FROM app.apps WHERE id = $1 AND saga_id = $2 FOR UPDATE")
        .bind(app_id)
        .bind(saga_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StepError::not_found(format!("app {app_id} does not exist in this saga")))
}

fn app_output(app_id: Option<Uuid>, status: &str) -> StepOutput {
    let mut output = output([("appStatus", json!(status))]);
    if let Some(id) = app_id {
        output.insert("appId".to_owned(), json!(id));
    }
    output
}
