//! A demo database created before the services had their own schemas upgrades in place, rows kept.

use std::path::Path;

use anyhow::Result;
use participants::{DemoServices, Settings};
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::support::Db;

/// The first migration of each service: what the single, shared migration set used to hold.
const FIRST_MIGRATIONS: [&str; 3] = [
    "billing/20250101000100_create_billing.sql",
    "device/20250101000200_create_devices.sql",
    "payment/20250101000300_create_payments.sql",
];

#[tokio::test]
async fn a_database_from_before_the_schemas_moves_its_rows_into_them() -> Result<()> {
    let db = Db::create().await?;
    let old = tempfile::tempdir()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for file in FIRST_MIGRATIONS {
        let name = Path::new(file).file_name().expect("file name");
        std::fs::copy(dir.join(file), old.path().join(name))?;
    }
    saga_participant::migrate(&db.pool).await?;
    let mut migrator = Migrator::new(old.path()).await?;
    migrator.set_ignore_missing(true);
    migrator.run(&db.pool).await?;
    let (saga, order, payment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO billing_orders (id, saga_id, user_id, plan_id, amount_cents, status)
         VALUES ($1, $2, 'u1', 'pro', 2999, 'ACTIVE')",
    )
    .bind(order)
    .bind(saga)
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO payments (id, saga_id, order_id, user_id, amount_cents, status)
         VALUES ($1, $2, $3, 'u1', 2999, 'CAPTURED')",
    )
    .bind(payment)
    .bind(saga)
    .bind(order)
    .execute(&db.pool)
    .await?;

    let storage = tempfile::tempdir()?;
    let services = DemoServices::build(Settings::ephemeral(db.url(), storage.path())).await?;
    drop(services);

    let order_status: String =
        sqlx::query_scalar("SELECT status FROM billing.orders WHERE id = $1")
            .bind(order)
            .fetch_one(&db.pool)
            .await?;
    let payment_status: String =
        sqlx::query_scalar("SELECT status FROM payment.payments WHERE id = $1")
            .bind(payment)
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(
        (order_status.as_str(), payment_status.as_str()),
        ("ACTIVE", "SUCCESS")
    );
    let plans = db.count("SELECT count(*) FROM billing.plans").await?;
    assert_eq!(plans, 3);
    Ok(())
}
