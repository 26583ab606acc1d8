//! The sample deliveries of `docs/examples/`, built into the library: synthetic Authvia
//! payloads shaped after the upstream contract (`docs/authvia-webhooks.md`), no customer data.
//!
//! The one loader of sample payloads: `bp-relay sign` sends one when no file is given, and
//! tests and benches use them, so every one of them exercises the same bytes.

/// Business-process deliveries (`business_processes.update`), by file name.
pub const BUSINESS_PROCESSES: [(&str, &[u8]); 4] = [
    (
        "bp-minimal.json",
        include_bytes!("../../docs/examples/bp-minimal.json"),
    ),
    (
        "bp-in-progress.json",
        include_bytes!("../../docs/examples/bp-in-progress.json"),
    ),
    (
        "bp-failed-expired.json",
        include_bytes!("../../docs/examples/bp-failed-expired.json"),
    ),
    (
        "bp-resolved-uuid-v5.json",
        include_bytes!("../../docs/examples/bp-resolved-uuid-v5.json"),
    ),
];

/// Action deliveries (`business_processes_actions.update`), by file name.
pub const ACTIONS: [(&str, &[u8]); 1] = [(
    "action-update.json",
    include_bytes!("../../docs/examples/action-update.json"),
)];

/// The richest business process: the default body of `bp-relay sign` and of the benches.
pub const BUSINESS_PROCESS: &[u8] = BUSINESS_PROCESSES[1].1;

/// The action sample.
pub const ACTION: &[u8] = ACTIONS[0].1;

/// The sample called `name` (a file name in `docs/examples/`).
///
/// # Panics
/// No sample has that name: a mistake in the calling test or bench.
pub fn get(name: &str) -> &'static [u8] {
    BUSINESS_PROCESSES
        .iter()
        .chain(ACTIONS.iter())
        .find(|(file, _)| *file == name)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| panic!("no sample delivery named {name} in docs/examples"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_a_json_object_with_an_id() {
        for (name, body) in BUSINESS_PROCESSES.iter().chain(ACTIONS.iter()) {
            let json: serde_json::Value =
                serde_json::from_slice(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(json["id"].is_string(), "{name}");
        }
        assert_eq!(get("action-update.json"), ACTION);
    }
}
