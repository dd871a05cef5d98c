//! Synthetic, deterministic profiles: the same identifiers (ignoring
//! capitals and surrounding spaces) always give a byte-identical `result`,
//! shaped like the provider's documented example.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::subject::Subject;
use super::words;

/// The `result` of a completed job for `subject`.
pub fn profile(subject: &Subject) -> Value {
    generate(Prng::for_subject(subject))
}

/// The `result` of the `nth` job (1 for the first) for `subject` under the
/// `changing` case: each lookup of the person gives another profile, and
/// the same one every time for the same `nth`.
pub fn nth_profile(subject: &Subject, nth: u64) -> Value {
    let Prng(seed) = Prng::for_subject(subject);
    generate(Prng(seed ^ nth.wrapping_mul(0xD6E8_FEB8_6659_FD93)))
}

fn generate(mut rng: Prng) -> Value {
    let mut result = Map::new();
    result.insert("core_profile".into(), core_profile(&mut rng));
    // Optional sections: the provider omits sections without signals.
    if rng.chance(60) {
        result.insert("location_intelligence".into(), location(&mut rng));
    }
    if rng.chance(50) {
        result.insert("cultural_dna".into(), cultural_dna(&mut rng));
    }
    if rng.chance(50) {
        result.insert("psychographics".into(), psychographics(&mut rng));
    }
    result.insert("interest_graph".into(), interest_graph(&mut rng));
    result.insert("brand_affinities".into(), brand_affinities(&mut rng));
    result.insert(
        "professional_ecosystem".into(),
        professional_ecosystem(&mut rng),
    );
    if rng.chance(50) {
        result.insert("social_graph_clusters".into(), clusters(&mut rng));
    }
    result.insert("following_count".into(), json!(rng.between(120, 4800)));
    Value::Object(result)
}

fn core_profile(rng: &mut Prng) -> Value {
    json!({
        "archetypes": rng.sample(words::ARCHETYPES, 2, 3),
        "supporting_accounts": rng.sample(words::CORE_HANDLES, 2, 3),
    })
}

fn location(rng: &mut Prng) -> Value {
    let places = rng.sample_items(words::PLACES, 1, 3);
    let (city, country) = places[0];
    let also: Vec<&str> = places[1..].iter().map(|(city, _)| *city).collect();
    json!({
        "primary_location": {"city": city, "country": country},
        "frequent_regions": also,
        "supporting_accounts": rng.sample(words::LOCAL_HANDLES, 1, 2),
    })
}

fn cultural_dna(rng: &mut Prng) -> Value {
    let themes: Vec<Value> = rng
        .sample(words::CULTURE_THEMES, 1, 3)
        .into_iter()
        .map(|theme| {
            json!({"theme": theme, "supporting_accounts": rng.sample(words::CULTURE_HANDLES, 1, 2)})
        })
        .collect();
    json!({ "themes": themes })
}

fn psychographics(rng: &mut Prng) -> Value {
    json!({
        "traits": rng.sample(words::TRAITS, 2, 3),
        "values": rng.sample(words::VALUES, 1, 3),
        "supporting_accounts": rng.sample(words::PSYCHO_HANDLES, 1, 3),
    })
}

fn interest_graph(rng: &mut Prng) -> Value {
    let mut graph = Map::new();
    for category in rng.sample_items(words::CATEGORIES, 2, 4) {
        let interests: Vec<Value> = rng
            .sample(category.items, 1, 3)
            .into_iter()
            .map(|item| {
                let mut interest = Map::new();
                interest.insert(category.label.into(), json!(item));
                interest.insert(
                    "supporting_accounts".into(),
                    json!(rng.sample(category.handles, 1, 2)),
                );
                Value::Object(interest)
            })
            .collect();
        graph.insert(category.key.into(), json!({ "interests": interests }));
    }
    Value::Object(graph)
}

fn brand_affinities(rng: &mut Prng) -> Value {
    let affinities: Vec<Value> = rng
        .sample_items(words::BRANDS, 1, 3)
        .into_iter()
        .map(|(category, brands)| json!({"category": category, "brands": rng.sample(brands, 2, 3)}))
        .collect();
    Value::Array(affinities)
}

fn professional_ecosystem(rng: &mut Prng) -> Value {
    json!({
        "industry_focus": rng.sample(words::INDUSTRIES, 1, 3),
        "supporting_accounts": rng.sample(words::INDUSTRY_HANDLES, 2, 3),
    })
}

fn clusters(rng: &mut Prng) -> Value {
    let clusters: Vec<Value> = rng
        .sample(words::CLUSTERS, 1, 3)
        .into_iter()
        .map(|cluster| {
            json!({
                "cluster": cluster,
                "size": rng.between(12, 480),
                "supporting_accounts": rng.sample(words::CLUSTER_HANDLES, 2, 3),
            })
        })
        .collect();
    Value::Array(clusters)
}

/// SplitMix64: tiny, fast and fully specified, so profiles never depend on
/// an external generator's version.
struct Prng(u64);

impl Prng {
    /// Seeded from SHA-256 of the subject's key.
    fn for_subject(subject: &Subject) -> Self {
        let digest = Sha256::digest(subject.key().as_bytes());
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        Prng(u64::from_le_bytes(seed))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Between `min` and `max` distinct items, in drawn order.
    fn sample_items<'a, T>(&mut self, items: &'a [T], min: usize, max: usize) -> Vec<&'a T> {
        let max = max.min(items.len());
        let count = min.min(max) + self.below(max - min.min(max) + 1);
        let mut indices: Vec<usize> = (0..items.len()).collect();
        for slot in 0..count {
            let pick = slot + self.below(indices.len() - slot);
            indices.swap(slot, pick);
        }
        indices[..count].iter().map(|&i| &items[i]).collect()
    }

    /// [`Prng::sample_items`] for word lists.
    fn sample(&mut self, items: &[&'static str], min: usize, max: usize) -> Vec<&'static str> {
        self.sample_items(items, min, max)
            .into_iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(email: &str) -> Subject {
        Subject {
            email: Some(email.into()),
            ..Subject::default()
        }
    }

    #[test]
    fn the_same_identifiers_give_byte_identical_profiles() {
        let a = serde_json::to_string(&profile(&subject("Ann@Example.com"))).ok();
        let b = serde_json::to_string(&profile(&subject("ann@example.com "))).ok();
        assert!(a.is_some());
        assert_eq!(a, b);
        let c = serde_json::to_string(&profile(&subject("bob@example.com"))).ok();
        assert_ne!(a, c);
    }

    #[test]
    fn the_changing_case_differs_per_lookup_and_repeats_per_count() {
        let ann = subject("ann+sandbox-changing@example.com");
        assert_ne!(nth_profile(&ann, 1), nth_profile(&ann, 2));
        assert_eq!(nth_profile(&ann, 2), nth_profile(&ann, 2));
    }

    #[test]
    fn every_profile_has_the_documented_sections_with_supporting_accounts() {
        for n in 0..50 {
            let result = profile(&subject(&format!("person{n}@example.com")));
            assert!(result["core_profile"]["supporting_accounts"].is_array());
            assert!(result["following_count"].is_u64());
            let graph = result["interest_graph"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            assert!(graph.len() >= 2);
            for category in graph.values() {
                for interest in category["interests"].as_array().into_iter().flatten() {
                    assert!(interest["supporting_accounts"][0].is_string());
                }
            }
            assert!(result["brand_affinities"][0]["brands"][1].is_string());
            assert!(result["professional_ecosystem"]["industry_focus"][0].is_string());
        }
    }
}
