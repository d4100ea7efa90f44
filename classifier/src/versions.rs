//! Every loaded version of the class lists, with its validity interval.
//!
//! A version is valid from the moment it was loaded until the next one.
//! Records are classified by the version valid at their first packet, so a
//! classifier catching up on old tier-1 data gives old records the lists
//! that were in force then, and re-rating can ask for any past answer.
//! Versions are kept in tier 2 (`class_versions`); this keeps the
//! recently used ones in memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::classes::ClassTable;

/// Versions kept built in memory at once (the current one is always kept).
pub const MAX_LOADED_VERSIONS: usize = 3;

#[derive(Debug)]
struct Version {
    id: i64,
    valid_from_ms: i64,
    table: Option<Arc<ClassTable>>,
    /// Class index in this version → global class id.
    global: Vec<u32>,
    last_used: u64,
}

/// The known versions, oldest first, and the global class-name ids that
/// tier-2 keys use (append-only: a name keeps its id for the process life).
#[derive(Debug, Default)]
pub struct ClassVersions {
    versions: Vec<Version>,
    names: Vec<String>,
    name_ix: HashMap<String, u32>,
    uses: u64,
    /// Version indices the current block needs (see [`Self::missing`]).
    pinned: std::ops::Range<usize>,
}

impl ClassVersions {
    pub fn new() -> ClassVersions {
        ClassVersions::default()
    }

    /// Registers a version (ids and start times increasing); `table` may be
    /// `None` for an old version not needed yet.
    pub fn push(&mut self, id: i64, valid_from_ms: i64, table: Option<Arc<ClassTable>>) {
        debug_assert!(
            self.versions
                .last()
                .is_none_or(|v| v.valid_from_ms <= valid_from_ms)
        );
        self.versions.push(Version {
            id,
            valid_from_ms,
            table: None,
            global: Vec::new(),
            last_used: 0,
        });
        if let Some(t) = table {
            let i = self.versions.len() - 1;
            self.install(i, t);
        }
    }

    fn install(&mut self, i: usize, t: Arc<ClassTable>) {
        let global = t.classes.iter().map(|c| self.intern(&c.name)).collect();
        let v = &mut self.versions[i];
        v.global = global;
        v.table = Some(t);
        self.uses += 1;
        v.last_used = self.uses;
        self.evict();
    }

    fn evict(&mut self) {
        let cur = self.versions.len().saturating_sub(1);
        let pinned = self.pinned.clone();
        while self.versions.iter().filter(|v| v.table.is_some()).count() > MAX_LOADED_VERSIONS {
            let victim = self
                .versions
                .iter()
                .enumerate()
                .filter(|(i, v)| v.table.is_some() && *i != cur && !pinned.contains(i))
                .min_by_key(|(_, v)| v.last_used)
                .map(|(i, _)| i);
            match victim {
                Some(i) => self.versions[i].table = None,
                None => break,
            }
        }
    }

    fn index_at(&self, t_ms: i64) -> usize {
        // The last version starting at or before t; before the first
        // version, the first one (lists older than kopek's memory).
        self.versions
            .partition_point(|v| v.valid_from_ms <= t_ms)
            .saturating_sub(1)
    }

    /// Ids of versions needed for times in `[min_ms, max_ms]` that are not
    /// built in memory: load them with [`Self::provide`] first.
    ///
    /// The versions of that range are pinned until the next call: loading
    /// one of them never evicts another (the cap may be exceeded by as many
    /// versions as one block's time range spans).
    pub fn missing(&mut self, min_ms: i64, max_ms: i64) -> Vec<i64> {
        if self.versions.is_empty() {
            return Vec::new();
        }
        let range = self.index_at(min_ms)..self.index_at(max_ms) + 1;
        self.pinned = range.clone();
        range
            .filter(|&i| self.versions[i].table.is_none())
            .map(|i| self.versions[i].id)
            .collect()
    }

    /// Whether every version needed for times in `[min_ms, max_ms]` is
    /// built in memory (then [`Self::at`] gives the right one for each).
    pub fn loaded(&self, min_ms: i64, max_ms: i64) -> bool {
        self.versions.is_empty()
            || self.versions[self.index_at(min_ms)..=self.index_at(max_ms)]
                .iter()
                .all(|v| v.table.is_some())
    }

    /// Supplies the built table of version `id`.
    pub fn provide(&mut self, id: i64, table: Arc<ClassTable>) {
        if let Some(i) = self.versions.iter().position(|v| v.id == id) {
            self.install(i, table);
        }
    }

    /// The version for time `t_ms`, and its class-index → global-id map.
    /// Call [`Self::missing`]/[`Self::provide`] for the time range first;
    /// a version not in memory falls back to the nearest newer one loaded.
    #[inline]
    pub fn at(&self, t_ms: i64) -> (&ClassTable, &[u32]) {
        let last = self.versions.len() - 1;
        let i = if t_ms >= self.versions[last].valid_from_ms {
            last
        } else {
            self.index_at(t_ms)
        };
        let v = self.versions[i..]
            .iter()
            .find(|v| v.table.is_some())
            .unwrap_or(&self.versions[last]);
        match &v.table {
            Some(t) => (t, &v.global),
            None => unreachable!("the current version is always loaded"),
        }
    }

    pub fn current(&self) -> Option<(i64, &ClassTable)> {
        let v = self.versions.last()?;
        Some((v.id, v.table.as_deref()?))
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Global class id → name.
    pub fn name(&self, global: u32) -> &str {
        &self.names[global as usize]
    }

    fn intern(&mut self, n: &str) -> u32 {
        if let Some(&i) = self.name_ix.get(n) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(n.to_string());
        self.name_ix.insert(n.to_string(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kopek_config::CountRule;

    fn table(local: &str) -> Arc<ClassTable> {
        Arc::new(ClassTable::build(
            vec![(
                "local".into(),
                CountRule::Both,
                vec![local.parse().unwrap()],
            )],
            "paid",
        ))
    }

    #[test]
    fn the_version_valid_at_the_record_time_answers() {
        let mut v = ClassVersions::new();
        v.push(1, 1_000, Some(table("10.0.0.0/8")));
        v.push(2, 5_000, Some(table("192.168.0.0/16")));
        let class_at = |v: &ClassVersions, a: &str, t| {
            let (t, g) = v.at(t);
            v.name(g[t.class_of(a.parse().unwrap()) as usize])
                .to_string()
        };
        assert_eq!(
            class_at(&v, "10.1.1.1", 0),
            "local",
            "before the first version"
        );
        assert_eq!(class_at(&v, "10.1.1.1", 4_999), "local");
        assert_eq!(class_at(&v, "10.1.1.1", 5_000), "paid");
        assert_eq!(class_at(&v, "192.168.1.1", 5_000), "local");
        for i in 3..=6 {
            v.push(i, i * 10_000, Some(table("172.16.0.0/12")));
        }
        // Six versions needed at once (a block spanning five reloads): all
        // get loaded, none evicts another while pinned.
        let need = v.missing(0, 100_000);
        assert_eq!(need, vec![1, 2, 3]);
        v.provide(1, table("10.0.0.0/8"));
        v.provide(2, table("192.168.0.0/16"));
        v.provide(3, table("172.16.0.0/12"));
        assert!(v.missing(0, 100_000).is_empty(), "pinned versions stay");
        assert_eq!(class_at(&v, "10.1.1.1", 2_000), "local");
        assert_eq!(class_at(&v, "192.168.1.1", 6_000), "local");
        // Once another range is asked for, the cap applies again.
        assert!(v.missing(60_000, 60_000).is_empty());
        v.provide(6, table("172.16.0.0/12"));
        assert!(!v.missing(0, 100_000).is_empty());
        assert_eq!(v.current().unwrap().0, 6);
    }
}
