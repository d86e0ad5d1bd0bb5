//! Admin commands that talk to a running instance's API:
//! `gridwatch modules list|swap`.

use std::time::Duration;

use anyhow::Context;

use crate::cli::{AdminTarget, ModulesCommand};

/// A client for one instance's admin API.
pub struct AdminClient {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(target: &AdminTarget) -> anyhow::Result<Self> {
        let config = target.config.load()?;
        let base = target
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.http.listen))
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
            base,
            token: target.token.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends a request and returns its JSON body, or the server's error.
    async fn json(&self, request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("no gridwatch answers at {}", self.base))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("(no detail)");
            anyhow::bail!("{status}: {error}");
        }
        Ok(body)
    }
}

pub async fn modules(cmd: ModulesCommand) -> anyhow::Result<()> {
    match cmd {
        ModulesCommand::Publish(args) => crate::publish::publish(args).await,
        ModulesCommand::List(target) => {
            let admin = AdminClient::new(&target)?;
            let list = admin
                .json(admin.request(reqwest::Method::GET, "/api/v1/modules"))
                .await?;
            println!(
                "{:<10} {:<20} {:>7} {:<6} {:<16} SOURCE",
                "NAME", "SMARTMODULE", "VERSION", "KIND", "SHA256"
            );
            for m in list.as_array().into_iter().flatten() {
                println!(
                    "{:<10} {:<20} {:>7} {:<6} {:<16} {}",
                    m["name"].as_str().unwrap_or(""),
                    m["smartmodule"].as_str().unwrap_or(""),
                    m["version"],
                    m["kind"].as_str().unwrap_or(""),
                    m["sha256"].as_str().unwrap_or("").get(..16).unwrap_or(""),
                    m["source"].as_str().unwrap_or(""),
                );
            }
            Ok(())
        }
        ModulesCommand::Swap { name, file, target } => {
            let admin = AdminClient::new(&target)?;
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            eprintln!(
                "Swapping {name} with {} ({} bytes)…",
                file.display(),
                wasm.len()
            );
            let report = admin
                .json(
                    admin
                        .request(reqwest::Method::PUT, &format!("/api/v1/modules/{name}"))
                        .header("content-type", "application/wasm")
                        .body(wasm),
                )
                .await
                .context("swap rejected; the old module keeps running")?;
            let m = &report["module"];
            println!(
                "{} is now version {} (sha256 {}), live after warming {} records in {} ms",
                m["name"].as_str().unwrap_or(&name),
                m["version"],
                m["sha256"].as_str().unwrap_or(""),
                report["warmed"]
                    .as_array()
                    .map(|w| w.iter().map(|p| p[1].as_u64().unwrap_or(0)).sum::<u64>())
                    .unwrap_or(0),
                report["took_ms"],
            );
            Ok(())
        }
    }
}
