//! `sagactl list [--status S]... [--type T] [--since D] [--limit N | --all]`.

use std::time::SystemTime;

use chrono::Utc;
use saga_proto::v1::{ListSagasRequest, ListSagasResponse, SagaStatus};

use crate::cli::{ListArgs, Output};
use crate::connect::Client;
use crate::exit::{Failure, Outcome};
use crate::json;
use crate::render::{age, reason, saga_status, table};

/// The largest page sagad serves.
const MAX_PAGE: u32 = 1000;

/// Reads pages until `--limit` sagas (or, with `--all`, every one) are in, and prints them.
pub async fn list(client: &mut Client, args: ListArgs, output: Output) -> Result<Outcome, Failure> {
    let created_after = match args.since {
        Some(since) => Some(
            SystemTime::now()
                .checked_sub(since)
                .ok_or_else(|| Failure::Usage("--since reaches before 1970".to_owned()))?
                .into(),
        ),
        None => None,
    };
    let mut request = ListSagasRequest {
        statuses: args
            .status
            .into_iter()
            .map(|s| SagaStatus::from(s).into())
            .collect(),
        saga_type: args.saga_type.unwrap_or_default(),
        created_after,
        ..ListSagasRequest::default()
    };
    let mut listed = ListSagasResponse::default();
    loop {
        let wanted = if args.all {
            MAX_PAGE
        } else {
            let have = u32::try_from(listed.sagas.len()).unwrap_or(u32::MAX);
            args.limit.saturating_sub(have).min(MAX_PAGE)
        };
        request.page_size = wanted;
        let page = client.list_sagas(request.clone()).await?.into_inner();
        listed.sagas.extend(page.sagas);
        listed.next_page_token = page.next_page_token;
        let limit_reached = !args.all && listed.sagas.len() >= args.limit as usize;
        if listed.next_page_token.is_empty() || limit_reached {
            break;
        }
        request.page_token = listed.next_page_token.clone();
    }

    if json::printed(output, &listed)? {
        return Ok(Outcome::Done);
    }
    let now = Utc::now();
    let mut rows = table(["ID", "TYPE", "STATUS", "REASON", "STEP", "AGE"]);
    for saga in &listed.sagas {
        rows.add_row([
            saga.saga_id.as_str(),
            &saga.saga_type,
            saga_status(saga.status()),
            reason(saga.failure_reason()),
            &saga.current_step,
            &age(saga.created_at.as_ref(), now),
        ]);
    }
    if listed.sagas.is_empty() {
        eprintln!("no sagas match");
    } else {
        println!("{}", rows.trim_fmt());
    }
    if !listed.next_page_token.is_empty() {
        eprintln!(
            "more sagas match: showing the newest {}; raise --limit or use --all",
            listed.sagas.len()
        );
    }
    Ok(Outcome::Done)
}
