//! The sinks `gridwatch run` attaches to the pipeline, from `sinks.*`.

use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::pipeline::PipelineBuilder;
use gridwatch_runtime::topics::Topics;

use crate::config::AppConfig;

/// Adds every configured sink to the pipeline, and says which are on.
pub fn attach(
    pipeline: PipelineBuilder<EmbeddedBackend>,
    _config: &AppConfig,
    _topics: &Topics,
) -> anyhow::Result<PipelineBuilder<EmbeddedBackend>> {
    Ok(pipeline)
}
