//! What changed between two versions of a person's profile, by facet
//! (`GET /v1/profiles/{id}/changes` and the `profile.changed` event). The
//! facet values come from [`Facets::as_written`], the same extraction the
//! filters use; values compare ignoring case, as the filters do.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::facets::Facets;

/// Facet values, one list per filterable field.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacetValues {
    pub interest: Vec<String>,
    pub category: Vec<String>,
    pub brand: Vec<String>,
    pub archetype: Vec<String>,
    pub industry: Vec<String>,
}

impl FacetValues {
    fn is_empty(&self) -> bool {
        self.lists().iter().all(|l| l.is_empty())
    }

    fn lists(&self) -> [&Vec<String>; 5] {
        [
            &self.interest,
            &self.category,
            &self.brand,
            &self.archetype,
            &self.industry,
        ]
    }
}

/// `following_count` of the older and the newer version (null when a
/// version has none).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FollowingCount {
    pub before: Option<i64>,
    pub after: Option<i64>,
}

/// The difference between an older and a newer result.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// Values of the newer version the older lacked, as the newer spells them.
    pub added: FacetValues,
    /// Values of the older version the newer lacks, as the older spelled them.
    pub removed: FacetValues,
    pub following_count: FollowingCount,
}

impl Change {
    pub fn between(older: &Value, newer: &Value) -> Change {
        let (old, new) = (Facets::as_written(older), Facets::as_written(newer));
        let pairs = [
            (&old.interests, &new.interests),
            (&old.categories, &new.categories),
            (&old.brands, &new.brands),
            (&old.archetypes, &new.archetypes),
            (&old.industries, &new.industries),
        ];
        let [added, removed] = [true, false].map(|adding| {
            let [interest, category, brand, archetype, industry] = pairs.map(|(old, new)| {
                if adding {
                    missing_from(new, old)
                } else {
                    missing_from(old, new)
                }
            });
            FacetValues {
                interest,
                category,
                brand,
                archetype,
                industry,
            }
        });
        Change {
            added,
            removed,
            following_count: FollowingCount {
                before: following_count(older),
                after: following_count(newer),
            },
        }
    }

    /// True when the newer version says nothing new.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.following_count.before == self.following_count.after
    }
}

/// The values of `these` (in their order and spelling) that `others` lacks,
/// ignoring case.
fn missing_from(these: &[String], others: &[String]) -> Vec<String> {
    let others: HashSet<String> = others.iter().map(|v| v.to_lowercase()).collect();
    these
        .iter()
        .filter(|v| !others.contains(&v.to_lowercase()))
        .cloned()
        .collect()
}

fn following_count(result: &Value) -> Option<i64> {
    let v = result.get("following_count")?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f.round() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn added_keeps_the_newer_spelling_and_removed_the_older() {
        let older = json!({"brand_affinities": [{"brands": ["Nike", "adidas"]}],
            "core_profile": {"archetypes": ["Maker"]}, "following_count": 10});
        let newer = json!({"brand_affinities": [{"brands": ["NIKE", "Puma"]}],
            "core_profile": {"archetypes": ["Maker"]}, "following_count": 12});
        let c = Change::between(&older, &newer);
        assert_eq!(c.added.brand, ["Puma"]);
        assert_eq!(c.removed.brand, ["adidas"]);
        assert!(c.added.archetype.is_empty() && c.removed.archetype.is_empty());
        assert_eq!(
            c.following_count,
            FollowingCount {
                before: Some(10),
                after: Some(12)
            }
        );
        assert!(!c.is_empty());
    }

    #[test]
    fn the_same_result_changes_nothing() {
        let r = json!({"interest_graph": {"tech": {"interests": [{"topic": "Rust"}]}},
            "following_count": 3});
        assert!(Change::between(&r, &r).is_empty());
    }
}
