//! What must hold once sagas are terminal: per saga, the rows its steps (and compensations) left; across
//! every saga, the business invariants of DESIGN.md §1, and the app participant's storage directory.
//! Shared by the tests that run many sagas (invariants, chaos).

use std::collections::BTreeSet;
use std::path::Path;

use crate::{saga_uuid, state_uuid};
use saga_proto::v1::{Saga, SagaStatus};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// A purchase right after it ended (before any refund): completed means an active, paid order with its
/// device; compensated means nothing kept: order cancelled, device released, money refunded once.
pub async fn purchase(db: &PgPool, saga: &Saga) {
    let id = saga_uuid(saga);
    let (orders, devices, payments, charged, refunded): (String, String, String, i64, i64) =
        sqlx::query_as(
            "SELECT coalesce((SELECT string_agg(status, ',') FROM billing.orders WHERE saga_id = $1), ''),
                coalesce((SELECT string_agg(status, ',') FROM device.devices WHERE saga_id = $1), ''),
                coalesce((SELECT string_agg(status, ',') FROM payment.payments WHERE saga_id = $1), ''),
                (SELECT coalesce(sum(amount_cents), 0)::bigint FROM payment.payments
                 WHERE saga_id = $1),
                (SELECT coalesce(sum(r.amount_cents), 0)::bigint FROM payment.provider_refunds r
                 JOIN payment.payments p ON p.id = r.payment_id WHERE p.saga_id = $1)",
        )
    .bind(id)
    .fetch_one(db)
    .await
    .expect("purchase rows");
    let rows = (orders.as_str(), devices.as_str(), payments.as_str());
    match saga.status() {
        SagaStatus::Completed => {
            assert_eq!(rows, ("ACTIVE", "ALLOCATED", "SUCCESS"), "{}", saga.saga_id);
            assert_eq!(refunded, 0, "{}", saga.saga_id);
        }
        _ => {
            assert!(
                matches!(rows.0, "" | "CANCELLED")
                    && matches!(rows.1, "" | "RELEASED")
                    && matches!(rows.2, "" | "REFUNDED"),
                "compensated purchase {} left {rows:?}",
                saga.saga_id
            );
            assert_eq!(
                refunded, charged,
                "{}: refunded what was charged",
                saga.saga_id
            );
        }
    }
}

/// A withdrawal: completed means one sent transfer of the amount; compensated means no money moved.
pub async fn withdrawal(db: &PgPool, saga: &Saga, amount_cents: i64) {
    let id = saga_uuid(saga);
    let (status, sent, reversed): (Option<String>, i64, i64) = sqlx::query_as(
        "SELECT (SELECT status FROM withdrawal.withdrawals WHERE saga_id = $1),
                (SELECT coalesce(sum(t.amount_cents) FILTER (WHERE t.status = 'SENT'), 0)::bigint
                 FROM withdrawal.bank_transfers t JOIN withdrawal.withdrawals w ON w.id = t.withdrawal_id
                 WHERE w.saga_id = $1),
                (SELECT count(*) FILTER (WHERE t.status = 'REVERSED')
                 FROM withdrawal.bank_transfers t JOIN withdrawal.withdrawals w ON w.id = t.withdrawal_id
                 WHERE w.saga_id = $1)",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .expect("withdrawal rows");
    match saga.status() {
        SagaStatus::Completed => {
            assert_eq!(
                (status.as_deref(), sent, reversed),
                (Some("COMPLETED"), amount_cents, 0),
                "{}",
                saga.saga_id
            );
        }
        _ => {
            assert!(
                matches!(status.as_deref(), None | Some("CANCELLED")),
                "{}: {status:?}",
                saga.saga_id
            );
            assert_eq!(
                sent, 0,
                "{}: money sent by a compensated withdrawal",
                saga.saga_id
            );
            assert!(reversed <= 1, "{}: {reversed} reversals", saga.saga_id);
        }
    }
}

/// A device creation: completed means a READY device in a RUNNING container; compensated means nothing
/// left running.
pub async fn device_creation(db: &PgPool, saga: &Saga) {
    let id = saga_uuid(saga);
    let (devices, containers): (String, String) = sqlx::query_as(
        "SELECT coalesce((SELECT string_agg(status, ',') FROM device.devices WHERE saga_id = $1), ''),
                coalesce((SELECT string_agg(status, ',') FROM device.containers WHERE saga_id = $1), '')",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .expect("device rows");
    let rows = (devices.as_str(), containers.as_str());
    match saga.status() {
        SagaStatus::Completed => assert_eq!(rows, ("READY", "RUNNING"), "{}", saga.saga_id),
        _ => assert!(
            matches!(rows.0, "" | "RELEASED") && matches!(rows.1, "" | "DESTROYED"),
            "compensated device creation {} left {rows:?}",
            saga.saga_id
        ),
    }
}

/// A payment creation: completed means a paid order and one paid channel payment of the amount;
/// compensated means the order (if any) cancelled and the channel payment (if the channel made one)
/// cancelled.
pub async fn payment_creation(db: &PgPool, saga: &Saga, amount_cents: i64) {
    let (order, payments, paid_cents): (String, String, i64) = sqlx::query_as(
        "SELECT coalesce((SELECT status FROM gateway.orders WHERE saga_id = $1), ''),
                coalesce((SELECT string_agg(p.status, ',') FROM gateway.channel_payments p
                          JOIN gateway.orders o ON o.id = p.order_id WHERE o.saga_id = $1), ''),
                (SELECT coalesce(sum(p.amount_cents), 0)::bigint FROM gateway.channel_payments p
                 JOIN gateway.orders o ON o.id = p.order_id WHERE o.saga_id = $1)",
    )
    .bind(saga_uuid(saga))
    .fetch_one(db)
    .await
    .expect("payment creation rows");
    let rows = (order.as_str(), payments.as_str());
    match saga.status() {
        SagaStatus::Completed => {
            assert_eq!(rows, ("PAID", "PAID"), "{}", saga.saga_id);
            assert_eq!(paid_cents, amount_cents, "{}", saga.saga_id);
        }
        _ => assert!(
            matches!(rows.0, "" | "CANCELLED") && matches!(rows.1, "" | "CANCELLED"),
            "compensated payment creation {} left {rows:?}",
            saga.saga_id
        ),
    }
}

/// An app upload: completed means an AVAILABLE app with one STORED package and one notification;
/// compensated means the app (if any) DELETED, its package (if stored) DELETED, nobody notified.
pub async fn app_upload(db: &PgPool, saga: &Saga) {
    let (app, objects, notifications): (String, String, i64) = sqlx::query_as(
        "SELECT coalesce((SELECT status FROM app.apps WHERE saga_id = $1), ''),
                coalesce((SELECT string_agg(status, ',') FROM app.objects WHERE saga_id = $1), ''),
                (SELECT count(*) FROM notification.outbox WHERE saga_id = $1)",
    )
    .bind(saga_uuid(saga))
    .fetch_one(db)
    .await
    .expect("app upload rows");
    let rows = (app.as_str(), objects.as_str(), notifications);
    match saga.status() {
        SagaStatus::Completed => assert_eq!(rows, ("AVAILABLE", "STORED", 1), "{}", saga.saga_id),
        _ => assert!(
            matches!(rows, ("" | "DELETED", "" | "DELETED", 0)),
            "compensated app upload {} left {rows:?}",
            saga.saga_id
        ),
    }
}

/// An order: completed means a HELD reservation, a PAID order with its CAPTURED payment, the credit USED
/// and one notification; compensated means everything it held given back and nobody notified.
pub async fn order_creation(db: &PgPool, saga: &Saga) {
    let (reservation, order, payments, credit, notifications): (
        String,
        String,
        String,
        String,
        i64,
    ) = sqlx::query_as(
        "SELECT coalesce((SELECT status FROM inventory.reservations WHERE saga_id = $1), ''),
                    coalesce((SELECT status FROM sales.orders WHERE saga_id = $1), ''),
                    coalesce((SELECT string_agg(p.status, ',') FROM sales.payments p
                              JOIN sales.orders o ON o.id = p.order_id WHERE o.saga_id = $1), ''),
                    coalesce((SELECT status FROM customer.credit_usages WHERE saga_id = $1), ''),
                    (SELECT count(*) FROM notification.outbox WHERE saga_id = $1)",
    )
    .bind(saga_uuid(saga))
    .fetch_one(db)
    .await
    .expect("order rows");
    let rows = (
        reservation.as_str(),
        order.as_str(),
        payments.as_str(),
        credit.as_str(),
        notifications,
    );
    match saga.status() {
        SagaStatus::Completed => assert_eq!(
            rows,
            ("HELD", "PAID", "CAPTURED", "USED", 1),
            "{}",
            saga.saga_id
        ),
        _ => assert!(
            matches!(
                rows,
                (
                    "" | "RELEASED",
                    "" | "CANCELLED",
                    "" | "REFUNDED",
                    "" | "RESTORED",
                    0
                )
            ),
            "compensated order {} left {rows:?}",
            saga.saga_id
        ),
    }
}

/// The app participant's storage directory holds exactly the packages its rows count, each intact
/// under its checksum: no stored package without an AVAILABLE app, no AVAILABLE app without it.
/// Returns how many packages are stored.
pub async fn storage(db: &PgPool, dir: &Path) -> usize {
    let counted: BTreeSet<String> =
        sqlx::query_scalar("SELECT sha256 FROM app.blobs WHERE refs > 0")
            .fetch_all(db)
            .await
            .expect("blobs")
            .into_iter()
            .collect();
    let mut stored = BTreeSet::new();
    let entries = match std::fs::read_dir(dir) {
        // No directory: no package was ever stored.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        entries => entries
            .expect("storage directory")
            .collect::<Result<_, _>>()
            .expect("storage entries"),
    };
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let content = std::fs::read(entry.path()).expect("stored package");
        let sum: String = Sha256::digest(&content)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(name, sum, "invariant violated: a stored package is intact");
        stored.insert(name);
    }
    assert_eq!(
        stored, counted,
        "invariant violated: the storage holds exactly the packages of AVAILABLE apps"
    );
    stored.len()
}

/// A refund that completed: the payment refunded by exactly one provider refund, the order refunded,
/// the device released.
pub async fn completed_refund(db: &PgPool, saga: &Saga) {
    let payment = state_uuid(saga, "paymentId");
    let (payment_status, refunds, order_status, devices): (String, i64, String, String) =
        sqlx::query_as(
            "SELECT p.status,
                    (SELECT count(*) FROM payment.provider_refunds r WHERE r.payment_id = p.id),
                    o.status,
                    coalesce((SELECT string_agg(d.status, ',') FROM device.devices d
                              WHERE d.order_id = o.id), '')
             FROM payment.payments p JOIN billing.orders o ON o.id = p.order_id
             WHERE p.id = $1",
        )
        .bind(payment)
        .fetch_one(db)
        .await
        .expect("refund rows");
    assert_eq!(
        (
            payment_status.as_str(),
            refunds,
            order_status.as_str(),
            devices.as_str()
        ),
        ("REFUNDED", 1, "REFUNDED", "RELEASED"),
        "{}",
        saga.saga_id
    );
}

/// The invariants over every row, once every saga is terminal. `initial_cents` is what the merchants
/// held before any withdrawal.
pub async fn global(db: &PgPool, initial_cents: i64) {
    let held: i64 = sqlx::query_scalar(
        "SELECT ((SELECT sum(available_cents + frozen_cents) FROM withdrawal.merchants)
               + (SELECT coalesce(sum(amount_cents), 0) FROM withdrawal.bank_transfers
                  WHERE status = 'SENT'))::bigint",
    )
    .fetch_one(db)
    .await
    .expect("balances");
    assert_eq!(
        held, initial_cents,
        "invariant violated: money is conserved across merchant balances and bank transfers"
    );

    // Each query counts violations.
    let checks: [(&str, &str); 21] = [
        (
            "no frozen amount remains",
            "SELECT coalesce(sum(frozen_cents), 0) FROM withdrawal.merchants",
        ),
        (
            "no withdrawal is left between its steps",
            "SELECT count(*) FROM withdrawal.withdrawals
             WHERE status NOT IN ('COMPLETED', 'CANCELLED')",
        ),
        (
            "no transfer happened twice, and only completed withdrawals keep one",
            "SELECT count(*) FROM withdrawal.withdrawals w
             WHERE (SELECT count(*) FROM withdrawal.bank_transfers t WHERE t.withdrawal_id = w.id) > 1
                OR (SELECT count(*) FROM withdrawal.bank_transfers t
                    WHERE t.withdrawal_id = w.id AND t.status = 'SENT')
                   <> (w.status = 'COMPLETED')::int",
        ),
        (
            "money is conserved across payments and provider refunds",
            "SELECT (SELECT coalesce(sum(amount_cents), 0) FROM payment.payments)
                  - (SELECT coalesce(sum(amount_cents), 0) FROM payment.provider_refunds)
                  - (SELECT coalesce(sum(amount_cents), 0) FROM payment.payments WHERE status = 'SUCCESS')
                 ",
        ),
        (
            "no refund happened twice, and every refunded payment has its one refund of the full amount",
            "SELECT count(*) FROM payment.payments p
             LEFT JOIN payment.provider_refunds r ON r.payment_id = p.id
             WHERE (p.status = 'REFUNDED') <> (r.id IS NOT NULL)
                OR r.amount_cents <> p.amount_cents",
        ),
        (
            "no payment is left refunding",
            "SELECT count(*) FROM payment.payments WHERE status = 'REFUNDING'",
        ),
        (
            "every active order has exactly one successful payment of its amount",
            "SELECT count(*) FROM billing.orders o
             WHERE o.status = 'ACTIVE'
               AND (SELECT count(*) FROM payment.payments p
                    WHERE p.order_id = o.id AND p.status = 'SUCCESS' AND p.amount_cents = o.amount_cents) <> 1",
        ),
        (
            "money kept equals the value of active orders",
            "SELECT (SELECT coalesce(sum(amount_cents), 0) FROM payment.payments WHERE status = 'SUCCESS')
                  - (SELECT coalesce(sum(amount_cents), 0) FROM billing.orders WHERE status = 'ACTIVE')
                 ",
        ),
        (
            "every refunded payment's order is refunded (or cancelled, when the purchase itself was undone), \
             and every refunded order's payment is refunded",
            "SELECT count(*) FROM payment.payments p JOIN billing.orders o ON o.id = p.order_id
             WHERE (p.status = 'REFUNDED' AND o.status NOT IN ('REFUNDED', 'CANCELLED'))
                OR (o.status IN ('REFUNDED', 'CANCELLED') AND p.status <> 'REFUNDED')",
        ),
        (
            "no device is allocated to an order that is not active, and every active order has one",
            "SELECT (SELECT count(*) FROM device.devices d LEFT JOIN billing.orders o ON o.id = d.order_id
                     WHERE d.status = 'ALLOCATED' AND o.status IS DISTINCT FROM 'ACTIVE')
                  + (SELECT count(*) FROM billing.orders o WHERE o.status = 'ACTIVE'
                     AND (SELECT count(*) FROM device.devices d
                          WHERE d.order_id = o.id AND d.status = 'ALLOCATED') <> 1)
                 ",
        ),
        (
            "quotas count exactly the ready devices, each in a running container, and nothing else runs",
            "SELECT (SELECT count(*) FROM device.quotas q WHERE q.used_devices <>
                       (SELECT count(*) FROM device.devices d WHERE d.user_id = q.user_id AND d.status = 'READY'))
                  + (SELECT count(*) FROM device.containers c WHERE (c.status = 'RUNNING') <>
                       EXISTS (SELECT 1 FROM device.devices d
                               WHERE d.container_id = c.id AND d.status = 'READY'))
                 ",
        ),
        (
            "every paid gateway order has exactly one paid channel payment of its amount, \
             and no other order keeps a channel payment or is left between its steps",
            "SELECT count(*) FROM gateway.orders o
             WHERE o.status = 'CREATED'
                OR (SELECT count(*) FROM gateway.channel_payments p
                    WHERE p.order_id = o.id AND p.status <> 'CANCELLED'
                      AND (p.status <> 'PAID' OR p.amount_cents <> o.amount_cents))
                   <> 0
                OR (SELECT count(*) FROM gateway.channel_payments p
                    WHERE p.order_id = o.id AND p.status = 'PAID') <> (o.status = 'PAID')::int",
        ),
        (
            "an app is AVAILABLE exactly when it has one stored package, and none is left uploading",
            "SELECT count(*) FROM app.apps a
             WHERE a.status = 'UPLOADING'
                OR (SELECT count(*) FROM app.objects b WHERE b.app_id = a.id AND b.status = 'STORED')
                   <> (a.status = 'AVAILABLE')::int",
        ),
        (
            "each stored content's reference count is the number of stored packages with it",
            "SELECT count(*) FROM app.blobs b
             WHERE b.refs <> (SELECT count(*) FROM app.objects o
                              WHERE o.sha256 = b.sha256 AND o.status = 'STORED')",
        ),
        (
            "reserved + available = stock, reserved being the HELD reservations",
            "SELECT count(*) FROM inventory.products p
             WHERE p.stock <> p.available + (SELECT coalesce(sum(r.quantity), 0) FROM inventory.reservations r
                                             WHERE r.sku = p.sku AND r.status = 'HELD')",
        ),
        (
            "no reservation is held by a cancelled order, and every held one by a paid order",
            "SELECT count(*) FROM inventory.reservations r
             WHERE r.status = 'HELD'
               AND NOT EXISTS (SELECT 1 FROM sales.orders o
                               WHERE o.reservation_id = r.id AND o.status = 'PAID')",
        ),
        (
            "every open order holds its reservation",
            "SELECT count(*) FROM sales.orders o
             WHERE o.status = 'PAID'
               AND NOT EXISTS (SELECT 1 FROM inventory.reservations r
                               WHERE r.id = o.reservation_id AND r.status = 'HELD')",
        ),
        (
            "every open order has exactly one captured payment of its amount, and a cancelled one none",
            "SELECT count(*) FROM sales.orders o
             WHERE (SELECT count(*) FROM sales.payments p
                    WHERE p.order_id = o.id AND p.status = 'CAPTURED' AND p.amount_cents = o.amount_cents)
                   <> (o.status = 'PAID')::int
                OR (SELECT count(*) FROM sales.payments p
                    WHERE p.order_id = o.id AND p.status = 'CAPTURED') > (o.status = 'PAID')::int
                OR o.status = 'PENDING_PAYMENT'",
        ),
        (
            "a customer's used credit equals their USED credit and the sum of their open orders",
            "SELECT count(*) FROM customer.customers c
             WHERE c.used_credit_cents <> (SELECT coalesce(sum(u.amount_cents), 0)
                                          FROM customer.credit_usages u
                                          WHERE u.customer_id = c.id AND u.status = 'USED')
                OR c.used_credit_cents <> (SELECT coalesce(sum(o.amount_cents), 0) FROM sales.orders o
                                          WHERE o.customer_id = c.id AND o.status = 'PAID')",
        ),
        (
            "no notification for an order that did not complete or an app that is not available",
            "SELECT count(*) FROM notification.outbox n
             WHERE (n.topic = 'ORDER_CREATED' AND NOT EXISTS (
                        SELECT 1 FROM sales.orders o WHERE o.id = n.subject_id AND o.status = 'PAID'))
                OR (n.topic = 'APP_AVAILABLE' AND NOT EXISTS (
                        SELECT 1 FROM app.apps a WHERE a.id = n.subject_id AND a.status = 'AVAILABLE'))",
        ),
        (
            "every completed order and published app was notified exactly once",
            "SELECT (SELECT count(*) FROM sales.orders o WHERE o.status = 'PAID'
                       AND (SELECT count(*) FROM notification.outbox n WHERE n.subject_id = o.id) <> 1)
                  + (SELECT count(*) FROM app.apps a WHERE a.status = 'AVAILABLE'
                       AND (SELECT count(*) FROM notification.outbox n WHERE n.subject_id = a.id) <> 1)
                 ",
        ),
    ];
    for (invariant, sql) in checks {
        let violations: i64 = sqlx::query_scalar(&format!("SELECT ({sql})::bigint"))
            .fetch_one(db)
            .await
            .unwrap_or_else(|e| panic!("{invariant}: {e}"));
        assert_eq!(violations, 0, "invariant violated: {invariant}");
    }
}
