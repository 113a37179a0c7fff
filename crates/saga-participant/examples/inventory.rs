//! A complete participant: an inventory service whose `Reserve` step takes one unit of stock for a saga
//! and whose `Release` compensation puts it back. The README shows this file; a test runs it.
//!
//! `cargo run -p saga-participant --example inventory -- <database-url> <listen-addr>`

use saga_participant::{ParticipantService, Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Takes one unit of `sku` for this saga. Runs once per saga however often it is delivered.
async fn reserve(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let sku = call.str("sku")?; // missing or not a string: INVALID_ARGUMENT, nothing written
    let taken =
        sqlx::query("UPDATE stock SET available = available - 1 WHERE sku = $1 AND available > 0")
            .bind(sku)
            .execute(&mut *tx)
            .await?;
    if taken.rows_affected() == 0 {
        let refusal = format!("{sku} is out of stock"); // a definite no: recorded, replayed, not retried
        return Err(StepError::failed_precondition(refusal));
    }
    Ok(output([("reservedSku", json!(sku))]))
}

/// Puts the unit back. Called only if `reserve` committed, and only once.
async fn release(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    sqlx::query("UPDATE stock SET available = available + 1 WHERE sku = $1")
        .bind(call.str("sku")?)
        .execute(&mut *tx)
        .await?;
    Ok(StepOutput::new())
}

/// The service's actions, by the names saga definitions use.
pub fn router() -> Router {
    Router::new()
        .execute("Reserve", reserve)
        .compensate("Release", release)
}

/// The barrier table (the SDK's migrations) and this service's own table.
pub async fn migrate(pool: &PgPool) -> Result<(), Box<dyn std::error::Error>> {
    saga_participant::migrate(pool).await?;
    let stock = "CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, available int CHECK (available >= 0))";
    sqlx::query(stock).execute(pool).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let database_url = args
        .next()
        .ok_or("usage: inventory <database-url> <listen-addr>")?;
    let listener = TcpListener::bind(args.next().as_deref().unwrap_or("127.0.0.1:50070")).await?;
    let pool = PgPool::connect(&database_url).await?;
    migrate(&pool).await?;
    println!("inventory listening on {}", listener.local_addr()?);
    let service = ParticipantService::new("inventory", pool, router());
    saga_participant::serve(listener, service, CancellationToken::new()).await?;
    Ok(())
}
