//! How deliveries are read: where the record key is and which fields a delivery must have
//! (configurable because Authvia has not confirmed most field names).

use std::str::FromStr;

/// A JSON pointer (RFC 6901), checked to be non-empty and to start with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    /// The pointer text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Pointer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('/') && s.len() > 1 {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a JSON pointer to a field (expected e.g. /id)"
            ))
        }
    }
}

/// Where to find the key and which fields are required, per kind (configurable because
/// Authvia has not confirmed most field names).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Routes")]
pub struct Rules {
    /// JSON pointer to the process id in a business process (the record key).
    #[arg(long, env = "BP_RELAY_KEY_POINTER", default_value = "/id")]
    pub key_pointer: Pointer,

    /// JSON pointer to the owning process id in an action (the record key).
    #[arg(
        long,
        env = "BP_RELAY_ACTIONS_KEY_POINTER",
        default_value = "/businessProcess"
    )]
    pub actions_key_pointer: Pointer,

    /// JSON pointer to the process version, copied to the `ce_processversion` header.
    #[arg(long, env = "BP_RELAY_VERSION_POINTER", default_value = "/version")]
    pub version_pointer: Pointer,

    /// Top-level fields a business process must have (names Authvia has not confirmed).
    #[arg(
        long,
        env = "BP_RELAY_REQUIRED_FIELDS",
        value_delimiter = ',',
        default_value = "id,partner,merchant,customer,status,expiration,actions,addresses"
    )]
    pub required_fields: Vec<String>,

    /// Top-level fields an action must have.
    #[arg(
        long,
        env = "BP_RELAY_ACTIONS_REQUIRED_FIELDS",
        value_delimiter = ',',
        default_value = "id,type,status"
    )]
    pub actions_required_fields: Vec<String>,
}
