//! Avro schema resolution for the embedded registry's `COMPATIBILITY` rule.
//!
//! The rules are the Avro specification's ("Schema Resolution"), as Java's
//! `SchemaCompatibility` applies them, which is what Apicurio runs:
//!
//! - records match by unqualified name (or a reader alias); each reader field
//!   must be in the writer (by name or alias) with a readable type, or have
//!   a default;
//! - enums: every writer symbol must be in the reader, unless the reader
//!   has a default symbol;
//! - fixed: same name and size; arrays and maps: readable items and values;
//! - unions: each writer branch must be readable by some reader branch;
//! - primitives: the same type, or a promotion (`int`→`long`/`float`/`double`,
//!   `long`→`float`/`double`, `float`→`double`, `string`↔`bytes`);
//! - logical types are checked as their underlying type.
//!
//! `apache_avro::schema_compatibility::SchemaCompatibility` gets the common
//! cases right (an added field with a default, `"default": null` included),
//! but it refuses an enum symbol that a reader's enum default covers, and it
//! compares a named type written out once with its later by-name references
//! as different types, so records that use a type twice (like
//! `AnomalyEvent.original_event`) cannot evolve. Hence this checker, which
//! also reports every incompatibility with its path, not only the first;
//! the tests compare the two on the cases where they should agree.

use std::collections::{HashMap, HashSet};
use std::fmt;

use apache_avro::Schema;
use apache_avro::schema::{Alias, Name, ResolvedSchema};

use crate::model::CompatibilityLevel;

/// A parsed Avro schema with its named types, so that references resolve.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    schema: Schema,
    names: HashMap<Name, Schema>,
}

impl AvroSchema {
    /// Parses schema text; the error is the parser's message.
    pub fn parse(text: &str) -> Result<Self, String> {
        let schema = Schema::parse_str(text).map_err(|e| e.to_string())?;
        let names = ResolvedSchema::try_from(&schema)
            .map_err(|e| e.to_string())?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        Ok(Self { schema, names })
    }

    /// The Parsing Canonical Form: equal for schemas that differ only in
    /// docs, whitespace or attribute order.
    pub fn canonical_form(&self) -> String {
        self.schema.canonical_form()
    }

    fn resolve<'s>(&'s self, schema: &'s Schema) -> &'s Schema {
        match schema {
            Schema::Ref { name } => self.names.get(name).unwrap_or(schema),
            other => other,
        }
    }
}

/// The kinds of incompatibility, named as Java's `SchemaIncompatibilityType`
/// (and so Apicurio's messages) name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncompatibilityKind {
    /// The reader's type cannot read the writer's type.
    TypeMismatch,
    /// A named type has a different name and no matching alias.
    NameMismatch,
    /// Two fixed types differ in size.
    FixedSizeMismatch,
    /// The writer has enum symbols the reader lacks, and no default covers them.
    MissingEnumSymbols,
    /// A writer type has no readable branch in the reader's union.
    MissingUnionBranch,
    /// A reader field is absent from the writer and has no default.
    ReaderFieldMissingDefaultValue,
}

impl IncompatibilityKind {
    /// The upper-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::NameMismatch => "NAME_MISMATCH",
            Self::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            Self::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            Self::MissingUnionBranch => "MISSING_UNION_BRANCH",
            Self::ReaderFieldMissingDefaultValue => "READER_FIELD_MISSING_DEFAULT_VALUE",
        }
    }
}

/// One reason data written with one schema cannot be read with another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// What kind of problem.
    pub kind: IncompatibilityKind,
    /// Where in the reader's schema, e.g. `/fields/status`.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at {}",
            self.kind.as_str(),
            self.message,
            self.path
        )
    }
}

/// Everything that stops `reader` from reading data written with `writer`;
/// empty when it can.
pub fn can_read(writer: &AvroSchema, reader: &AvroSchema) -> Vec<Incompatibility> {
    let mut checker = Checker {
        writer,
        reader,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    checker.check(&writer.schema, &reader.schema, String::new());
    checker.out
}

/// Which way data failed to flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The proposed schema cannot read data written with an existing version.
    NewCannotReadOld,
    /// An existing version cannot read data written with the proposed schema.
    OldCannotReadNew,
}

/// The proposed schema failed against one existing version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The existing version it was checked against.
    pub version: String,
    /// Which way reading fails.
    pub direction: Direction,
    /// Why.
    pub issues: Vec<Incompatibility>,
}

impl Violation {
    /// The failure in words, e.g. "the new schema cannot read data written with version 1".
    pub fn summary(&self) -> String {
        match self.direction {
            Direction::NewCannotReadOld => format!(
                "the new schema cannot read data written with version {}",
                self.version
            ),
            Direction::OldCannotReadNew => format!(
                "version {} cannot read data written with the new schema",
                self.version
            ),
        }
    }
}

/// Checks a proposed schema against an artifact's existing versions (oldest
/// first) at `level`. Non-transitive levels check only the latest version.
pub fn check(
    level: CompatibilityLevel,
    existing: &[(String, AvroSchema)],
    proposed: &AvroSchema,
) -> Vec<Violation> {
    use CompatibilityLevel as L;
    let (backward, forward, transitive) = match level {
        L::None => return Vec::new(),
        L::Backward => (true, false, false),
        L::BackwardTransitive => (true, false, true),
        L::Forward => (false, true, false),
        L::ForwardTransitive => (false, true, true),
        L::Full => (true, true, false),
        L::FullTransitive => (true, true, true),
    };
    let against: &[(String, AvroSchema)] = if transitive {
        existing
    } else {
        existing
            .last()
            .map(std::slice::from_ref)
            .unwrap_or_default()
    };
    let mut violations = Vec::new();
    // Newest first, so the first violation reported is the most relevant.
    for (version, old) in against.iter().rev() {
        if backward {
            let issues = can_read(old, proposed);
            if !issues.is_empty() {
                violations.push(Violation {
                    version: version.clone(),
                    direction: Direction::NewCannotReadOld,
                    issues,
                });
            }
        }
        if forward {
            let issues = can_read(proposed, old);
            if !issues.is_empty() {
                violations.push(Violation {
                    version: version.clone(),
                    direction: Direction::OldCannotReadNew,
                    issues,
                });
            }
        }
    }
    violations
}

struct Checker<'a> {
    writer: &'a AvroSchema,
    reader: &'a AvroSchema,
    /// Record pairs under comparison, so recursive types terminate.
    seen: HashSet<(String, String)>,
    out: Vec<Incompatibility>,
}

/// The primitive a schema is encoded as, logical types included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prim {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

fn prim(schema: &Schema) -> Option<Prim> {
    Some(match schema {
        Schema::Null => Prim::Null,
        Schema::Boolean => Prim::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Prim::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Prim::Long,
        Schema::Float => Prim::Float,
        Schema::Double => Prim::Double,
        Schema::Bytes | Schema::BigDecimal => Prim::Bytes,
        Schema::String | Schema::Uuid => Prim::String,
        _ => return None,
    })
}

fn promotes(writer: Prim, reader: Prim) -> bool {
    use Prim::*;
    writer == reader
        || matches!(
            (writer, reader),
            (Int, Long | Float | Double)
                | (Long, Float | Double)
                | (Float, Double)
                | (String, Bytes)
                | (Bytes, String)
        )
}

fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
        Schema::Ref { name } => name.fullname(None),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
        Schema::Duration => "duration".into(),
        Schema::Decimal(_) => "decimal".into(),
        other => match prim(other) {
            Some(p) => format!("{p:?}").to_ascii_lowercase(),
            None => "unknown".into(),
        },
    }
}

fn names_match(writer: &Name, reader: &Name, reader_aliases: Option<&Vec<Alias>>) -> bool {
    writer.name == reader.name
        || reader_aliases.is_some_and(|aliases| {
            aliases.iter().any(|a| {
                a.fullname(reader.namespace.clone()) == writer.fullname(None)
                    || a.name() == writer.name
            })
        })
}

impl Checker<'_> {
    fn push(&mut self, kind: IncompatibilityKind, path: &str, message: String) {
        self.out.push(Incompatibility {
            kind,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            message,
        });
    }

    /// Whether `w` is readable as `r`, without reporting anything.
    fn readable(&mut self, w: &Schema, r: &Schema, path: &str) -> bool {
        let (len, seen) = (self.out.len(), self.seen.clone());
        self.check(w, r, path.to_owned());
        let ok = self.out.len() == len;
        self.out.truncate(len);
        self.seen = seen;
        ok
    }

    fn check(&mut self, w: &Schema, r: &Schema, path: String) {
        let w = self.writer.resolve(w);
        let r = self.reader.resolve(r);
        // A decimal is read as its underlying bytes or fixed.
        let w = match w {
            Schema::Decimal(d) => self.writer.resolve(&d.inner),
            other => other,
        };
        let r = match r {
            Schema::Decimal(d) => self.reader.resolve(&d.inner),
            other => other,
        };
        match (w, r) {
            (Schema::Union(wu), Schema::Union(ru)) => {
                for (i, branch) in wu.variants().iter().enumerate() {
                    let found = ru
                        .variants()
                        .iter()
                        .any(|rb| self.readable(branch, rb, &path));
                    if !found {
                        self.push(
                            IncompatibilityKind::MissingUnionBranch,
                            &path,
                            format!(
                                "the reader's union has no branch that can read the writer's branch {i} ({})",
                                describe(self.writer.resolve(branch))
                            ),
                        );
                    }
                }
            }
            (_, Schema::Union(ru)) => {
                let found = ru.variants().iter().any(|rb| self.readable(w, rb, &path));
                if !found {
                    self.push(
                        IncompatibilityKind::MissingUnionBranch,
                        &path,
                        format!(
                            "the reader's union has no branch that can read the writer's {}",
                            describe(w)
                        ),
                    );
                }
            }
            (Schema::Union(wu), _) => {
                for branch in wu.variants() {
                    self.check(branch, r, path.clone());
                }
            }
            (Schema::Record(wr), Schema::Record(rr)) => {
                if !names_match(&wr.name, &rr.name, rr.aliases.as_ref()) {
                    self.push(
                        IncompatibilityKind::NameMismatch,
                        &path,
                        format!(
                            "the writer's record is named {} and the reader's {}",
                            wr.name.fullname(None),
                            rr.name.fullname(None)
                        ),
                    );
                    return;
                }
                let key = (wr.name.fullname(None), rr.name.fullname(None));
                if !self.seen.insert(key) {
                    return;
                }
                for field in &rr.fields {
                    let field_path = format!("{path}/fields/{}", field.name);
                    let candidates =
                        std::iter::once(&field.name).chain(field.aliases.iter().flatten());
                    let written = candidates
                        .filter_map(|name| wr.lookup.get(name).and_then(|&i| wr.fields.get(i)))
                        .next();
                    match written {
                        Some(wf) => self.check(&wf.schema, &field.schema, field_path),
                        None if field.default.is_none() => self.push(
                            IncompatibilityKind::ReaderFieldMissingDefaultValue,
                            &field_path,
                            format!(
                                "field '{}' is not in the writer's schema and has no default",
                                field.name
                            ),
                        ),
                        None => {}
                    }
                }
            }
            (Schema::Enum(we), Schema::Enum(re)) => {
                if !names_match(&we.name, &re.name, re.aliases.as_ref()) {
                    self.push(
                        IncompatibilityKind::NameMismatch,
                        &path,
                        format!(
                            "the writer's enum is named {} and the reader's {}",
                            we.name.fullname(None),
                            re.name.fullname(None)
                        ),
                    );
                    return;
                }
                let missing: Vec<&str> = we
                    .symbols
                    .iter()
                    .filter(|s| !re.symbols.contains(s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() && re.default.is_none() {
                    self.push(
                        IncompatibilityKind::MissingEnumSymbols,
                        &path,
                        format!(
                            "the reader's enum {} lacks the writer's symbols [{}] and has no default",
                            re.name.fullname(None),
                            missing.join(", ")
                        ),
                    );
                }
            }
            (Schema::Fixed(wf), Schema::Fixed(rf)) => {
                if !names_match(&wf.name, &rf.name, rf.aliases.as_ref()) {
                    self.push(
                        IncompatibilityKind::NameMismatch,
                        &path,
                        format!(
                            "the writer's fixed is named {} and the reader's {}",
                            wf.name.fullname(None),
                            rf.name.fullname(None)
                        ),
                    );
                } else if wf.size != rf.size {
                    self.push(
                        IncompatibilityKind::FixedSizeMismatch,
                        &path,
                        format!(
                            "fixed {} is {} bytes in the writer and {} in the reader",
                            rf.name.fullname(None),
                            wf.size,
                            rf.size
                        ),
                    );
                }
            }
            (Schema::Array(wa), Schema::Array(ra)) => {
                self.check(&wa.items, &ra.items, format!("{path}/items"));
            }
            (Schema::Map(wm), Schema::Map(rm)) => {
                self.check(&wm.types, &rm.types, format!("{path}/values"));
            }
            (Schema::Duration, Schema::Duration) => {}
            _ => {
                let readable =
                    matches!((prim(w), prim(r)), (Some(wp), Some(rp)) if promotes(wp, rp));
                if !readable {
                    self.push(
                        IncompatibilityKind::TypeMismatch,
                        &path,
                        format!(
                            "the reader's {} cannot read the writer's {}",
                            describe(r),
                            describe(w)
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema_compatibility::SchemaCompatibility;

    fn schema(text: &str) -> AvroSchema {
        AvroSchema::parse(text).unwrap()
    }

    fn record(fields: &str) -> AvroSchema {
        schema(&format!(
            r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#
        ))
    }

    const V1: &str = r#"{"name":"a","type":"string"}"#;

    /// Both checkers must agree on these; apache-avro is the second opinion.
    fn agree(writer: &AvroSchema, reader: &AvroSchema) -> bool {
        let ours = can_read(writer, reader).is_empty();
        let theirs = SchemaCompatibility::can_read(&writer.schema, &reader.schema).is_ok();
        assert_eq!(ours, theirs, "checkers disagree");
        ours
    }

    #[test]
    fn added_field_with_default_is_backward_compatible() {
        let old = record(V1);
        let new = record(&format!(r#"{V1},{{"name":"b","type":"int","default":0}}"#));
        assert!(agree(&old, &new), "new reads old");
        assert!(
            agree(&new, &old),
            "old reads new: the extra field is skipped"
        );
        let nullable = record(&format!(
            r#"{V1},{{"name":"b","type":["null","string"],"default":null}}"#
        ));
        assert!(agree(&old, &nullable), "a null default counts as a default");
    }

    #[test]
    fn added_field_without_default_is_reported_with_its_path() {
        let old = record(V1);
        let new = record(&format!(r#"{V1},{{"name":"region","type":"string"}}"#));
        assert!(!agree(&old, &new));
        let issues = can_read(&old, &new);
        assert_eq!(
            issues,
            [Incompatibility {
                kind: IncompatibilityKind::ReaderFieldMissingDefaultValue,
                path: "/fields/region".into(),
                message: "field 'region' is not in the writer's schema and has no default".into(),
            }]
        );
        assert_eq!(
            issues[0].to_string(),
            "READER_FIELD_MISSING_DEFAULT_VALUE: field 'region' is not in the writer's schema \
             and has no default at /fields/region"
        );
    }

    #[test]
    fn promotions_follow_the_specification() {
        let int = record(r#"{"name":"a","type":"int"}"#);
        let long = record(r#"{"name":"a","type":"long"}"#);
        assert!(agree(&int, &long));
        assert!(!agree(&long, &int));
        let issues = can_read(&long, &int);
        assert_eq!(issues[0].kind, IncompatibilityKind::TypeMismatch);
        assert_eq!(issues[0].path, "/fields/a");
        assert_eq!(
            issues[0].message,
            "the reader's int cannot read the writer's long"
        );
        let string = record(r#"{"name":"a","type":"string"}"#);
        let bytes = record(r#"{"name":"a","type":"bytes"}"#);
        assert!(can_read(&string, &bytes).is_empty() && can_read(&bytes, &string).is_empty());
    }

    #[test]
    fn enum_defaults_cover_new_symbols() {
        let old = schema(r#"{"type":"enum","name":"S","symbols":["OK","FAILURE"],"default":"OK"}"#);
        let new = schema(
            r#"{"type":"enum","name":"S","symbols":["OK","FAILURE","DEGRADED"],"default":"OK"}"#,
        );
        assert!(can_read(&old, &new).is_empty());
        // Old readers map DEGRADED to their default: Java's rule. apache-avro refuses it.
        assert!(can_read(&new, &old).is_empty());
        assert!(SchemaCompatibility::can_read(&new.schema, &old.schema).is_err());
        let strict = schema(r#"{"type":"enum","name":"S","symbols":["OK","FAILURE"]}"#);
        let issues = can_read(&new, &strict);
        assert_eq!(issues[0].kind, IncompatibilityKind::MissingEnumSymbols);
        assert!(issues[0].message.contains("[DEGRADED]"), "{}", issues[0]);
    }

    #[test]
    fn unions_need_a_branch_for_every_writer_branch() {
        let nullable = record(r#"{"name":"a","type":["null","string"]}"#);
        let plain = record(r#"{"name":"a","type":"string"}"#);
        assert!(
            agree(&plain, &nullable),
            "string is readable as [null, string]"
        );
        assert!(!agree(&nullable, &plain), "null is not readable as string");
        let issues = can_read(&nullable, &plain);
        assert_eq!(issues[0].kind, IncompatibilityKind::TypeMismatch);
        let wider = record(r#"{"name":"a","type":["null","string","long"]}"#);
        assert!(agree(&nullable, &wider));
        let issues = can_read(&wider, &nullable);
        assert_eq!(issues[0].kind, IncompatibilityKind::MissingUnionBranch);
        assert!(
            issues[0].message.contains("branch 2 (long)"),
            "{}",
            issues[0]
        );
    }

    #[test]
    fn logical_types_are_checked_as_their_underlying_type() {
        let long = record(r#"{"name":"t","type":"long"}"#);
        let ts = record(r#"{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}"#);
        assert!(can_read(&long, &ts).is_empty() && can_read(&ts, &long).is_empty());
    }

    #[test]
    fn renames_and_aliases() {
        let old = record(r#"{"name":"volts","type":"double"}"#);
        let renamed = record(r#"{"name":"voltage","type":"double","aliases":["volts"]}"#);
        assert!(
            can_read(&old, &renamed).is_empty(),
            "reader alias finds the old field"
        );
        let other = schema(r#"{"type":"record","name":"Q","namespace":"t","fields":[]}"#);
        assert_eq!(
            can_read(&old, &other)[0].kind,
            IncompatibilityKind::NameMismatch
        );
    }

    #[test]
    fn recursive_and_reused_named_types_resolve() {
        let list = r#"{"type":"record","name":"Node","fields":[
            {"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#;
        let node = schema(list);
        assert!(can_read(&node, &node).is_empty());
        // SensorReading is written out once and then referenced by name.
        let anomaly = schema(gridwatch_contracts::schema::ANOMALY_EVENT);
        assert!(can_read(&anomaly, &anomaly).is_empty());
        let chain = schema(gridwatch_contracts::schema::CHAIN_RECORD);
        assert!(can_read(&chain, &chain).is_empty());
    }

    #[test]
    fn every_contract_reads_itself() {
        for (id, text) in gridwatch_contracts::schema::ALL {
            let s = schema(text);
            assert_eq!(can_read(&s, &s), [], "{id}");
        }
    }

    fn versions(texts: &[&AvroSchema]) -> Vec<(String, AvroSchema)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, s)| ((i + 1).to_string(), (*s).clone()))
            .collect()
    }

    #[test]
    fn levels_check_the_right_versions_in_the_right_direction() {
        let v1 = record(V1);
        let v2 = record(&format!(r#"{V1},{{"name":"b","type":"int","default":0}}"#));
        // v3 drops b's default: it reads v2 data, but not v1 data.
        let v3 = record(&format!(r#"{V1},{{"name":"b","type":"int"}}"#));
        let existing = versions(&[&v1, &v2]);
        use CompatibilityLevel as L;
        assert!(check(L::Backward, &existing, &v3).is_empty());
        let transitive = check(L::BackwardTransitive, &existing, &v3);
        assert_eq!(transitive.len(), 1);
        assert_eq!(transitive[0].version, "1");
        assert_eq!(
            transitive[0].summary(),
            "the new schema cannot read data written with version 1"
        );
        // Removing a field without default from the reader's view: forward fails.
        let v0 = record(&format!(r#"{V1},{{"name":"c","type":"int"}}"#));
        let forward = check(L::Forward, &versions(&[&v0]), &v1);
        assert_eq!(forward.len(), 1);
        assert_eq!(forward[0].direction, Direction::OldCannotReadNew);
        assert!(check(L::Backward, &versions(&[&v0]), &v1).is_empty());
        assert_eq!(check(L::Full, &versions(&[&v0]), &v1).len(), 1);
        assert_eq!(check(L::FullTransitive, &existing, &v3).len(), 1);
        assert!(check(L::ForwardTransitive, &existing, &v3).is_empty());
        assert!(check(L::None, &versions(&[&v0]), &v1).is_empty());
        assert!(
            check(L::FullTransitive, &[], &v1).is_empty(),
            "a first version passes"
        );
    }
}
