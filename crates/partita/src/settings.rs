//! Turning the config file, the environment and `--set` flags into a [`BrokerConfig`].

use std::path::Path;

use anyhow::Context;
use partita_broker::{BrokerConfig, SetOutcome};

/// Every property from all sources, applied in order, later ones winning. Unknown names get
/// a warning, as Kafka gives, and do not stop the broker; bad values do.
pub(crate) fn build(properties: Vec<(String, String)>) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    let mut advertised_set = false;
    for (name, value) in properties {
        advertised_set |= matches!(name.as_str(), "advertised.listeners" | "advertised");
        match config.set(&name, &value)? {
            SetOutcome::Applied => {}
            SetOutcome::Ignored => {
                tracing::info!(property = %name, "property has no effect on a single broker")
            }
            SetOutcome::Unknown => tracing::warn!(
                property = %name,
                "The configuration '{name}' was supplied but isn't a known config."
            ),
        }
    }
    if !advertised_set && !config.listen.ip().is_unspecified() {
        config.advertised_host = config.listen.ip().to_string();
        config.advertised_port = config.listen.port();
    }
    Ok(config)
}

/// Reads a TOML file of properties. Kafka's dotted names may be written quoted
/// (`"log.segment.bytes" = 1048576`) or bare, which TOML turns into nested tables; both
/// come back as dotted names.
pub(crate) fn from_toml_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut properties = Vec::new();
    flatten("", &toml::Value::Table(table), &mut properties);
    Ok(properties)
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(items) => {
            let joined: Vec<String> = items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), joined.join(",")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// `PARTITA_LOG_SEGMENT_BYTES=1048576` sets `log.segment.bytes`. Only names the broker knows
/// are taken, so unrelated `PARTITA_*` variables are left alone.
pub(crate) fn from_environment(
    vars: impl Iterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    vars.filter_map(|(key, value)| {
        let name = key
            .strip_prefix("PARTITA_")?
            .to_lowercase()
            .replace('_', ".");
        let mut probe = BrokerConfig::default();
        matches!(probe.set(&name, &value), Ok(SetOutcome::Applied)).then_some((name, value))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_dotted_and_quoted_names_both_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partita.toml");
        std::fs::write(
            &path,
            "\"num.partitions\" = 4\nlog.segment.bytes = 2048\nlisteners = \"127.0.0.1:19092\"\n",
        )
        .unwrap();
        let config = build(from_toml_file(&path).unwrap()).unwrap();
        assert_eq!(config.num_partitions, 4);
        assert_eq!(config.log.segment_bytes, 2048);
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.advertised_port, 19092);
    }

    #[test]
    fn environment_variables_map_to_property_names() {
        let vars = vec![
            ("PARTITA_NUM_PARTITIONS".to_string(), "6".to_string()),
            ("PARTITA_BIN".to_string(), "/x".to_string()),
        ];
        let properties = from_environment(vars.into_iter());
        assert_eq!(
            properties,
            vec![("num.partitions".to_string(), "6".to_string())]
        );
    }

    #[test]
    fn unknown_properties_do_not_stop_the_broker_but_bad_values_do() {
        assert!(build(vec![("made.up".into(), "1".into())]).is_ok());
        assert!(build(vec![("num.partitions".into(), "x".into())]).is_err());
    }
}
