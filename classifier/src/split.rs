//! Pro-rata splitting of a flow across the buckets it covers.
//!
//! A flow from `first_ms` to `last_ms` is taken to move its bytes evenly
//! over the half-open interval `[first_ms, last_ms)`. Each bucket gets
//! `floor(total × overlap / duration)`; the units left over go one each to
//! the buckets with the largest remainders (ties: the earlier bucket). The
//! parts are integers and always add up to the total.

/// Flows longer than this are implausible (exporters' active timeouts are
/// minutes); their start is moved up to `last_ms − MAX_FLOW_MS` so one
/// record can never spread over an unbounded number of buckets.
pub const MAX_FLOW_MS: i64 = 2 * 3_600_000;

/// Where a flow's bytes start once clamped to [`MAX_FLOW_MS`]: its first
/// bucket is the bucket of this time ([`cover`]).
#[inline]
pub fn counted_start(first_ms: i64, last_ms: i64) -> i64 {
    if last_ms.saturating_sub(first_ms) > MAX_FLOW_MS {
        last_ms - MAX_FLOW_MS
    } else {
        first_ms
    }
}

/// The bucket start containing `t_ms` (floor, also for negative times).
#[inline]
pub fn bucket_of(t_ms: i64, width_ms: i64) -> i64 {
    t_ms.div_euclid(width_ms) * width_ms
}

/// The last bucket found, so that the next record's (nearly always the
/// same one: records come in time order) costs a comparison instead of a
/// 64-bit division.
#[derive(Debug, Default, Clone, Copy)]
pub struct BucketHint(Option<(i64, i64)>);

impl BucketHint {
    /// [`bucket_of`], remembering the answer.
    #[inline]
    pub fn bucket_of(&mut self, t_ms: i64, width_ms: i64) -> i64 {
        if let Some((start, width)) = self.0
            && width == width_ms
            // 0 <= t - start < width, without overflow for any i64s.
            && (t_ms.wrapping_sub(start) as u64) < width as u64
        {
            return start;
        }
        let start = bucket_of(t_ms, width_ms);
        self.0 = Some((start, width_ms));
        start
    }
}

/// The buckets `[first_ms, last_ms)` covers, with each bucket's overlap in
/// ms, into `out` (cleared first). A flow with no duration lies in the
/// bucket of `first_ms`. Returns whether the flow was clamped to
/// [`MAX_FLOW_MS`].
pub fn cover(first_ms: i64, last_ms: i64, width_ms: i64, out: &mut Vec<(i64, i64)>) -> bool {
    cover_hinted(first_ms, last_ms, width_ms, &mut BucketHint::default(), out)
}

/// [`cover`] with the first bucket found through `hint`.
pub fn cover_hinted(
    first_ms: i64,
    last_ms: i64,
    width_ms: i64,
    hint: &mut BucketHint,
    out: &mut Vec<(i64, i64)>,
) -> bool {
    out.clear();
    let clamped = last_ms.saturating_sub(first_ms) > MAX_FLOW_MS;
    let first = counted_start(first_ms, last_ms);
    let mut b = hint.bucket_of(first, width_ms);
    if last_ms <= first {
        out.push((b, 0));
        return clamped;
    }
    while b < last_ms {
        let lo = first.max(b);
        let hi = last_ms.min(b + width_ms);
        out.push((b, hi - lo));
        b += width_ms;
    }
    clamped
}

/// The one bucket `[first_ms, last_ms)` lies in, when it lies in one and
/// is not clamped (most flows: shorter than a bucket, not across its end);
/// `None` otherwise, then ask [`cover_hinted`]. Same bucket as
/// [`cover_hinted`] gives, without building its list.
#[inline]
pub fn single_bucket(
    first_ms: i64,
    last_ms: i64,
    width_ms: i64,
    hint: &mut BucketHint,
) -> Option<i64> {
    let d = last_ms.saturating_sub(first_ms);
    if d > width_ms || d > MAX_FLOW_MS {
        return None;
    }
    let b = hint.bucket_of(first_ms, width_ms);
    (d <= 0 || last_ms.checked_sub(b).is_some_and(|e| e <= width_ms)).then_some(b)
}

/// Splits `total` by the overlaps of `cover` into `parts` (same order).
pub fn split(total: u64, cover: &[(i64, i64)], parts: &mut Vec<u64>) {
    parts.clear();
    match *cover {
        [_] => {
            parts.push(total);
            return;
        }
        [(_, o0), (_, o1)] if o0 > 0 && o1 > 0 => {
            // The common split (a flow across one boundary), with one
            // division: the second part is what the first leaves, and the
            // one unit left over (when the division has a remainder r)
            // goes to the first bucket iff r is at least the second's
            // remainder, d - r (ties: the earlier bucket).
            let d = (o0 + o1) as u64;
            let (q, r) = match total.checked_mul(o0 as u64) {
                Some(num) => (num / d, num % d),
                None => {
                    let num = u128::from(total) * o0 as u128;
                    ((num / d as u128) as u64, (num % d as u128) as u64)
                }
            };
            let first = q + u64::from(r > 0 && 2 * r >= d);
            parts.push(first);
            parts.push(total - first);
            return;
        }
        _ => {}
    }
    split_largest_remainder(total, cover, parts);
}

/// [`split`] for any cover: each part rounded down, then the units left
/// over one each by largest remainder.
fn split_largest_remainder(total: u64, cover: &[(i64, i64)], parts: &mut Vec<u64>) {
    let duration: u64 = cover.iter().map(|c| c.1 as u64).sum();
    // total × overlap fits in u64 for any flow under 2.5 TB at the longest
    // duration (2 h): then no 128-bit division (a library call) is needed.
    let mut given = 0u64;
    let mut rems_small = [(0u64, 0usize); 8];
    let mut rems_big: Vec<(u64, usize)> = Vec::new();
    let wide = total.checked_mul(duration).is_none();
    for (i, &(_, overlap)) in cover.iter().enumerate() {
        let (q, r) = if wide {
            let num = total as u128 * overlap as u128;
            (
                (num / duration as u128) as u64,
                (num % duration as u128) as u64,
            )
        } else {
            let num = total * overlap as u64;
            (num / duration, num % duration)
        };
        parts.push(q);
        given += q;
        if i < rems_small.len() {
            rems_small[i] = (r, i);
        } else {
            rems_big.push((r, i));
        }
    }
    let left = (total - given) as usize;
    if left == 0 {
        return;
    }
    // Largest remainder first; among equal remainders the earlier bucket.
    let n = cover.len();
    let order =
        |v: &mut [(u64, usize)]| v.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if n <= rems_small.len() {
        let rems = &mut rems_small[..n];
        order(rems);
        for &(_, i) in rems.iter().take(left) {
            parts[i] += 1;
        }
    } else {
        rems_big.extend_from_slice(&rems_small);
        order(&mut rems_big);
        for &(_, i) in rems_big.iter().take(left) {
            parts[i] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(total: u64, first: i64, last: i64, width: i64) -> Vec<(i64, u64)> {
        let mut c = Vec::new();
        cover(first, last, width, &mut c);
        let mut p = Vec::new();
        split(total, &c, &mut p);
        c.iter().map(|x| x.0).zip(p).collect()
    }

    /// (total, first, last, width, expected (bucket, part) list)
    type Case = (u64, i64, i64, i64, &'static [(i64, u64)]);

    #[test]
    fn table_of_splits() {
        let cases: &[Case] = &[
            (1000, 0, 0, 300, &[(0, 1000)]),
            (1000, 10, 290, 300, &[(0, 1000)]),
            (1000, 0, 600, 300, &[(0, 500), (300, 500)]),
            // 1/3 and 2/3 of 1000: 333.33 and 666.67; the larger remainder
            // (0.67 vs 0.33) goes to the second bucket.
            (1000, 200, 500, 300, &[(0, 333), (300, 667)]),
            // Equal remainders: the earlier bucket gets the unit.
            (1, 0, 600, 300, &[(0, 1), (300, 0)]),
            (3, 150, 750, 300, &[(0, 1), (300, 1), (600, 1)]),
            // Ends exactly on a boundary: no empty part after it.
            (10, 0, 300, 300, &[(0, 10)]),
            // Negative times floor correctly.
            (10, -150, 150, 300, &[(-300, 5), (0, 5)]),
        ];
        for (total, first, last, width, want) in cases {
            assert_eq!(
                parts(*total, *first, *last, *width),
                want.to_vec(),
                "{total} over {first}..{last} / {width}"
            );
        }
    }

    #[test]
    fn parts_always_add_up() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let width = [1_000, 60_000, 300_000][(next() % 3) as usize];
            let first = (next() % 10_000_000) as i64;
            let last = first + (next() % 3_000_000) as i64;
            let total = match next() % 4 {
                0 => next(),
                1 => next() % 10,
                _ => next() % 1_000_000_000,
            };
            let p = parts(total, first, last, width);
            assert_eq!(p.iter().map(|x| x.1 as u128).sum::<u128>(), total as u128);
            assert!(p.windows(2).all(|w| w[1].0 == w[0].0 + width));
        }
    }

    /// The one-division split of two buckets gives the general rule's
    /// parts: random overlaps (also 1 ms and equal ones) and totals (also
    /// ones whose product with the overlap needs 128 bits).
    #[test]
    fn two_bucket_split_is_the_largest_remainder_rule() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut fast, mut general) = (Vec::new(), Vec::new());
        for k in 0..200_000u64 {
            let o0 = match k % 5 {
                0 => 1,
                _ => 1 + (next() % 300_000) as i64,
            };
            let o1 = match k % 7 {
                0 => o0,
                1 => 1,
                _ => 1 + (next() % 300_000) as i64,
            };
            let total = match k % 4 {
                0 => next(),
                1 => next() % 10,
                2 => u64::MAX - next() % 3,
                _ => next() % 1_000_000_000,
            };
            let cover = [(0, o0), (300_000, o1)];
            split(total, &cover, &mut fast);
            general.clear();
            split_largest_remainder(total, &cover, &mut general);
            assert_eq!(fast, general, "{total} over {o0} + {o1}");
        }
    }

    #[test]
    fn implausible_flows_are_clamped() {
        let mut c = Vec::new();
        assert!(cover(0, 10 * 3_600_000, 300_000, &mut c));
        assert_eq!(c.len(), (MAX_FLOW_MS / 300_000) as usize);
        assert_eq!(c[0].0, 8 * 3_600_000);
    }

    /// A remembered bucket never changes an answer: random times (also
    /// negative and far apart), in and out of order, and a width change;
    /// [`single_bucket`] says "one bucket" exactly when the list has one.
    #[test]
    fn the_bucket_hint_gives_the_divisions_answer() {
        let mut hint = BucketHint::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let (mut c1, mut c2) = (Vec::new(), Vec::new());
        let mut singles = 0;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let width = if i < 100_000 { 300_000 } else { 60_000 };
            let first = match i % 4 {
                0 => (x as i64) >> (x % 60),
                1 => 1_700_000_000_000 + (i as i64) * 37,
                2 => -(i as i64) * 1_000,
                _ => i64::MIN / 2 + (x % 1_000_000) as i64,
            };
            let last = first.saturating_add((x % 900_000) as i64);
            let a = cover(first, last, width, &mut c1);
            let b = cover_hinted(first, last, width, &mut hint, &mut c2);
            assert_eq!(
                (a, &c1),
                (b, &c2),
                "first {first} last {last} width {width}"
            );
            let one = (!a && c1.len() == 1).then_some(c1[0].0);
            assert_eq!(one, single_bucket(first, last, width, &mut hint));
            singles += usize::from(one.is_some());
        }
        assert!(
            (10_000..190_000).contains(&singles),
            "both kinds: {singles}"
        );
        // Right at a bucket's end: still one bucket; one ms more, two.
        let mut h = BucketHint::default();
        assert_eq!(single_bucket(1_000, 300_000, 300_000, &mut h), Some(0));
        assert_eq!(single_bucket(1_000, 300_001, 300_000, &mut h), None);
        assert_eq!(single_bucket(-1, -1, 300_000, &mut h), Some(-300_000));
        assert_eq!(
            BucketHint(Some((i64::MIN + 10, 300_000))).bucket_of(i64::MAX - 5, 300_000),
            bucket_of(i64::MAX - 5, 300_000)
        );
    }
}
