//! Memory hints and hash multipliers shared by the hot loops of the
//! collector and the classifier.

/// Asks the CPU to bring the cache line holding `p` into the L1 cache, so
/// that a lookup issued a little later (a hash table's slot, found from a
/// key known early) does not wait on memory. No effect on the program's
/// state: a prefetch never faults, whatever `p` is.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of x86_64; PREFETCHT0 does not dereference
        // for the program and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A random odd 64-bit multiplier for multiply-shift hashing, different in
/// every call (from the standard library's randomly keyed SipHash). With a
/// public constant, addresses chosen to share a home slot (any sender on
/// the Internet chooses the source addresses that arrive in flow records)
/// turn linear probing quadratic; with a secret odd multiplier,
/// multiply-shift is universal (two given keys collide with probability
/// about 2 / slots). The collector's IPv4 dictionary switches to one when
/// it sees such probes.
pub fn random_odd_multiplier() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1
}

/// A hash map for the per-datagram lookups (exporter, export stream,
/// template): foldhash, several times cheaper than the standard SipHash
/// for these small keys, with a per-process random seed. Their keys are
/// bounded by configuration and limits (allowed exporters, streams and
/// templates per exporter), so a sender cannot grow them at will.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
