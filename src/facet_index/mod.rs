//! Facet counts under facet filters from an index kept in this process
//! (issue 17): one roaring bitmap of profile numbers (`profiles.doc`) per
//! facet field and case-folded value, and per profile the ids of its
//! values (module `forward`). A count under filters intersects the filters'
//! bitmaps, then reads the matches' value ids (few matches) or counts the
//! overlap with each value's bitmap, most common values first and
//! stopping as soon as no remaining value can enter the top (many):
//! milliseconds at a million profiles where the database must fetch every
//! matching profile. Searches with several facet filters may read the
//! matches by number ([`FacetIndex::matching`]).
//!
//! Exact, never stale: the index is loaded from one snapshot and follows
//! the log the profile triggers write (`store::facet_log`). Every answer
//! first reads the log up to the request's own snapshot, so it counts
//! every profile committed before the request, as the database would.
//! Until the index is loaded (in the background at start, about a
//! minute per million profiles), or when it must be loaded again, counts
//! come from the database: slower, same answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use roaring::RoaringBitmap;
use sqlx::PgPool;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::store::facet_log::{self, Changes};

mod forward;
use crate::store::facets::Field;
use forward::Forward;

/// How often the index reads the log when no request does.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// How often old log rows are pruned (by every replica; one suffices).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Wait before loading again after a failed load.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The index of one process. Cheap to share.
#[derive(Clone)]
pub struct FacetIndex {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` while (re)loading, or when disabled (`FACET_INDEX=off`).
    state: RwLock<Option<Loaded>>,
    enabled: bool,
    /// Set by a reader that found the log incomplete: load again.
    reload: Notify,
    /// A profile number beyond a bitmap's range was met: the index cannot
    /// hold this database, and stays off.
    overflow: AtomicBool,
}

/// The bitmaps as of `snapshot`.
struct Loaded {
    snapshot: String,
    /// Indexed by [`Field::slot`]: case-folded value → profiles carrying it.
    fields: [HashMap<String, RoaringBitmap>; 5],
    /// The same, by profile; `None` past 65,536 values (then few matches
    /// are counted on the bitmaps too, slower).
    forward: Option<Forward>,
}

/// One facet value and how many matching profiles carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub value_lower: String,
    pub count: u64,
}

impl FacetIndex {
    pub fn new(enabled: bool) -> FacetIndex {
        FacetIndex {
            inner: Arc::new(Inner {
                state: RwLock::new(None),
                enabled,
                reload: Notify::new(),
                overflow: AtomicBool::new(false),
            }),
        }
    }

    async fn is_loaded(&self) -> bool {
        self.inner.state.read().await.is_some()
    }

    /// Loads the index now (a start that must answer from it at once, or
    /// the follower's first step). Does nothing when disabled.
    pub async fn load(&self, db: &PgPool) -> sqlx::Result<()> {
        if !self.inner.enabled || self.inner.overflow.load(Ordering::Relaxed) {
            return Ok(());
        }
        *self.inner.state.write().await = None;
        let started = Instant::now();
        let mut fields: [HashMap<String, RoaringBitmap>; 5] = Default::default();
        let mut overflow = false;
        let snapshot = facet_log::load(db, |field, value, docs| {
            let Some(field) = Field::parse(field) else {
                return;
            };
            let mut bitmap = RoaringBitmap::new();
            for doc in docs {
                match u32::try_from(doc) {
                    Ok(doc) => {
                        bitmap.insert(doc);
                    }
                    Err(_) => overflow = true,
                }
            }
            fields[field.slot()].insert(value.to_owned(), bitmap);
        })
        .await?;
        if overflow {
            self.overflowed();
            return Ok(());
        }
        let forward = Forward::build(&fields);
        let loaded = Loaded {
            snapshot,
            fields,
            forward,
        };
        let (values, postings, bytes) = loaded.size();
        tracing::info!(
            values,
            postings,
            mib = bytes as f64 / 1_048_576.0,
            seconds = started.elapsed().as_secs_f64(),
            "facet index loaded"
        );
        record_size(postings, bytes);
        *self.inner.state.write().await = Some(loaded);
        Ok(())
    }

    fn overflowed(&self) {
        tracing::warn!(
            "facet index off: a profile number exceeds 2^32; facet counts come from the database"
        );
        self.inner.overflow.store(true, Ordering::Relaxed);
    }

    /// The `limit` most common case-folded values of `field` among the
    /// profiles carrying every `(field, value)` of `filters`, counted at a
    /// snapshot taken now; `None` when the index cannot answer (disabled,
    /// not loaded yet, or loading again): ask the database.
    pub async fn top(
        &self,
        db: &PgPool,
        field: Field,
        filters: &[(Field, &str)],
        limit: usize,
    ) -> sqlx::Result<Option<Vec<Count>>> {
        self.read(db, filters, |loaded, filters| {
            loaded.top(field, filters, limit)
        })
        .await
    }

    /// The numbers (`profiles.doc`) of the profiles carrying every
    /// `(field, value)` of `filters` (two or more), at a snapshot taken now,
    /// when reading them costs fewer index probes than the database's walk
    /// for a page of `page` profiles: that walk reads the rarest value's
    /// postings newest first, probing each for the other values, until a
    /// page matches (about `page * rarest / matches` rows, a probe per
    /// other filter each); reading by number is a probe per match. `None`
    /// when the walk is cheaper or the index cannot answer.
    pub async fn matching(
        &self,
        db: &PgPool,
        filters: &[(Field, &str)],
        page: u64,
    ) -> sqlx::Result<Option<Vec<i64>>> {
        let read = self.read(db, filters, |loaded, filters| {
            let m = loaded.matching(filters)?;
            let rarest = filters
                .iter()
                .map(|(f, v)| {
                    loaded.fields[f.slot()]
                        .get(*v)
                        .map_or(0, RoaringBitmap::len)
                })
                .min()
                .unwrap_or(0);
            let others = filters.len().saturating_sub(1) as u64;
            let walk = page * others * rarest / m.len().max(1);
            (m.len() <= MAX_READ_BY_NUMBER && m.len() <= walk)
                .then(|| m.iter().map(i64::from).collect())
        });
        Ok(read.await?.flatten())
    }

    /// Brings the index to a snapshot taken now and runs `read` on it,
    /// with the filters' values case-folded by the database; `None` when
    /// it is not loaded or must be loaded again.
    async fn read<T>(
        &self,
        db: &PgPool,
        filters: &[(Field, &str)],
        read: impl FnOnce(&Loaded, &[(Field, &str)]) -> T,
    ) -> sqlx::Result<Option<T>> {
        let values: Vec<&str> = filters.iter().map(|(_, v)| *v).collect();
        let mut state = self.inner.state.write().await;
        let Some(loaded) = state.as_mut() else {
            return Ok(None);
        };
        let mut changes = facet_log::changes(db, &loaded.snapshot, &values).await?;
        if changes.reload {
            *state = None;
            self.inner.reload.notify_one();
            return Ok(None);
        }
        let folded: Vec<(Field, String)> = filters
            .iter()
            .map(|(f, _)| *f)
            .zip(std::mem::take(&mut changes.lowered))
            .collect();
        if !loaded.apply(changes) {
            *state = None;
            drop(state);
            self.overflowed();
            return Ok(None);
        }
        let state = state.downgrade();
        let loaded = state.as_ref().expect("held since checked");
        let filters: Vec<(Field, &str)> = folded.iter().map(|(f, v)| (*f, v.as_str())).collect();
        Ok(Some(read(loaded, &filters)))
    }

    /// Reads the log every [`FOLLOW_EVERY`] (so that a request finds little
    /// to read), prunes it every [`PRUNE_EVERY`], and loads the index at
    /// start and whenever a reader finds the log incomplete.
    pub async fn run(self, db: PgPool, shutdown: CancellationToken) {
        if !self.inner.enabled {
            return;
        }
        let mut last_prune = Instant::now();
        loop {
            if self.inner.overflow.load(Ordering::Relaxed) {
                return;
            }
            if !self.is_loaded().await
                && let Err(e) = self.load(&db).await
            {
                tracing::warn!(error = %e, "facet index: load failed; counts come from the database");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = self.inner.reload.notified() => continue,
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.read(&db, &[], |_, _| ()).await {
                tracing::warn!(error = %e, "facet index: reading the log failed");
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                match facet_log::prune(&db).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "facet log pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "facet log: pruning failed"),
                }
                if let Some(loaded) = self.inner.state.read().await.as_ref() {
                    let (_, postings, bytes) = loaded.size();
                    record_size(postings, bytes);
                }
            }
        }
    }
}

fn record_size(postings: u64, bytes: usize) {
    metrics::gauge!("facet_index_postings").set(postings as f64);
    metrics::gauge!("facet_index_bytes").set(bytes as f64);
}

impl Loaded {
    /// Applies the log rows of `changes` and moves to its snapshot. A
    /// profile value's changes are summed first: the rows of one read come
    /// in no particular order, and only the net change of each is right.
    /// `false`: a profile number does not fit a bitmap.
    fn apply(&mut self, changes: Changes) -> bool {
        let mut net: HashMap<(usize, String, u32), i32> = HashMap::new();
        let rows = changes
            .docs
            .into_iter()
            .zip(changes.signs)
            .zip(changes.fields.into_iter().zip(changes.values));
        for ((doc, sign), (field, value)) in rows {
            let (Ok(doc), Some(field)) = (u32::try_from(doc), Field::parse(&field)) else {
                return false;
            };
            *net.entry((field.slot(), value, doc)).or_default() += i32::from(sign);
        }
        for ((slot, value, doc), n) in net {
            if n != 0
                && let Some(forward) = &mut self.forward
                && !forward.update(slot, &value, doc, n > 0)
            {
                self.forward = None;
            }
            let values = &mut self.fields[slot];
            if n > 0 {
                values.entry(value).or_default().insert(doc);
            } else if n < 0
                && let Some(bitmap) = values.get_mut(&value)
            {
                bitmap.remove(doc);
                if bitmap.is_empty() {
                    values.remove(&value);
                }
            }
        }
        if self.forward.as_ref().is_some_and(Forward::stale) {
            self.forward = Forward::build(&self.fields);
        }
        self.snapshot = changes.snapshot;
        true
    }

    fn top(&self, field: Field, filters: &[(Field, &str)], limit: usize) -> Vec<Count> {
        if limit == 0 {
            return Vec::new();
        }
        let matching = self.matching(filters);
        match (&matching, &self.forward) {
            (Some(m), _) if m.is_empty() => return Vec::new(),
            (Some(m), Some(forward)) if m.len() < FEW_MATCHES => {
                let mut counts = forward.count(field.slot(), m);
                counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                counts.truncate(limit);
                return counts
                    .into_iter()
                    .map(|(value, count)| Count {
                        value_lower: value.to_owned(),
                        count,
                    })
                    .collect();
            }
            _ => {}
        }
        // Values in order of their bitmap's size, an upper bound of their
        // count: once the smallest count kept beats the next bound, no
        // remaining value can enter the top.
        let mut values: Vec<(&String, &RoaringBitmap)> = self.fields[field.slot()].iter().collect();
        values.sort_unstable_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(b.0)));
        let mut top: Vec<Count> = Vec::with_capacity(limit + 1);
        for (value, bitmap) in values {
            if top.len() == limit && bitmap.len() < top[limit - 1].count {
                break;
            }
            let count = match &matching {
                None => bitmap.len(),
                Some(m) => m.intersection_len(bitmap),
            };
            if count == 0 {
                continue;
            }
            let at = top.partition_point(|c| {
                c.count > count || (c.count == count && c.value_lower.as_str() < value.as_str())
            });
            if at < limit {
                top.insert(
                    at,
                    Count {
                        value_lower: value.clone(),
                        count,
                    },
                );
                top.truncate(limit);
            }
        }
        top
    }

    /// The profiles carrying every filter's value: their bitmaps
    /// intersected, smallest first (`None`: no filter, every profile). A
    /// value nobody carries matches nothing.
    fn matching(&self, filters: &[(Field, &str)]) -> Option<RoaringBitmap> {
        let mut sets = Vec::with_capacity(filters.len());
        for (f, v) in filters {
            match self.fields[f.slot()].get(*v) {
                Some(b) => sets.push(b),
                None => return Some(RoaringBitmap::new()),
            }
        }
        sets.sort_by_key(|b| b.len());
        let (first, rest) = sets.split_first()?;
        let mut m = (*first).clone();
        for b in rest {
            m &= *b;
        }
        Some(m)
    }

    /// Values, postings and bytes (serialized bitmaps and keys).
    fn size(&self) -> (usize, u64, usize) {
        let mut out = (0, 0, 0);
        for (value, bitmap) in self.fields.iter().flat_map(|f| f.iter()) {
            out.0 += 1;
            out.1 += bitmap.len();
            out.2 += bitmap.serialized_size() + value.len();
        }
        out.2 += self.forward.as_ref().map_or(0, Forward::bytes);
        out
    }
}

/// The most matching profiles a search reads by number.
const MAX_READ_BY_NUMBER: u64 = 5_000;

/// Below this many matching profiles their values are read profile by
/// profile ([`Forward`]). Above, the bitmaps of few matches hold them as
/// sorted arrays, and roaring counts an overlap with another array by
/// merging both: its cost follows the larger, for every value of the
/// field (`intersection_len` was 86 % of a profile of such counts). Many
/// matches are held as bit maps, probed once per member of a value, and
/// the early stop leaves few values to count.
const FEW_MATCHES: u64 = 65_536;

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of `rows`, twice: counting few matches by profile, and
    /// on the bitmaps (as past 65,536 values).
    fn loaded(rows: &[(Field, &str, &[u32])]) -> [Loaded; 2] {
        let mut fields: [HashMap<String, RoaringBitmap>; 5] = Default::default();
        for (field, value, docs) in rows {
            fields[field.slot()].insert((*value).to_owned(), docs.iter().copied().collect());
        }
        let by_profile = Loaded {
            snapshot: String::new(),
            forward: Forward::build(&fields),
            fields: fields.clone(),
        };
        let on_bitmaps = Loaded {
            snapshot: String::new(),
            forward: None,
            fields,
        };
        [by_profile, on_bitmaps]
    }

    fn counts(top: &[Count]) -> Vec<(&str, u64)> {
        top.iter()
            .map(|c| (c.value_lower.as_str(), c.count))
            .collect()
    }

    #[test]
    fn the_top_is_exact_under_filters_and_breaks_ties_by_value() {
        for index in loaded(&[
            (Field::Brand, "nike", &[1, 2, 3, 4]),
            (Field::Brand, "adidas", &[2, 3, 5]),
            (Field::Brand, "puma", &[3, 4, 6]),
            (Field::Brand, "asics", &[7]),
            (Field::Interest, "running", &[2, 3, 4, 7]),
        ]) {
            let top = index.top(Field::Brand, &[(Field::Interest, "running")], 10);
            assert_eq!(
                counts(&top),
                [("nike", 3), ("adidas", 2), ("puma", 2), ("asics", 1)]
            );
            // The cut falls in a tie: the value first in order stays.
            let top = index.top(Field::Brand, &[(Field::Interest, "running")], 2);
            assert_eq!(counts(&top), [("nike", 3), ("adidas", 2)]);
            let top = index.top(Field::Brand, &[], 2);
            assert_eq!(counts(&top), [("nike", 4), ("adidas", 3)]);
            assert!(
                index
                    .top(Field::Brand, &[(Field::Interest, "chess")], 10)
                    .is_empty()
            );
        }
    }

    #[test]
    fn the_early_stop_by_bitmap_size_keeps_the_exact_top() {
        // Bitmap sizes (the bounds) rank d, a, b, c; the counts under the
        // filter rank a, c, d (2 each, by value) and b (0).
        for index in loaded(&[
            (Field::Brand, "d", &[1, 2, 9, 10]),
            (Field::Brand, "a", &[1, 2, 3]),
            (Field::Brand, "b", &[4, 5]),
            (Field::Brand, "c", &[1, 2]),
            (Field::Interest, "x", &[1, 2]),
        ]) {
            let under = [(Field::Interest, "x")];
            assert_eq!(counts(&index.top(Field::Brand, &under, 1)), [("a", 2)]);
            assert_eq!(
                counts(&index.top(Field::Brand, &under, 3)),
                [("a", 2), ("c", 2), ("d", 2)]
            );
        }
    }

    #[test]
    fn changes_apply_as_net_sums_whatever_their_order() {
        for mut index in loaded(&[(Field::Brand, "nike", &[1])]) {
            // Profile 1 lost nike and profile 2 gained it then lost it again,
            // in one read whose rows come in no particular order.
            let changes = || Changes {
                snapshot: "s2".into(),
                docs: vec![2, 1, 2, 3],
                signs: vec![-1, -1, 1, 1],
                fields: vec!["brand".into(); 4],
                values: vec!["nike".into(); 4],
                ..Changes::default()
            };
            assert!(index.apply(changes()));
            assert_eq!(counts(&index.top(Field::Brand, &[], 5)), [("nike", 1)]);
            let under = [(Field::Brand, "nike")];
            assert_eq!(counts(&index.top(Field::Brand, &under, 5)), [("nike", 1)]);
            assert!(index.fields[Field::Brand.slot()]["nike"].contains(3));
            assert_eq!(index.snapshot, "s2");
        }
    }
}
