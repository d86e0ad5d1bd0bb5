//! `gridwatch registry register`: registers Gridwatch's Avro contracts with
//! an external schema registry before the pipeline starts, as the Helm
//! chart's pre-install/pre-upgrade Job does.
//!
//! It runs the same start-up sequence as `gridwatch run` (the group's
//! compatibility rule, then find-or-create of every schema in
//! `gridwatch_contracts::schema::ALL`), so running it twice, or before a
//! `gridwatch run`, registers nothing new: the same content finds the same
//! version. An incompatible contract change fails with the registry's
//! verdict, naming the schema, the group and the rule.

use std::collections::HashSet;

use anyhow::Context;
use clap::{Args, Subcommand};
use gridwatch_contracts::schema;
use gridwatch_registry::{RegistryError, SchemaRegistry};

use crate::cli::ConfigArgs;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Register Gridwatch's Avro schemas (idempotent) and print their ids.
    Register(RegisterArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Registry root URL, or …/apis/registry/v3 (overrides `registry.url`).
    #[arg(long)]
    pub url: Option<url::Url>,
    /// Artifact group (overrides `registry.group`).
    #[arg(long)]
    pub group: Option<String>,
    /// Print the ids as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn dispatch(cmd: RegistryCommand) -> anyhow::Result<()> {
    match cmd {
        RegistryCommand::Register(args) => register(args).await,
    }
}

async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let mut registry = config.registry.clone();
    if let Some(url) = args.url {
        registry.url = Some(url);
    }
    if let Some(group) = args.group {
        registry.group = group;
    }
    let Some(url) = registry.url.clone() else {
        anyhow::bail!(
            "no registry to register with: set registry.url (or --url); without one, `gridwatch run` serves its embedded registry and registers the schemas itself at start-up"
        );
    };
    let client = SchemaRegistry::connect(&registry, None).context("configuration: registry")?;

    // What is there before, to tell new versions from found ones.
    let mut before: HashSet<u64> = HashSet::new();
    if let SchemaRegistry::Apicurio(c) = &client {
        for (artifact, _) in schema::ALL {
            match c.list_versions(&registry.group, artifact).await {
                Ok(versions) => before.extend(versions.iter().map(|v| v.global_id)),
                Err(RegistryError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "looking up schema '{artifact}' in group '{}' at {url}",
                            registry.group
                        )
                    });
                }
            }
        }
    }
    let ids = client
        .start_up(&registry)
        .await
        .map_err(|e| anyhow::anyhow!("registering Gridwatch's schemas with {url} failed: {e}"))?;

    let apicurio = matches!(client, SchemaRegistry::Apicurio(_));
    let mut new = 0usize;
    let rows: Vec<serde_json::Value> = ids
        .schemas
        .iter()
        .map(|s| {
            let created = apicurio && !before.contains(&s.global_id);
            new += usize::from(created);
            serde_json::json!({
                "artifact_id": s.artifact_id,
                "version": s.version,
                "global_id": s.global_id,
                "content_id": s.content_id,
                "status": if !apicurio { "registered" } else if created { "new" } else { "unchanged" },
            })
        })
        .collect();
    if args.json {
        let out = serde_json::json!({
            "registry": url.as_str(),
            "group": ids.group,
            "schemas": rows,
            "new": new,
        });
        println!("{out}");
    } else {
        println!(
            "{:<28} {:>8} {:>9} {:>10}  status",
            "artifact", "version", "globalId", "contentId"
        );
        for r in &rows {
            println!(
                "{:<28} {:>8} {:>9} {:>10}  {}",
                r["artifact_id"].as_str().unwrap_or_default(),
                r["version"].as_str().unwrap_or_default(),
                r["global_id"].as_u64().unwrap_or_default(),
                r["content_id"].as_u64().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default()
            );
        }
    }
    let rule = registry.compatibility.map_or_else(
        || "no compatibility rule set".to_owned(),
        |l| format!("{l} compatibility rule on the group"),
    );
    if apicurio {
        eprintln!(
            "{} schema(s) in group '{}' at {url}: {new} new, {} already registered; {rule}",
            rows.len(),
            ids.group,
            rows.len() - new
        );
    } else {
        // A Confluent-style registry answers the same way for new and found.
        eprintln!(
            "{} schema(s) registered or found at {url} (Confluent-compatible API)",
            rows.len()
        );
    }
    Ok(())
}
