//! The registry of documented claims, and which scenarios check each one.
//!
//! A claim is something a document says the connector (or a mail system) does:
//! a symptom of KB Q146791 (`KB-1` .. `KB-6`), a rule of RFC 5321, 3463, 1870 or
//! 2920 (`RFC5321-6.1`), or an observation of another mail system
//! (`POSTFIX-LOWSPACE`). Each has its source, the section, a one-line summary and
//! the exact text it rests on. The registry is `scenarios/claims.yaml`, compiled
//! into the harness; its JSON Schema is [`schema`] (`scenarios/claims.schema.json`).
//!
//! A scenario's `claims:` must name registered claims (an unknown one is a load
//! error with a suggestion); free-form labels go in `tags:`. [`coverage`] runs
//! scenarios and tells, for each claim, which scenarios check it and whether they
//! passed: `imc-harness claims` prints it.

mod coverage;

pub use coverage::{Check, Coverage, Outcome, Row, coverage};

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The file name of the registry inside a scenarios folder. Folder discovery
/// skips it: it is not a scenario.
pub const REGISTRY_FILE: &str = "claims.yaml";

/// The registry's text, as committed in `scenarios/claims.yaml`.
pub const REGISTRY_SOURCE: &str = include_str!("../../../../scenarios/claims.yaml");

/// What kind of source a claim has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A document says it: the KB article, an RFC. Scenarios of the connector
    /// check it.
    Documented,
    /// Another mail system was seen (or read in its sources) to do it: the
    /// `hardened` profile learns from it; no scenario of this connector checks
    /// that other system.
    Observed,
}

/// One documented claim.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// What scenarios cite (`KB-3`, `RFC5321-4.1.1.4`, `POSTFIX-LOWSPACE`); unique.
    #[schemars(regex(pattern = r"^[A-Z0-9][A-Z0-9.\-]*$"))]
    pub id: String,
    /// Documented or observed.
    pub kind: Kind,
    /// The document (`Microsoft KB Q146791`, `RFC 5321`).
    pub source: String,
    /// The section of the document the text is from (`6.1 Reliable Delivery and
    /// Replies by Email`).
    pub section: String,
    /// One short line, for tables.
    pub summary: String,
    /// The exact words the claim rests on (a short quote).
    pub text: String,
}

/// The registry file: a list of claims.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    /// Every claim, in the order tables show them.
    claims: Vec<Claim>,
}

/// Every registered claim, in the registry's order.
#[derive(Clone, Debug)]
pub struct Registry {
    claims: Vec<Claim>,
}

impl Registry {
    /// Parses a registry file; every id must be unique and every field filled.
    pub fn parse(text: &str) -> Result<Registry, String> {
        let file: RegistryFile =
            serde_saphyr::from_str(text).map_err(|e| format!("claims registry: {e}"))?;
        let mut seen = BTreeSet::new();
        for claim in &file.claims {
            if !seen.insert(claim.id.as_str()) {
                return Err(format!(
                    "claims registry: the id `{}` is registered twice",
                    claim.id
                ));
            }
            let fields = [
                ("id", &claim.id),
                ("source", &claim.source),
                ("section", &claim.section),
                ("summary", &claim.summary),
                ("text", &claim.text),
            ];
            if let Some((name, _)) = fields.iter().find(|(_, v)| v.trim().is_empty()) {
                return Err(format!(
                    "claims registry: claim `{}` has an empty `{name}`",
                    claim.id
                ));
            }
        }
        Ok(Registry {
            claims: file.claims,
        })
    }

    /// The claim with this id.
    pub fn get(&self, id: &str) -> Option<&Claim> {
        self.claims.iter().find(|c| c.id == id)
    }

    /// Every claim, in the registry's order.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    /// Every id, in the registry's order.
    pub fn ids(&self) -> Vec<&str> {
        self.claims.iter().map(|c| c.id.as_str()).collect()
    }
}

/// The registry compiled into the harness ([`REGISTRY_SOURCE`]).
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        // A unit test parses the same text, so a broken registry fails `cargo test`.
        Registry::parse(REGISTRY_SOURCE).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The JSON Schema (draft 2020-12) of the registry file, pretty-printed with a
/// final newline. `scenarios/claims.schema.json` holds a copy; a test keeps it current.
pub fn schema() -> String {
    let mut schema = schemars::schema_for!(RegistryFile);
    schema.insert(
        "title".into(),
        serde_json::Value::String("imc-harness claims registry".into()),
    );
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is valid JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_registry_loads() {
        let registry = Registry::parse(REGISTRY_SOURCE).unwrap();
        for id in [
            "KB-1",
            "KB-6",
            "RFC5321-6.1",
            "RFC3463-4.3.1",
            "POSTFIX-LOWSPACE",
        ] {
            assert!(registry.get(id).is_some(), "{id} is not registered");
        }
        assert_eq!(registry.ids().len(), registry.claims().len());
    }

    #[test]
    fn a_duplicate_id_is_refused() {
        let claim =
            "  - { id: KB-1, kind: documented, source: s, section: s, summary: s, text: t }\n";
        let err = Registry::parse(&format!("claims:\n{claim}{claim}")).unwrap_err();
        assert!(err.contains("`KB-1` is registered twice"), "{err}");
    }

    #[test]
    fn an_empty_field_is_refused() {
        let text = "claims:\n  - { id: KB-1, kind: documented, source: s, section: s, summary: ' ', text: t }\n";
        let err = Registry::parse(text).unwrap_err();
        assert!(err.contains("empty `summary`"), "{err}");
    }

    #[test]
    fn the_committed_schema_is_current() {
        let committed = include_str!("../../../../scenarios/claims.schema.json");
        assert!(
            committed == schema(),
            "scenarios/claims.schema.json is stale: run `cargo run --release -- claims --schema > scenarios/claims.schema.json`"
        );
    }
}
