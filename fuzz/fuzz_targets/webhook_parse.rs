//! `Webhook::parse` on any body, as either kind, under two sets of rules: the defaults, and
//! pointers that reach into nested objects and arrays through escaped names.
//!
//! The corpus (`fuzz/corpus/webhook_parse/`) starts from docs/examples and tests/fixtures.
//!
//! Fails on: a panic; an accepted key that is blank, or that is not what serde_json finds at
//! the key pointer; an accepted version that is not serde_json's number at the version
//! pointer; `not_json` for a body serde_json reads.
#![no_main]

use std::sync::OnceLock;

use bp_relay::{
    config::Rules,
    ingress::webhook::{EventKind, RejectReason, Webhook},
    Config,
};
use clap::Parser;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    // serde_json refuses some documents the relay takes (numbers beyond f64); those are only
    // checked for panics.
    let tree = serde_json::from_slice::<Value>(body).ok();
    for rules in rule_sets() {
        for kind in EventKind::ALL {
            check(kind, body, rules, tree.as_ref());
        }
    }
});

fn check(kind: EventKind, body: &[u8], rules: &Rules, tree: Option<&Value>) {
    match Webhook::parse(kind, body, rules) {
        Ok(webhook) => {
            assert!(!webhook.key.trim().is_empty(), "a blank key was accepted");
            let Some(tree) = tree else { return };
            let key_pointer = match kind {
                EventKind::BusinessProcess => &rules.key_pointer,
                EventKind::Action => &rules.actions_key_pointer,
            };
            assert_eq!(
                tree.pointer(key_pointer.as_str()).and_then(Value::as_str),
                Some(webhook.key.as_str())
            );
            let version = match (kind, tree.pointer(rules.version_pointer.as_str())) {
                (EventKind::BusinessProcess, Some(Value::Number(number))) => {
                    Some(number.to_string())
                }
                _ => None,
            };
            assert_eq!(webhook.version, version);
        }
        Err(rejection) if rejection.reason == RejectReason::NotJson => {
            assert!(
                tree.is_none(),
                "not_json for a body serde_json reads: {}",
                rejection.detail
            );
        }
        Err(_) => {}
    }
}

fn rule_sets() -> &'static [Rules; 2] {
    static RULES: OnceLock<[Rules; 2]> = OnceLock::new();
    RULES.get_or_init(|| {
        let nested = [
            "--key-pointer",
            "/data/0/i~1d",
            "--actions-key-pointer",
            "/a~0b/1/id",
            "--version-pointer",
            "/meta/version",
        ];
        [rules(&[]), rules(&nested)]
    })
}

fn rules(extra: &[&str]) -> Rules {
    let args = [
        "bp-relay",
        "--kafka-brokers",
        "unused:9092",
        "--signing-secrets",
        "unused",
    ]
    .iter()
    .chain(extra);
    Config::try_parse_from(args)
        .expect("the fuzz target's flags parse")
        .rules
}
