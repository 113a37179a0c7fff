//! `GetStats` at the edge: the request's window, thresholds and limit, defaulted and bounded before
//! anything reaches the store (a window's cost grows with the sagas finished in it).

use std::time::Duration;

use saga_core::StatsQuery;
use saga_proto::v1::GetStatsRequest;
use tonic::Status;

use crate::api::validate_saga_type;
use crate::status::bad_request;

/// The window when the request sets none.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// The longest window, and the longest threshold.
const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// How long an active saga runs before it counts as stuck, when the request does not say.
const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(600);

/// How long an active saga stays claimable and unclaimed before it counts as stuck, when the request
/// does not say. The recovery loop claims a due saga within seconds while any instance lives.
const DEFAULT_UNCLAIMED_AFTER: Duration = Duration::from_secs(60);

/// Failure reasons and stuck sagas listed when the request leaves `limit` 0, and the most accepted.
const DEFAULT_LIMIT: u32 = 10;
const MAX_LIMIT: u32 = 100;

/// The request as a query, or `INVALID_ARGUMENT` naming the field at fault.
pub(crate) fn query(request: &GetStatsRequest) -> Result<StatsQuery, Status> {
    if !request.saga_type.is_empty() {
        validate_saga_type(&request.saga_type)?;
    }
    let limit = match request.limit {
        0 => DEFAULT_LIMIT,
        n if n > MAX_LIMIT => {
            return Err(bad_request(format!(
                "limit {n} is over the limit of {MAX_LIMIT}"
            )));
        }
        n => n,
    };
    Ok(StatsQuery {
        window: duration("window", request.window.as_ref(), DEFAULT_WINDOW)?,
        saga_type: Some(request.saga_type.clone()).filter(|t| !t.is_empty()),
        stuck_after: duration(
            "stuck_after",
            request.stuck_after.as_ref(),
            DEFAULT_STUCK_AFTER,
        )?,
        unclaimed_after: duration(
            "unclaimed_after",
            request.unclaimed_after.as_ref(),
            DEFAULT_UNCLAIMED_AFTER,
        )?,
        limit,
    })
}

/// `given`, or `default` when unset: positive and at most [`MAX_WINDOW`].
fn duration(
    field: &str,
    given: Option<&prost_types::Duration>,
    default: Duration,
) -> Result<Duration, Status> {
    let Some(given) = given else {
        return Ok(default);
    };
    let positive = Duration::try_from(*given)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            bad_request(format!(
                "{field} {}s {}ns is not a positive duration",
                given.seconds, given.nanos
            ))
        })?;
    if positive > MAX_WINDOW {
        return Err(bad_request(format!(
            "{field} {positive:?} is over the limit of {MAX_WINDOW:?} (30 days)"
        )));
    }
    Ok(positive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(seconds: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos: 0 })
    }

    #[test]
    fn an_empty_request_asks_for_the_last_hour_of_every_type() {
        let query = query(&GetStatsRequest::default()).expect("valid");
        assert_eq!(
            query,
            StatsQuery {
                window: Duration::from_secs(3600),
                saga_type: None,
                stuck_after: Duration::from_secs(600),
                unclaimed_after: Duration::from_secs(60),
                limit: 10,
            }
        );
    }

    #[test]
    fn given_values_are_kept_within_their_bounds() {
        let request = GetStatsRequest {
            window: seconds(86_400),
            saga_type: "withdrawal".to_owned(),
            stuck_after: seconds(120),
            unclaimed_after: seconds(5),
            limit: 100,
        };
        let query = query(&request).expect("valid");
        assert_eq!(query.window, Duration::from_secs(86_400));
        assert_eq!(query.saga_type.as_deref(), Some("withdrawal"));
        assert_eq!(
            (query.stuck_after, query.unclaimed_after, query.limit),
            (Duration::from_secs(120), Duration::from_secs(5), 100)
        );
    }

    #[test]
    fn a_window_that_is_not_positive_or_too_long_or_a_limit_too_high_is_refused() {
        let refused = |request: GetStatsRequest, words: &str| {
            let status = query(&request).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains(words), "{status:?}");
        };
        refused(
            GetStatsRequest {
                window: seconds(0),
                ..GetStatsRequest::default()
            },
            "window 0s 0ns is not a positive duration",
        );
        refused(
            GetStatsRequest {
                stuck_after: seconds(-5),
                ..GetStatsRequest::default()
            },
            "stuck_after -5s",
        );
        refused(
            GetStatsRequest {
                window: seconds(31 * 86_400),
                ..GetStatsRequest::default()
            },
            "window 2678400s is over the limit of 2592000s (30 days)",
        );
        refused(
            GetStatsRequest {
                limit: 101,
                ..GetStatsRequest::default()
            },
            "limit 101 is over the limit of 100",
        );
        refused(
            GetStatsRequest {
                saga_type: "a\0b".to_owned(),
                ..GetStatsRequest::default()
            },
            "saga_type",
        );
    }
}
