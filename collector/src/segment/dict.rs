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
    /// The hash multiplier: [`FIBONACCI`] until an insert probes past
    /// [`MAX_PROBE`] slots, then a secret random one.
    mul: u64,
}

/// 2^64 / φ, odd: multiply-shift with it spreads runs of neighbouring
/// addresses (a subscriber pool) most evenly over the table.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// Longest probe an insert may take before the table is rebuilt with a
/// secret multiplier. Ordinary traffic at most three quarters full stays
/// far below it; addresses chosen to collide under the public constant
/// (whoever sends packets chooses their source address) reach it fast,
/// and after the rebuild they spread like any others: multiply-shift with
/// a random odd multiplier is universal.
const MAX_PROBE: usize = 128;

impl Default for V4Dict {
    fn default() -> Self {
        V4Dict {
            slots: vec![0; 1 << INITIAL_SLOTS_LOG],
            bits: INITIAL_SLOTS_LOG,
            len: 0,
            mul: FIBONACCI,
        }
    }
}

impl V4Dict {
    /// Multiply-shift hashing: the top bits of the product spread
    /// neighbouring addresses (a subscriber pool) over the whole table.
    #[inline]
    fn home(&self, addr: u32) -> usize {
        (u64::from(addr).wrapping_mul(self.mul) >> (64 - self.bits)) as usize
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
        let home = self.home(addr);
        let mut i = home;
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
            self.rebuild(1, self.mul);
        } else if i - home > MAX_PROBE {
            self.rebuild(0, crate::mem::random_odd_multiplier());
        }
        None
    }

    /// Moves every entry into a table `2^more` times as large, hashed
    /// with `mul`.
    #[cold]
    fn rebuild(&mut self, more: u32, mul: u64) {
        let old = std::mem::replace(&mut self.slots, vec![0; 1 << (self.bits + more)]);
        self.bits += more;
        self.mul = mul;
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

    /// The longest run of occupied slots: no lookup probes further.
    #[cfg(test)]
    fn longest_run(&self) -> usize {
        let (mut run, mut longest) = (0, 0);
        // Twice around, for a run that wraps past the end.
        for &s in self.slots.iter().chain(&self.slots) {
            run = if s as u32 == 0 { 0 } else { run + 1 };
            longest = longest.max(run);
        }
        longest.min(self.slots.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Addresses chosen so that a public multiplier (the Fibonacci
    /// constant this table once used) sends all 16,384 to its first 64
    /// home slots: one probe run of the whole block, every insert walking
    /// it. Whoever sends packets with such source addresses could do that
    /// to the collector; with the table's secret multiplier they spread.
    #[test]
    fn chosen_addresses_do_not_pile_up() {
        const PUBLIC: u64 = FIBONACCI;
        let crafted: Vec<u32> = (0u32..)
            .filter(|&a| (u64::from(a).wrapping_mul(PUBLIC) >> (64 - INITIAL_SLOTS_LOG)) < 64)
            .take(16_384)
            .collect();
        let fill = |d: &mut V4Dict| {
            for (k, &a) in crafted.iter().enumerate() {
                assert_eq!(d.get_or_insert(a, k as u32 + 2), None);
            }
            assert_eq!(d.len(), crafted.len());
            d.longest_run()
        };
        // What the table did before it watched its probes.
        let mut public = V4Dict::default();
        for (k, &a) in crafted.iter().enumerate() {
            let mask = public.slots.len() - 1;
            let mut i = public.home(a);
            while public.slots[i & mask] as u32 != 0 {
                i += 1;
            }
            public.slots[i & mask] = u64::from(a) << 32 | (k as u64 + 2);
        }
        assert!(
            public.longest_run() >= 16_000,
            "the attack works on a public multiplier"
        );
        // The table notices the long probes and rebuilds itself with a
        // secret multiplier, each time another.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut d = V4Dict::default();
            let run = fill(&mut d);
            assert!(run < 400, "longest probe run {run}");
            assert_ne!(d.mul, PUBLIC);
            seen.push(d.mul);
            for (k, &a) in crafted.iter().enumerate() {
                assert_eq!(d.get_or_insert(a, 1), Some(k as u32 + 2));
            }
        }
        seen.dedup();
        assert_eq!(seen.len(), 3);
        // Ordinary addresses (a pool, then scattered ones) keep the
        // public multiplier: it spreads them best.
        let mut d = V4Dict::default();
        for a in
            (0x0a00_0000..0x0a00_4000).chain((0..8_000u32).map(|k| k.wrapping_mul(0x9e37_79b1)))
        {
            d.get_or_insert(a, 2);
        }
        assert_eq!(d.mul, PUBLIC);
    }

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
