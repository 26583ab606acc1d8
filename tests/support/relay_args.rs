//! The command line of `bp-relay`, built flag by flag instead of written out as an array: the
//! integration tests and the fault matrix start the binary with it, the property tests and the
//! benches parse it into a [`Config`]. Included with `#[path]` by each of them.
//!
//! Tests of the parser's own spelling of a flag (a bad flag, the order of a subcommand) keep
//! their literal arguments.

// Each including crate uses what it needs.
#![allow(dead_code)]

use bp_relay::Config;
use clap::Parser;

/// The binary's name, the first argument the parser sees.
const NAME: &str = "bp-relay";

/// The arguments of one `bp-relay` run, in order, without the binary's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayArgs(Vec<String>);

impl RelayArgs {
    /// No arguments yet.
    pub fn new() -> RelayArgs {
        RelayArgs::default()
    }

    /// `--kafka-brokers`.
    pub fn brokers(self, bootstrap: &str) -> RelayArgs {
        self.flag("--kafka-brokers", bootstrap)
    }

    /// `--topic`, `--actions-topic` and `--dead-letter-topic`.
    pub fn topics(self, processes: &str, actions: &str, dead_letter: &str) -> RelayArgs {
        self.flag("--topic", processes)
            .flag("--actions-topic", actions)
            .flag("--dead-letter-topic", dead_letter)
    }

    /// `--signing-secrets`, comma-separated.
    pub fn signing_secrets(self, secrets: &[&str]) -> RelayArgs {
        self.flag("--signing-secrets", &secrets.join(","))
    }

    /// Both listeners on free loopback ports: the relay logs the addresses it got.
    pub fn on_free_ports(self) -> RelayArgs {
        self.flag("--listen", "127.0.0.1:0")
            .flag("--admin-listen", "127.0.0.1:0")
    }

    /// A flag with its value.
    pub fn flag(mut self, name: &str, value: &str) -> RelayArgs {
        self.0.extend([name.to_owned(), value.to_owned()]);
        self
    }

    /// A flag without a value (`--embedded-kafka`).
    pub fn switch(mut self, name: &str) -> RelayArgs {
        self.0.push(name.to_owned());
        self
    }

    /// Arguments as they come, already split (a test's extra flags, an environment variable's).
    pub fn args<I>(mut self, args: I) -> RelayArgs
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.0.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs `subcommand` (`check-config`, `sign`) with these arguments: it comes first, whenever
    /// it is added.
    pub fn subcommand(mut self, subcommand: &str) -> RelayArgs {
        self.0.insert(0, subcommand.to_owned());
        self
    }

    /// The value of the last `flag` given (`--flag value` or `--flag=value`): the one the parser
    /// takes.
    pub fn value_of(&self, flag: &str) -> Option<&str> {
        self.0.iter().enumerate().rev().find_map(|(index, arg)| {
            if arg == flag {
                self.0.get(index + 1).map(String::as_str)
            } else {
                arg.strip_prefix(flag)?.strip_prefix('=')
            }
        })
    }

    /// The relay's configuration from these arguments, as the binary parses it (not validated).
    pub fn parse(&self) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once(NAME).chain(self.0.iter().map(String::as_str)))
    }
}

impl IntoIterator for RelayArgs {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a RelayArgs {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    // `super::` spelled out: a bench (no test harness) compiles this module without its
    // `#[test]` functions, where a `use` would be unused.
    #[test]
    fn the_last_value_of_a_flag_counts_in_either_spelling() {
        let args = super::RelayArgs::new().flag("--ack-timeout", "4s").args([
            "--ack-timeout=3s",
            "--ack-timeout-extra",
            "1s",
        ]);
        assert_eq!(args.value_of("--ack-timeout"), Some("3s"));
        assert_eq!(
            args.flag("--ack-timeout", "2s").value_of("--ack-timeout"),
            Some("2s")
        );
        assert_eq!(super::RelayArgs::new().value_of("--ack-timeout"), None);
    }

    #[test]
    fn a_subcommand_comes_first_and_the_parser_reads_the_flags() {
        let args = super::RelayArgs::new()
            .brokers("k:9092")
            .signing_secrets(&["a", "b"])
            .subcommand("check-config");
        let spelled: Vec<String> = args.into_iter().collect();
        assert_eq!(
            spelled,
            [
                "check-config",
                "--kafka-brokers",
                "k:9092",
                "--signing-secrets",
                "a,b"
            ]
        );
        let relay = super::RelayArgs::new().brokers("k:9092");
        assert!(relay.clone().flag("--ack-timeout", "3s").parse().is_ok());
        assert!(relay.flag("--ack-timeout", "banana").parse().is_err());
    }
}
