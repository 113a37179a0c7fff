//! Labels at the edge: a saga's business keys (`orderId` → `123`) as `StartSaga` gives them and as
//! `ListSagas` filters by one, bounded in count and size and checked before anything reaches the store.

use std::collections::HashMap;

use saga_core::{Label, Labels};
use saga_proto::v1 as pb;
use tonic::Status;

use crate::status::bad_request;
use crate::text::{clip, refuse_nul};

/// Most labels one saga carries.
const MAX_LABELS: usize = 16;

/// Longest label key, in characters (ASCII only).
const MAX_KEY_LEN: usize = 64;

/// Longest label value, in bytes.
const MAX_VALUE_LEN: usize = 256;

/// `StartSaga`'s labels, or `INVALID_ARGUMENT` naming the first that breaks a rule.
pub(crate) fn labels(given: HashMap<String, String>) -> Result<Labels, Status> {
    if given.len() > MAX_LABELS {
        return Err(bad_request(format!(
            "{} labels; the limit is {MAX_LABELS}",
            given.len()
        )));
    }
    // In key order, so that the same request always names the same offender.
    let labels: Labels = given.into_iter().collect();
    for (key, value) in &labels {
        check("labels", key, value)?;
    }
    Ok(labels)
}

/// `ListSagas`' label filter, or `None` when the request has none.
pub(crate) fn filter(label: Option<&pb::Label>) -> Result<Option<Label>, Status> {
    let Some(label) = label else {
        return Ok(None);
    };
    check("label", &label.key, &label.value)?;
    Ok(Some(Label {
        key: label.key.clone(),
        value: label.value.clone(),
    }))
}

fn check(field: &str, key: &str, value: &str) -> Result<(), Status> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !key_ok {
        return Err(bad_request(format!(
            "{field}: key {:?} must be 1-{MAX_KEY_LEN} characters of letters, digits, '_', '-', '.' \
             or '/'",
            clip(key)
        )));
    }
    if value.is_empty() {
        return Err(bad_request(format!("{field}: {key} needs a value")));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(bad_request(format!(
            "{field}: the value of {key} is {} bytes; the limit is {MAX_VALUE_LEN}",
            value.len()
        )));
    }
    refuse_nul(&format!("{field}.{key}"), value)
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn refused(pairs: &[(&str, &str)]) -> String {
        let given = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let status = labels(given).expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn business_keys_within_the_limits_pass() {
        let given = HashMap::from([
            ("orderId".to_owned(), "123".to_owned()),
            ("tenant/region".to_owned(), "eu-west.1".to_owned()),
            ("note".to_owned(), "ü".repeat(128)),
        ]);
        assert_eq!(labels(given).expect("valid").len(), 3);
        let sixteen = (0..16).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(labels(sixteen).is_ok());
    }

    #[test]
    fn each_rule_is_named_and_echoes_are_clipped() {
        let many: Vec<(String, String)> =
            (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(refused(&many), "17 labels; the limit is 16");
        assert!(refused(&[("", "1")]).contains("key \"\" must be 1-64 characters"));
        assert!(refused(&[("order id", "1")]).contains("key \"order id\""));
        let long_key = "k".repeat(200);
        let message = refused(&[(&long_key, "1")]);
        assert!(
            message.contains(&format!("{}…", "k".repeat(64))),
            "{message}"
        );
        assert!(!message.contains(&"k".repeat(65)), "{message}");
        assert_eq!(refused(&[("orderId", "")]), "labels: orderId needs a value");
        let long_value = "v".repeat(257);
        assert_eq!(
            refused(&[("orderId", &long_value)]),
            "labels: the value of orderId is 257 bytes; the limit is 256"
        );
        assert!(refused(&[("orderId", "1\u{0}2")]).contains("labels.orderId contains a NUL"));
    }

    #[test]
    fn a_filter_follows_the_same_rules() {
        let label = |key: &str, value: &str| pb::Label {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        assert_eq!(filter(None).expect("none"), None);
        let found = filter(Some(&label("orderId", "123"))).expect("valid");
        assert_eq!(
            found.map(|l| (l.key, l.value)),
            Some(("orderId".into(), "123".into()))
        );
        let status = filter(Some(&label("orderId", ""))).expect_err("empty value");
        assert_eq!(status.message(), "label: orderId needs a value");
    }
}
