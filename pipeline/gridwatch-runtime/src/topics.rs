//! The pipeline's topics and the registry ids their records are framed with.

/// Topic names. Every output topic has as many partitions as `readings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Framed Avro SensorReadings, keyed and partitioned by meter.
    pub readings: String,
    /// Every ScoredReading (with its anomalies): what the lake archives.
    pub scored: String,
    /// Every AnomalyEvent: what operators, Kafka and InfluxDB see.
    pub anomalies: String,
    /// Every DeadLetter, with its reason and original bytes.
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            readings: "readings".into(),
            scored: "scored".into(),
            anomalies: "anomalies".into(),
            dead_letter: "dead-letter".into(),
        }
    }
}

impl Topics {
    /// The topics processors write.
    pub fn outputs(&self) -> [&str; 3] {
        [&self.scored, &self.anomalies, &self.dead_letter]
    }

    pub fn all(&self) -> [&str; 4] {
        [
            &self.readings,
            &self.scored,
            &self.anomalies,
            &self.dead_letter,
        ]
    }
}

/// Registry contentIds of the schemas records are framed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchemaIds {
    pub reading: u64,
    pub scored: u64,
    pub anomaly: u64,
    pub dead_letter: u64,
}
