//! `ListSagas` page tokens: the last saga id of a page, bound to the filters it was listed with, with a
//! checksum so that a token that was edited, truncated or pasted into another query is refused with a
//! clear message instead of silently listing the wrong sagas.
//!
//! Layout before base64url: version byte, 16-byte saga id, 8-byte digest of the filters, 8-byte checksum
//! of everything before it. The checksum is integrity, not secrecy: a token only moves a cursor through
//! sagas the caller may list anyway.

use crate::status::bad_request;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use saga_core::{ListFilter, SagaId};
use sha2::{Digest, Sha256};
use tonic::Status;
use uuid::Uuid;

const VERSION: u8 = 1;
const LEN: usize = 1 + 16 + 8 + 8;

/// The token for the page after `last`, listed with `filter`.
pub(crate) fn encode(last: SagaId, filter: &ListFilter) -> String {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(last.0.as_bytes());
    bytes.extend_from_slice(&filter_digest(filter));
    let checksum = digest8(&bytes);
    bytes.extend_from_slice(&checksum);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The saga id a token continues after, if it is intact and was issued for `filter`.
pub(crate) fn decode(token: &str, filter: &ListFilter) -> Result<SagaId, Status> {
    let not_ours = || {
        bad_request(
            "page_token is not a token this server issued (was it edited or truncated?); \
             pass next_page_token unchanged, or omit it to start from the first page",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| not_ours())?;
    if bytes.len() != LEN || bytes[0] != VERSION {
        return Err(not_ours());
    }
    let (body, checksum) = bytes.split_at(LEN - 8);
    if digest8(body) != checksum {
        return Err(not_ours());
    }
    if body[17..] != filter_digest(filter) {
        return Err(bad_request(
            "page_token was issued for different filters; repeat the first page's statuses, \
             saga_type, time range and label, or omit page_token to start over",
        ));
    }
    let id = Uuid::from_slice(&body[1..17]).map_err(|_| not_ours())?;
    Ok(SagaId(id))
}

fn filter_digest(filter: &ListFilter) -> [u8; 8] {
    let mut statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let mut canonical = format!(
        "{}|{}|{:?}|{:?}",
        statuses.join(","),
        filter.saga_type.as_deref().unwrap_or_default(),
        filter.created_after.map(|t| t.timestamp_micros()),
        filter.created_before.map(|t| t.timestamp_micros()),
    );
    // Only when set, so that tokens issued before label filters existed stay valid. Debug quoting keeps
    // key and value apart whatever they hold.
    if let Some(label) = &filter.label {
        canonical.push_str(&format!("|{:?}={:?}", label.key, label.value));
    }
    digest8(canonical.as_bytes())
}

fn digest8(bytes: &[u8]) -> [u8; 8] {
    let hash = Sha256::digest(bytes);
    let mut out = [0; 8];
    out.copy_from_slice(&hash[..8]);
    out
}

#[cfg(test)]
mod tests {
    use saga_core::SagaStatus;
    use tonic::Code;

    use super::*;

    fn failed_only() -> ListFilter {
        ListFilter {
            statuses: vec![SagaStatus::Failed],
            ..ListFilter::default()
        }
    }

    #[test]
    fn a_token_round_trips_with_the_same_filters() {
        let id = SagaId::new();
        let token = encode(id, &failed_only());
        assert_eq!(decode(&token, &failed_only()).expect("valid"), id);
    }

    #[test]
    fn every_edited_character_is_detected() {
        let token = encode(SagaId::new(), &failed_only());
        for i in 0..token.len() {
            let mut edited = token.clone().into_bytes();
            edited[i] = if edited[i] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(edited).expect("ascii");
            let err = decode(&edited, &failed_only()).expect_err("edited token refused");
            assert_eq!(err.code(), Code::InvalidArgument);
        }
        for bad in ["", "not base64!", &token[..token.len() - 2]] {
            let err = decode(bad, &failed_only()).expect_err("refused");
            assert!(
                err.message().contains("not a token this server issued"),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn a_token_is_bound_to_its_label_filter() {
        let label = |key: &str, value: &str| ListFilter {
            label: Some(saga_core::Label {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
            ..failed_only()
        };
        let id = SagaId::new();
        let token = encode(id, &label("orderId", "123"));
        assert_eq!(decode(&token, &label("orderId", "123")).expect("same"), id);
        for other in [
            label("orderId", "124"),
            label("orderid", "123"),
            // Key and value cannot be shifted into each other.
            label("orderId=1", "23"),
            failed_only(),
        ] {
            let err = decode(&token, &other).expect_err("another label");
            assert!(err.message().contains("different filters"), "{other:?}");
        }
    }

    #[test]
    fn a_token_issued_before_label_filters_existed_stays_valid() {
        // Issued by the previous version for the FAILED sagas after this id.
        let old = "AQGTpfJ8Hn0wmxovTG6KCxy13lh9GAOMJoomQCsjsiLJ";
        let id: SagaId = "0193a5f2-7c1e-7d30-9b1a-2f4c6e8a0b1c"
            .parse()
            .expect("uuid");
        assert_eq!(decode(old, &failed_only()).expect("still valid"), id);
        assert_eq!(encode(id, &failed_only()), old);
    }

    #[test]
    fn a_token_from_other_filters_is_refused() {
        let token = encode(SagaId::new(), &failed_only());
        let err = decode(&token, &ListFilter::default()).expect_err("different filters");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("different filters"),
            "{}",
            err.message()
        );
    }

    mod fuzz {
        //! Fuzzed page tokens: arbitrary bytes, as sent or base64url-encoded, are refused with
        //! `INVALID_ARGUMENT` and never taken for a cursor. CI runs proptest's default number of cases;
        //! `PROPTEST_CASES=20000` runs longer.

        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn arbitrary_tokens_are_invalid_argument(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
                let as_text = String::from_utf8_lossy(&bytes).into_owned();
                for token in [as_text, URL_SAFE_NO_PAD.encode(&bytes)] {
                    let refused = decode(&token, &failed_only()).expect_err("not issued here");
                    prop_assert_eq!(refused.code(), Code::InvalidArgument);
                }
            }

            #[test]
            fn a_token_with_any_byte_changed_is_refused(at in 0..LEN, flip in 1u8..=255) {
                let token = encode(SagaId::new(), &failed_only());
                let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("ours");
                bytes[at] ^= flip;
                let refused = decode(&URL_SAFE_NO_PAD.encode(&bytes), &failed_only());
                prop_assert_eq!(refused.expect_err("edited").code(), Code::InvalidArgument);
            }
        }
    }
}
