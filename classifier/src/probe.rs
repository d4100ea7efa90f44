//! A hash map from `u64` keys whose slot can be prefetched.
//!
//! The classifier's per-record tables are megabytes: a batch's per-account
//! sums (~100,000 of them), the host bindings of every subscriber. With a
//! general hash map nearly every access there missed the cache twice
//! (control bytes, then the entry), one record after another. Here an
//! entry is one 32-byte slot (key and value; two per cache line) found by
//! linear probing from a multiplicative hash, and a caller that learns
//! keys before it needs their values asks for their slots first
//! ([`ProbeMap::prefetch`]), so that the misses overlap.
//!
//! Inputs: keys other than [`EMPTY`], values up to 24 bytes.
//! Never: more than three quarters full (it doubles); removal (the tables
//! only grow until cleared).

/// The key of an empty slot, never stored.
pub const EMPTY: u64 = u64::MAX;

/// Slots at first: 16,384 (512 KiB).
const INITIAL_SLOTS_LOG: u32 = 14;

#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot<V> {
    key: u64,
    value: V,
}

#[derive(Debug, Clone)]
pub struct ProbeMap<V> {
    slots: Vec<Slot<V>>,
    /// log2 of the slot count.
    bits: u32,
    len: usize,
}

impl<V: Copy + Default> Default for ProbeMap<V> {
    fn default() -> Self {
        ProbeMap {
            slots: Self::empty_slots(INITIAL_SLOTS_LOG),
            bits: INITIAL_SLOTS_LOG,
            len: 0,
        }
    }
}

impl<V: Copy + Default> ProbeMap<V> {
    fn empty_slots(bits: u32) -> Vec<Slot<V>> {
        vec![
            Slot {
                key: EMPTY,
                value: V::default(),
            };
            1 << bits
        ]
    }

    /// Fibonacci hashing: the top bits of the product depend on every bit
    /// of the key (neighbouring addresses and accounts land far apart).
    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    /// Asks the CPU to bring `key`'s home slot and the cache line after
    /// it into the cache (a probe that starts near the end of a line, or
    /// an insertion at three quarters full, goes on into the next); no
    /// effect on the contents.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        let home = self.slots.as_ptr().wrapping_add(self.home(key));
        kopek_collector::mem::prefetch(home);
        // Two 32-byte slots to a line: two slots on is the next line.
        kopek_collector::mem::prefetch(home.wrapping_add(2));
    }

    /// The slot index holding `key`, or the empty one where it would go.
    #[inline]
    fn find(&self, key: u64) -> usize {
        debug_assert!(key != EMPTY);
        let mask = self.slots.len() - 1;
        let mut i = self.home(key) & mask;
        loop {
            let k = self.slots[i].key;
            if k == key || k == EMPTY {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<&V> {
        let s = &self.slots[self.find(key)];
        (s.key == key).then_some(&s.value)
    }

    /// The value of `key`, inserted as `V::default()` if absent.
    #[inline]
    pub fn entry(&mut self, key: u64) -> &mut V {
        let mut i = self.find(key);
        if self.slots[i].key == EMPTY {
            if (self.len + 1) * 4 > self.slots.len() * 3 {
                self.grow();
                i = self.find(key);
            }
            self.slots[i].key = key;
            self.len += 1;
        }
        &mut self.slots[i].value
    }

    pub fn insert(&mut self, key: u64, value: V) {
        *self.entry(key) = value;
    }

    fn grow(&mut self) {
        let old = std::mem::replace(&mut self.slots, Self::empty_slots(self.bits + 1));
        self.bits += 1;
        for s in old.into_iter().filter(|s| s.key != EMPTY) {
            let i = self.find(s.key);
            self.slots[i] = s;
        }
    }

    /// Every key and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots
            .iter()
            .filter(|s| s.key != EMPTY)
            .map(|s| (s.key, &s.value))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the map; it keeps its size.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(Slot {
                key: EMPTY,
                value: V::default(),
            });
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Against a `HashMap` over growth and clears: keys of neighbouring
    /// accounts and combos, random keys, 0 and the largest storable key;
    /// lookups of absent keys.
    #[test]
    fn agrees_with_a_hash_map() {
        let mut t: ProbeMap<(u64, u32)> = ProbeMap::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3u64 {
            let mut m: HashMap<u64, (u64, u32)> = HashMap::new();
            t.clear();
            assert!(t.is_empty());
            // Round 1 grows the map past its first size.
            let n = [30_000, 200_000, 4_000][round as usize];
            for k in 0..n {
                let key = match k % 4 {
                    0 => (next() % 10_000) << 32 | (next() % 40),
                    1 => next() % EMPTY,
                    2 => [0, EMPTY - 1][(k / 4 % 2) as usize],
                    _ => k << 32 | round,
                };
                let add = next() % 1500;
                t.prefetch(key);
                if k % 3 == 0 {
                    assert_eq!(t.get(key), m.get(&key));
                }
                let v = t.entry(key);
                v.0 += add;
                v.1 += 1;
                let w = m.entry(key).or_default();
                w.0 += add;
                w.1 += 1;
            }
            assert_eq!(t.len(), m.len());
            let got: HashMap<u64, (u64, u32)> = t.iter().map(|(k, v)| (k, *v)).collect();
            assert_eq!(got, m, "round {round}");
            for _ in 0..1000 {
                let key = next() % EMPTY;
                assert_eq!(t.get(key), m.get(&key));
            }
        }
        assert!(t.bits > INITIAL_SLOTS_LOG);
    }
}
