//! Where deliveries go: the three topics and the CloudEvents `source` of every record.

/// The topics and the CloudEvents `source`: where each delivery is published.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Routes")]
pub struct Topics {
    /// Topic for business_processes.update deliveries.
    #[arg(
        long,
        env = "BP_RELAY_TOPIC",
        default_value = "authvia.business-processes"
    )]
    pub topic: String,

    /// Topic for business_processes_actions.update deliveries.
    #[arg(
        long,
        env = "BP_RELAY_ACTIONS_TOPIC",
        default_value = "authvia.business-process-actions"
    )]
    pub actions_topic: String,

    /// Topic for authenticated deliveries that are not a valid business process or action.
    #[arg(
        long,
        env = "BP_RELAY_DEAD_LETTER_TOPIC",
        default_value = "authvia.webhooks.dead-letter"
    )]
    pub dead_letter_topic: String,

    /// CloudEvents `source` attribute of every record.
    #[arg(
        long,
        env = "BP_RELAY_CE_SOURCE",
        default_value = "urn:authvia:webhooks"
    )]
    pub ce_source: String,
}

impl Topics {
    /// The three topics, in the order the relay checks them at startup.
    pub fn names(&self) -> [&str; 3] {
        [&self.topic, &self.actions_topic, &self.dead_letter_topic]
    }

    /// Checks the topic names: valid for Kafka, and the dead-letter topic apart.
    ///
    /// # Errors
    /// The first bad name, as one line naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, topic) in [
            ("--topic", &self.topic),
            ("--actions-topic", &self.actions_topic),
            ("--dead-letter-topic", &self.dead_letter_topic),
        ] {
            if topic.is_empty() || topic.len() > 249 || !topic.chars().all(is_topic_char) {
                return Err(format!(
                    "{flag} {topic:?} is not a valid Kafka topic name (letters, digits, '.', '_', '-', at most 249)"
                ));
            }
        }
        if self.dead_letter_topic == self.topic || self.dead_letter_topic == self.actions_topic {
            return Err(
                "--dead-letter-topic must differ from the business-process topics".to_owned(),
            );
        }
        Ok(())
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}
