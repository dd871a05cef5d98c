//! The facet values of a profile's `result`: the one extraction of the
//! project. The service stores [`Facets::as_written`] in `profiles.*_facets`
//! when it stores a profile, and the database derives the rest from those
//! arrays alone (the search postings `profile_facets`, the kept counts and
//! spellings: migration `profile_facets`); export and profile changes use
//! the same function. `result` itself is always stored as received.

use serde_json::Value;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Facets {
    /// Any string field of an `interest_graph.*.interests[]` entry except
    /// `supporting_accounts` (the label key varies: topic, activity, ...).
    pub interests: Vec<String>,
    /// Keys of `interest_graph`.
    pub categories: Vec<String>,
    /// `brand_affinities[].brands[]`.
    pub brands: Vec<String>,
    /// `core_profile.archetypes[]`.
    pub archetypes: Vec<String>,
    /// `professional_ecosystem.industry_focus[]`.
    pub industries: Vec<String>,
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = String> + '_ {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
}

impl Facets {
    /// The lowercased, sorted and deduplicated values the filters search.
    pub fn extract(result: &Value) -> Facets {
        let mut f = Facets::as_written(result);
        for list in f.lists() {
            for v in list.iter_mut() {
                *v = v.to_lowercase();
            }
            list.sort();
            list.dedup();
        }
        f
    }

    /// The values as the result spells them, in order of appearance; a value
    /// spelled twice (ignoring case) is kept once, as first written.
    pub fn as_written(result: &Value) -> Facets {
        let mut f = Facets::default();
        if let Some(graph) = result.get("interest_graph").and_then(Value::as_object) {
            for (category, body) in graph {
                f.categories.push(category.clone());
                let entries = body.get("interests").and_then(Value::as_array);
                for entry in entries.into_iter().flatten().filter_map(Value::as_object) {
                    f.interests.extend(
                        entry
                            .iter()
                            .filter(|(k, _)| k.as_str() != "supporting_accounts")
                            .filter_map(|(_, v)| v.as_str())
                            .map(str::to_owned),
                    );
                }
            }
        }
        for affinity in result
            .get("brand_affinities")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            f.brands.extend(strings(affinity.get("brands")));
        }
        f.archetypes
            .extend(strings(result.pointer("/core_profile/archetypes")));
        f.industries.extend(strings(
            result.pointer("/professional_ecosystem/industry_focus"),
        ));
        for list in f.lists() {
            let mut seen = std::collections::HashSet::new();
            list.retain(|v| seen.insert(v.to_lowercase()));
        }
        f
    }

    fn lists(&mut self) -> [&mut Vec<String>; 5] {
        [
            &mut self.interests,
            &mut self.categories,
            &mut self.brands,
            &mut self.archetypes,
            &mut self.industries,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_yields_every_facet() {
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/completed-bare-data.json"))
                .unwrap();
        let f = Facets::extract(&fixture["result"]);
        assert_eq!(f.interests, ["machine learning", "running"]);
        assert_eq!(f.categories, ["sports_and_fitness", "technology"]);
        assert_eq!(f.brands, ["aws", "google cloud"]);
        assert_eq!(f.archetypes, ["tech leader", "thought leader"]);
        assert_eq!(f.industries, ["developer tools", "saas"]);
    }

    #[test]
    fn unexpected_shapes_are_skipped_not_fatal() {
        let f = Facets::extract(&serde_json::json!({
            "interest_graph": {"x": {"interests": "nope"}, "y": 3},
            "brand_affinities": {"not": "a list"},
            "core_profile": {"archetypes": [1, "Maker"]}
        }));
        assert_eq!(f.categories, ["x", "y"]);
        assert_eq!(f.archetypes, ["maker"]);
        assert!(f.brands.is_empty() && f.interests.is_empty());
    }

    #[test]
    fn as_written_keeps_the_first_spelling_once() {
        let f = Facets::as_written(&serde_json::json!({
            "brand_affinities": [{"brands": ["Nike", "Adidas"]}, {"brands": ["NIKE"]}]
        }));
        assert_eq!(f.brands, ["Nike", "Adidas"]);
    }
}
