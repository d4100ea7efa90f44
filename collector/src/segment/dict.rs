//! The IPv4 address dictionary of the block encoder.
//!
//! A block of 16,384 flows has ~20,000 distinct IPv4 addresses, so the
//! dictionary is larger than the L1 cache and nearly every lookup misses
//! it; with a general hash map that was a third of the encoder's time,
//! spent waiting on two loads (control bytes, then the entry). Here a
//! lookup is one 8-byte slot (address and code together) found by linear
//! probing, and the encoder asks for the slots of a batch of records
//! ([`V4Dict::prefetch`]) before it looks them up, so that the misses
//! overlap instead of following each other.
//!
//! Inputs: IPv4 addresses (as `u32`) and the codes to give new ones.
//! Outputs: the code an address already has, or `None` after inserting.
//! Never: more than three quarters full (it doubles), a code of 0.

/// Slots at first: 32,768 (256 KiB), enough for a block of 16,384 flows
/// with 24,576 distinct addresses.
const INITIAL_SLOTS_LOG: u32 = 15;

/// Open addressing, linear probing, one `u64` per slot: address in the
/// high half, code in the low half; a code of 0 marks an empty slot.
pub(crate) struct V4Dict {
    slots: Vec<u64>,
    /// log2 of the slot count.
    bits: u32,
    len: usize,
}

impl Default for V4Dict {
    fn default() -> Self {
        V4Dict {
            slots: vec![0; 1 << INITIAL_SLOTS_LOG],
            bits: INITIAL_SLOTS_LOG,
            len: 0,
        }
    }
}

impl V4Dict {
    /// Fibonacci hashing: the top bits of the product spread neighbouring
    /// addresses (a subscriber pool) over the whole table.
    #[inline]
    fn home(&self, addr: u32) -> usize {
        (u64::from(addr).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    /// Asks the CPU to bring `addr`'s home slot into the cache; no effect
    /// on the contents.
    #[inline]
    pub(crate) fn prefetch(&self, addr: u32) {
        crate::mem::prefetch(self.slots.as_ptr().wrapping_add(self.home(addr)));
    }

    /// The code of `addr` if it is in the dictionary; else inserts it with
    /// `code` (not 0) and returns `None`.
    #[inline]
    pub(crate) fn get_or_insert(&mut self, addr: u32, code: u32) -> Option<u32> {
        debug_assert!(code != 0);
        let mask = self.slots.len() - 1;
        let mut i = self.home(addr);
        loop {
            let s = self.slots[i & mask];
            if s as u32 == 0 {
                break;
            }
            if (s >> 32) as u32 == addr {
                return Some(s as u32);
            }
            i += 1;
        }
        self.slots[i & mask] = u64::from(addr) << 32 | u64::from(code);
        self.len += 1;
        if self.len * 4 > self.slots.len() * 3 {
            self.grow();
        }
        None
    }

    fn grow(&mut self) {
        let old = std::mem::replace(&mut self.slots, vec![0; 2 << self.bits]);
        self.bits += 1;
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|&s| s as u32 != 0) {
            let mut i = self.home((s >> 32) as u32);
            while self.slots[i & mask] as u32 != 0 {
                i += 1;
            }
            self.slots[i & mask] = s;
        }
    }

    /// Empties the dictionary; it keeps its size.
    pub(crate) fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(0);
            self.len = 0;
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Against a `HashMap` over growth and clears: sequential pool
    /// addresses, random ones, address 0 and u32::MAX.
    #[test]
    fn agrees_with_a_hash_map() {
        let mut d = V4Dict::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3u32 {
            let mut m: HashMap<u32, u32> = HashMap::new();
            d.clear();
            // Round 1 grows the table past its first size.
            let n = [20_000, 70_000, 5_000][round as usize];
            for k in 0..n {
                let addr = match k % 4 {
                    0 => 0x0a00_0000 + (next() % 30_000) as u32,
                    1 => next() as u32,
                    2 => [0, u32::MAX][(k / 4 % 2) as usize],
                    _ => 0xc0a8_0000 + k,
                };
                d.prefetch(addr);
                let code = m.len() as u32 + 2;
                let want = m.get(&addr).copied();
                if want.is_none() {
                    m.insert(addr, code);
                }
                assert_eq!(
                    d.get_or_insert(addr, code),
                    want,
                    "round {round} addr {addr:#x}"
                );
            }
            assert_eq!(d.len(), m.len());
            for (&addr, &code) in &m {
                assert_eq!(d.get_or_insert(addr, u32::MAX), Some(code));
            }
        }
        assert!(d.bits > INITIAL_SLOTS_LOG);
    }
}
