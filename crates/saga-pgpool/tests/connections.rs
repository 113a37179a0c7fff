//! `Connections` against real PostgreSQL: what is given back is reused, what is dropped is closed and
//! its transaction rolled back at once, a session the server ended while idle is replaced.

use std::time::Duration;

use anyhow::Result;
use saga_pgpool::{Connection, Connections};
use saga_testkit::TestDatabase;
use sqlx::PgPool;

async fn backend_pid(conn: &mut Connection) -> Result<i32> {
    Ok(sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut **conn)
        .await?)
}

async fn setup(test_after_idle: Option<Duration>) -> Result<(TestDatabase, PgPool, Connections)> {
    let database = TestDatabase::create("pgpool_test").await;
    let pool = PgPool::connect(&database.url()).await?;
    sqlx::query("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO counter VALUES (1, 0)")
        .execute(&pool)
        .await?;
    let connections = Connections::new(pool.clone(), 2, test_after_idle);
    Ok((database, pool, connections))
}

#[tokio::test]
async fn a_connection_given_back_is_handed_out_again() -> Result<()> {
    let (_database, _pool, connections) = setup(None).await?;
    let mut first = connections.get().await?;
    let pid = backend_pid(&mut first).await?;
    first.give_back();

    let mut again = connections.get().await?;
    assert_eq!(backend_pid(&mut again).await?, pid);
    Ok(())
}

#[tokio::test]
async fn a_connection_dropped_mid_transaction_is_closed_and_its_locks_go_at_once() -> Result<()> {
    let (_database, _pool, connections) = setup(None).await?;
    let mut locker = connections.get().await?;
    let pid = backend_pid(&mut locker).await?;
    sqlx::raw_sql("BEGIN; UPDATE counter SET n = n + 1 WHERE id = 1")
        .execute(&mut *locker)
        .await?;
    drop(locker);

    // Waits for the row lock, which only the end of the dropped session releases; a connection given
    // back to a pool with its transaction open would hold it until its next use.
    let mut writer = connections.get().await?;
    assert_ne!(backend_pid(&mut writer).await?, pid, "a new session");
    let n: i32 = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::query_scalar("UPDATE counter SET n = n + 10 WHERE id = 1 RETURNING n")
            .fetch_one(&mut *writer),
    )
    .await??;
    assert_eq!(n, 10, "the dropped transaction's update was rolled back");
    Ok(())
}

#[tokio::test]
async fn a_connection_the_server_ended_while_idle_is_replaced_when_tested() -> Result<()> {
    let (_database, pool, connections) = setup(Some(Duration::ZERO)).await?;
    let mut conn = connections.get().await?;
    let pid = backend_pid(&mut conn).await?;
    conn.give_back();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
        .bind(pid)
        .fetch_one(&pool)
        .await?;
    assert!(ended);

    let mut replaced = connections.get().await?;
    assert_ne!(backend_pid(&mut replaced).await?, pid);
    Ok(())
}
