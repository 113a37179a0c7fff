//! The app service step by step over gRPC: packages stored as files named by their checksum, published,
//! shared between uploads of the same content, removed when an upload is undone or left behind by one.

use std::path::Path;

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use participants::Service::App;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::Code;
use uuid::Uuid;

use crate::support::{Demo, compensate, execute};

fn sha256(content: &[u8]) -> String {
    Sha256::digest(content)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn upload(name: &str, content: &[u8]) -> Value {
    json!({
        "developerId": "dev1", "appName": name, "version": "1.0.0",
        "packageBase64": BASE64.encode(content),
    })
}

/// The names of the files in the storage directory.
fn files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The app's status and its objects' statuses.
async fn rows(demo: &Demo, saga: Uuid) -> Result<(Option<String>, Vec<String>)> {
    let app = sqlx::query_scalar("SELECT status FROM app.apps WHERE saga_id = $1")
        .bind(saga)
        .fetch_optional(&demo.db.pool)
        .await?;
    let objects = sqlx::query_scalar("SELECT status FROM app.objects WHERE saga_id = $1")
        .bind(saga)
        .fetch_all(&demo.db.pool)
        .await?;
    Ok((app, objects))
}

/// Runs `steps` (step, action) forward from `state`, merging each output into it.
async fn forward(demo: &Demo, saga: Uuid, steps: &[(&str, &str)], state: &mut Value) -> Result<()> {
    for (step, action) in steps {
        let output = demo
            .execute(App, execute(saga, step, action, 1, state))
            .await?;
        if let Value::Object(state) = state {
            state.extend(output);
        }
    }
    Ok(())
}

const RECORD: (&str, &str) = ("CREATE_APP_RECORD", "CreateAppRecord");
const STORE: (&str, &str) = ("UPLOAD_TO_STORAGE", "UploadToStorage");
const PUBLISH: (&str, &str) = ("UPDATE_APP_STATUS", "PublishApp");

#[tokio::test]
async fn an_upload_stores_the_package_under_its_checksum_and_publishing_makes_the_app_available()
-> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let content = b"chess 1.0.0 package";
    let mut state = upload("chess", content);

    forward(&demo, saga, &[RECORD, STORE], &mut state).await?;
    assert_eq!(
        rows(&demo, saga).await?,
        (Some("UPLOADING".to_owned()), vec!["STORED".to_owned()])
    );
    assert_eq!(state["packageSha256"], sha256(content));
    assert_eq!(state["packageBytes"], content.len());
    assert_eq!(files(demo.storage.path())?, [sha256(content)]);
    assert_eq!(
        std::fs::read(demo.storage.path().join(sha256(content)))?,
        content
    );

    forward(&demo, saga, &[PUBLISH], &mut state).await?;
    assert_eq!(state["appStatus"], "AVAILABLE");
    assert_eq!(
        rows(&demo, saga).await?,
        (Some("AVAILABLE".to_owned()), vec!["STORED".to_owned()])
    );
    demo.stop().await
}

#[tokio::test]
async fn undoing_an_upload_removes_its_file_and_deletes_the_record() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = upload("chess", b"package");
    forward(&demo, saga, &[RECORD, STORE], &mut state).await?;

    for (step, action) in [
        ("UPLOAD_TO_STORAGE", "DeleteFromStorage"),
        ("CREATE_APP_RECORD", "DeleteAppRecord"),
    ] {
        demo.compensate(App, compensate(saga, step, action, 1, &state))
            .await?;
    }

    assert_eq!(
        rows(&demo, saga).await?,
        (Some("DELETED".to_owned()), vec!["DELETED".to_owned()])
    );
    assert_eq!(files(demo.storage.path())?, Vec::<String>::new());
    // The name and version are free again.
    forward(
        &demo,
        Uuid::new_v4(),
        &[RECORD],
        &mut upload("chess", b"package"),
    )
    .await?;
    demo.stop().await
}

#[tokio::test]
async fn two_uploads_of_one_content_share_a_file_that_outlives_the_first_deletion() -> Result<()> {
    let demo = Demo::start().await?;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let mut first_state = upload("chess", b"same bytes");
    let mut second_state = upload("checkers", b"same bytes");
    forward(&demo, first, &[RECORD, STORE], &mut first_state).await?;
    forward(&demo, second, &[RECORD, STORE], &mut second_state).await?;
    assert_eq!(files(demo.storage.path())?, [sha256(b"same bytes")]);

    demo.compensate(
        App,
        compensate(
            first,
            "UPLOAD_TO_STORAGE",
            "DeleteFromStorage",
            1,
            &first_state,
        ),
    )
    .await?;
    assert_eq!(
        files(demo.storage.path())?,
        [sha256(b"same bytes")],
        "still the second upload's package"
    );
    forward(&demo, second, &[PUBLISH], &mut second_state).await?;

    demo.compensate(
        App,
        compensate(
            second,
            "UPLOAD_TO_STORAGE",
            "DeleteFromStorage",
            1,
            &second_state,
        ),
    )
    .await?;
    assert_eq!(files(demo.storage.path())?, Vec::<String>::new());
    demo.stop().await
}

#[tokio::test]
async fn publishing_refuses_an_app_whose_package_is_damaged_or_missing() -> Result<()> {
    let demo = Demo::start().await?;
    for (name, damage) in [("chess", Some(&b"packag"[..])), ("checkers", None)] {
        let saga = Uuid::new_v4();
        let content = name.as_bytes();
        let mut state = upload(name, content);
        forward(&demo, saga, &[RECORD, STORE], &mut state).await?;
        let file = demo.storage.path().join(sha256(content));
        match damage {
            Some(bytes) => std::fs::write(&file, bytes)?,
            None => std::fs::remove_file(&file)?,
        }

        let refused = demo
            .execute(App, execute(saga, PUBLISH.0, PUBLISH.1, 1, &state))
            .await
            .expect_err("no intact package");

        assert_eq!(refused.code(), Code::FailedPrecondition, "{name}");
        assert!(
            refused.message().contains("is missing or damaged"),
            "{}",
            refused.message()
        );
        assert_eq!(
            rows(&demo, saga).await?.0.as_deref(),
            Some("UPLOADING"),
            "{name} is not published"
        );
    }
    demo.stop().await
}

#[tokio::test]
async fn bad_uploads_are_refused() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = upload("chess", b"package");
    forward(&demo, saga, &[RECORD], &mut state).await?;

    let taken = demo
        .execute(App, execute(Uuid::new_v4(), RECORD.0, RECORD.1, 1, &state))
        .await
        .expect_err("same name and version");
    assert_eq!(
        (taken.code(), taken.message()),
        (Code::AlreadyExists, "app chess 1.0.0 already exists")
    );

    let mut not_base64 = state.clone();
    not_base64["packageBase64"] = json!("not base64!");
    let mut wrong_sum = state.clone();
    wrong_sum["packageSha256"] = json!(sha256(b"other"));
    for payload in [not_base64, wrong_sum] {
        let refused = demo
            .execute(App, execute(Uuid::new_v4(), STORE.0, STORE.1, 1, &payload))
            .await
            .expect_err("bad package");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }
    assert_eq!(files(demo.storage.path())?, Vec::<String>::new());
    demo.stop().await
}

#[tokio::test]
async fn a_restart_removes_files_no_row_counts_and_keeps_the_stored_packages() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = upload("chess", b"kept");
    forward(&demo, saga, &[RECORD, STORE], &mut state).await?;
    let (db, storage) = demo.stop_keeping_state().await?;
    // What a crash between writing a file and committing its row leaves, and an interrupted write.
    std::fs::write(storage.path().join(sha256(b"orphan")), b"orphan")?;
    std::fs::write(storage.path().join(".partial-0"), b"orph")?;

    let demo = Demo::start_on(db, storage).await?;

    assert_eq!(files(demo.storage.path())?, [sha256(b"kept")]);
    demo.stop().await
}
