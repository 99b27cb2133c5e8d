//! Scoring: the expected cost, latency and quality of sending this request to each
//! candidate, and the ordering each policy derives from them. Pure functions; scores
//! compare only within one plan.

use std::cmp::Ordering;

use super::policy::{Policy, Weights};

/// The terms a policy weighs for one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    /// Expected cost of this request in nano-dollars; `None` when the price is unknown.
    pub cost_nanos: Option<u64>,
    /// Expected latency of the whole reply, in milliseconds.
    pub latency_ms: f64,
    /// Quality prior for the request's task, 0–100.
    pub quality: f64,
    /// Calls in flight on this backend (for power-of-two-choices).
    pub in_flight: i64,
}

impl Terms {
    fn cost(&self) -> f64 {
        self.cost_nanos.map(|c| c as f64).unwrap_or(f64::INFINITY)
    }
}

/// True when `a` is at least as good as `b` on every term `policy` weighs and better on one.
pub fn dominates(policy: Policy, a: &Terms, b: &Terms) -> bool {
    let (ac, bc) = (a.cost(), b.cost());
    let terms: &[(f64, f64)] = match policy {
        // Lower is better for cost and latency; quality is negated so lower is better too.
        Policy::Cheapest | Policy::CheapestAboveQuality => &[(ac, bc)],
        Policy::Fastest => &[(a.latency_ms, b.latency_ms)],
        Policy::Quality => &[(-a.quality, -b.quality)],
        Policy::Balanced => &[
            (ac, bc),
            (a.latency_ms, b.latency_ms),
            (-a.quality, -b.quality),
        ],
    };
    terms.iter().all(|(x, y)| x <= y) && terms.iter().any(|(x, y)| x < y)
}

/// Nano-dollars per call in the `balanced` utility's cost unit, dollars per 1,000 calls.
const NANOS_PER_USD_PER_1K_CALLS: f64 = 1e6;

/// The balanced utility of each candidate, in absolute units, so the size of a gap
/// counts: `w.quality × quality (0–100 points) − w.cost × expected cost (USD per 1,000
/// such calls) − w.latency × expected latency (seconds)`. A candidate's utility depends
/// on its own terms only, except that an unknown cost counts as the highest known cost
/// in `all` (0 when none is known).
pub fn utilities(all: &[Terms], w: &Weights) -> Vec<f64> {
    let worst = all.iter().filter_map(|t| t.cost_nanos).max().unwrap_or(0);
    all.iter().map(|t| utility(t, worst, w)).collect()
}

/// One candidate's balanced utility (see `utilities`), its unknown cost counted as
/// `worst` nano-dollars.
pub fn utility(t: &Terms, worst: u64, w: &Weights) -> f64 {
    let cost = t.cost_nanos.unwrap_or(worst) as f64 / NANOS_PER_USD_PER_1K_CALLS;
    w.quality * t.quality - w.cost * cost - w.latency * t.latency_ms / 1000.0
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// The order in which to try the candidates under `policy`, best first. Under
/// `cheapest-above-quality`, the candidates whose quality reaches `floor` come first,
/// cheapest first and, at equal cost, best quality first; then the rest, best quality
/// first and, at equal quality, cheapest first (so when none reaches the floor, the best
/// predicted one is chosen). Exact ties on the policy's terms (for
/// `cheapest-above-quality`, on cost and quality both; for `balanced`, utilities within
/// 1% that no other such candidate dominates) are broken by power-of-two-choices on
/// in-flight load, with `coin` as the random draw, so tests can pin it.
pub fn order(
    policy: Policy,
    all: &[Terms],
    w: &Weights,
    floor: Option<f64>,
    coin: impl FnMut(usize) -> usize,
) -> Vec<usize> {
    order_by(policy, all, &utilities(all, w), w, floor, coin)
}

/// `order`, given `utilities(all, w)` (a plan computes them once for both).
pub fn order_by(
    policy: Policy,
    all: &[Terms],
    utility: &[f64],
    w: &Weights,
    floor: Option<f64>,
    coin: impl FnMut(usize) -> usize,
) -> Vec<usize> {
    let key = |i: usize| sort_key(policy, &all[i], utility[i], floor);
    let ties = |i: usize, best: usize, same: &dyn Fn(usize) -> bool| {
        ties_with_best(policy, w, utility[i], utility[best], same)
    };
    // Equal keys keep the plan's order: the index is the last term (what a stable sort
    // gives, without its buffer). Keys are compared as integers unless a term is NaN.
    let mut keyed: Vec<([u64; 4], usize)> = Vec::with_capacity(all.len());
    for i in 0..all.len() {
        match ordered_key(&key(i)) {
            Some(k) => keyed.push((k, i)),
            None => break,
        }
    }
    let keyed = Some(keyed).filter(|k| k.len() == all.len());
    let (mut idx, leaders) = match keyed {
        Some(mut keyed) => {
            keyed.sort_unstable_by(cmp_keyed);
            let idx: Vec<usize> = keyed.iter().map(|&(_, i)| i).collect();
            let leaders = keyed.first().map_or(0, |&(best_key, best)| {
                keyed
                    .iter()
                    .take_while(|(k, i)| ties(*i, best, &|n| k[..n] == best_key[..n]))
                    .count()
            });
            (idx, leaders)
        }
        None => {
            let keys: Vec<[f64; 4]> = (0..all.len()).map(key).collect();
            let mut idx: Vec<usize> = (0..all.len()).collect();
            idx.sort_unstable_by(|&a, &b| cmp_keys(&keys[a], &keys[b]).then(a.cmp(&b)));
            let leaders = idx.first().map_or(0, |&best| {
                idx.iter()
                    .take_while(|&&i| {
                        ties(i, best, &|n| same_floats(&keys[i][..n], &keys[best][..n]))
                    })
                    .count()
            });
            (idx, leaders)
        }
    };
    pick_among_leaders(policy, &mut idx, leaders, all, coin);
    idx
}

/// With two or more near-equal leaders (a prefix of the order: same primary term,
/// balanced: within 1% of the weight sum; any candidate dominating a leader is itself
/// a leader, so dominance is checked among them), moves the one power-of-two-choices
/// picks to the front.
fn pick_among_leaders(
    policy: Policy,
    idx: &mut [usize],
    leaders: usize,
    all: &[Terms],
    coin: impl FnMut(usize) -> usize,
) {
    if leaders >= 2 {
        let pick = power_of_two(policy, &idx[..leaders], all, coin);
        if let Some(at) = idx[..leaders].iter().position(|&i| i == pick) {
            idx[..=at].rotate_right(1);
        }
    }
}

/// The order of `([u64; 4], usize)` (what `Ord` derives: term by term, then the
/// index), compared one integer after another rather than through the slice
/// comparison `Ord` for arrays goes through.
fn cmp_keyed(a: &([u64; 4], usize), b: &([u64; 4], usize)) -> Ordering {
    let ((x, i), (y, j)) = (a, b);
    x[0].cmp(&y[0])
        .then_with(|| x[1].cmp(&y[1]))
        .then_with(|| x[2].cmp(&y[2]))
        .then_with(|| x[3].cmp(&y[3]))
        .then_with(|| i.cmp(j))
}

/// An order-preserving integer for each term of `key` (`-0` as `0`), or `None` if one
/// is NaN: integers compare in one instruction, floats through `partial_cmp`.
fn ordered_key(key: &[f64; 4]) -> Option<[u64; 4]> {
    let mut out = [0; 4];
    for (o, x) in out.iter_mut().zip(key) {
        if x.is_nan() {
            return None;
        }
        let bits = (x + 0.0).to_bits();
        *o = if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        };
    }
    Some(out)
}

/// A candidate's sort key under `policy`, compared term by term, lowest first;
/// three-term keys end in a constant 0.
fn sort_key(policy: Policy, t: &Terms, utility: f64, floor: Option<f64>) -> [f64; 4] {
    match policy {
        Policy::Cheapest => [t.cost(), t.latency_ms, -t.quality, 0.0],
        Policy::CheapestAboveQuality => {
            if floor.is_some_and(|f| t.quality < f) {
                [1.0, -t.quality, t.cost(), t.latency_ms]
            } else {
                [0.0, t.cost(), -t.quality, t.latency_ms]
            }
        }
        Policy::Fastest => [t.latency_ms, t.cost(), -t.quality, 0.0],
        Policy::Quality => [-t.quality, t.cost(), t.latency_ms, 0.0],
        Policy::Balanced => [-utility, t.cost(), t.latency_ms, 0.0],
    }
}

/// Whether a candidate (its utility, and `same(n)`: whether its sort key's first `n`
/// terms are the best one's) is among the near-equal leaders with the best one: same
/// primary term (balanced: utility within 1% of the weight sum).
fn ties_with_best(
    policy: Policy,
    w: &Weights,
    utility: f64,
    best_utility: f64,
    same: &dyn Fn(usize) -> bool,
) -> bool {
    match policy {
        Policy::Balanced => best_utility - utility <= 0.01 * (w.cost + w.latency + w.quality),
        // The floor group, then cost and quality (in the group's order): an equal cost
        // is decided by quality, an equal quality by cost, before any draw.
        Policy::CheapestAboveQuality => same(3),
        _ => same(1),
    }
}

/// Whether the float terms `a` and `b` are the same: one term compares as `cmp_f64`
/// does (NaN equal to anything), several as `==` does.
fn same_floats(a: &[f64], b: &[f64]) -> bool {
    match (a, b) {
        ([x], [y]) => cmp_f64(*x, *y).is_eq(),
        _ => a == b,
    }
}

/// Lexicographic order of two sort keys (a NaN term compares equal).
fn cmp_keys(a: &[f64; 4], b: &[f64; 4]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = cmp_f64(*x, *y);
        if o.is_ne() {
            return o;
        }
    }
    Ordering::Equal
}

/// Walks from `i` to a leader nobody dominates (dominance is acyclic, so this ends).
fn undominated(policy: Policy, mut i: usize, leaders: &[usize], all: &[Terms]) -> usize {
    while let Some(&j) = leaders
        .iter()
        .find(|&&j| dominates(policy, &all[j], &all[i]))
    {
        i = j;
    }
    i
}

/// Power-of-two-choices: draw two leaders (moved up to one nobody dominates), keep the
/// one with fewer calls in flight.
fn power_of_two(
    policy: Policy,
    leaders: &[usize],
    all: &[Terms],
    mut draw: impl FnMut(usize) -> usize,
) -> usize {
    let a = undominated(
        policy,
        leaders[draw(leaders.len()) % leaders.len()],
        leaders,
        all,
    );
    let mut b = undominated(
        policy,
        leaders[draw(leaders.len()) % leaders.len()],
        leaders,
        all,
    );
    if a == b {
        let next = leaders[(leaders.iter().position(|&x| x == a).unwrap_or(0) + 1) % leaders.len()];
        b = undominated(policy, next, leaders, all);
    }
    if all[b].in_flight < all[a].in_flight {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(cost: u64, latency: f64, quality: f64) -> Terms {
        Terms {
            cost_nanos: Some(cost),
            latency_ms: latency,
            quality,
            in_flight: 0,
        }
    }

    #[test]
    fn each_policy_picks_its_best() {
        let all = [t(100, 900.0, 90.0), t(10, 400.0, 60.0), t(50, 150.0, 70.0)];
        let w = Weights::default();
        assert_eq!(order(Policy::Cheapest, &all, &w, None, |_| 0)[0], 1);
        assert_eq!(order(Policy::Fastest, &all, &w, None, |_| 0)[0], 2);
        assert_eq!(order(Policy::Quality, &all, &w, None, |_| 0)[0], 0);
        let ordered = order(Policy::Balanced, &all, &w, None, |_| 0);
        assert_eq!(ordered.len(), 3);
    }

    #[test]
    fn unknown_cost_ranks_last_for_cheapest() {
        let mut unknown = t(0, 1.0, 99.0);
        unknown.cost_nanos = None;
        let all = [unknown, t(1_000_000, 500.0, 50.0)];
        assert_eq!(
            order(Policy::Cheapest, &all, &Weights::default(), None, |_| 0),
            [1, 0]
        );
    }

    #[test]
    fn equal_candidates_balance_on_load() {
        let mut a = t(10, 100.0, 50.0);
        let mut b = t(10, 100.0, 50.0);
        a.in_flight = 5;
        b.in_flight = 1;
        let mut draws = [0usize, 1].into_iter();
        assert_eq!(
            order(Policy::Cheapest, &[a, b], &Weights::default(), None, |_| {
                draws.next().unwrap_or(0)
            })[0],
            1
        );
    }

    #[test]
    fn cheapest_above_quality_falls_back_to_the_best_below_the_floor() {
        let all = [t(100, 900.0, 90.0), t(10, 400.0, 60.0), t(50, 150.0, 70.0)];
        let w = Weights::default();
        let caq = Policy::CheapestAboveQuality;
        assert_eq!(order(caq, &all, &w, Some(65.0), |_| 0), [2, 0, 1]);
        assert_eq!(order(caq, &all, &w, Some(59.5), |_| 0)[0], 1);
        // None reaches 95: the best predicted quality first, then the next best.
        assert_eq!(order(caq, &all, &w, Some(95.0), |_| 0), [0, 2, 1]);
    }

    #[test]
    fn issue_17_equal_cost_goes_to_the_better_predicted_before_the_draw() {
        // RouterBench's claude-v1 and claude-v2 cost the same; v1 is predicted better.
        let v2 = t(8_000, 900.0, 54.4);
        let v1 = t(8_000, 950.0, 72.2);
        let instant = t(800, 400.0, 66.9);
        let gpt4 = t(10_000, 800.0, 88.0);
        let all = [v2, v1, instant, gpt4];
        let w = Weights::default();
        let caq = Policy::CheapestAboveQuality;
        for draw in 0..4 {
            // All reach 50: instant (cheapest), then v1 before v2 at equal cost, then GPT-4.
            assert_eq!(order(caq, &all, &w, Some(50.0), |_| draw), [2, 1, 0, 3]);
            // Only v2 misses 60: it comes after everyone who reaches the floor.
            assert_eq!(order(caq, &all, &w, Some(60.0), |_| draw), [2, 1, 3, 0]);
            // v1 and v2 alone, in either order.
            assert_eq!(order(caq, &[v2, v1], &w, Some(0.0), |_| draw), [1, 0]);
            assert_eq!(order(caq, &[v1, v2], &w, Some(0.0), |_| draw), [0, 1]);
            // None reaches 90: at equal predicted quality, the cheaper one first.
            let dear = t(5_000, 500.0, 40.0);
            let cheap = t(1_000, 500.0, 40.0);
            assert_eq!(order(caq, &[dear, cheap], &w, Some(90.0), |_| draw), [1, 0]);
        }
        // Equal cost and equal quality (one model on two providers): the draw decides.
        // Sorted, the faster one (index 1) leads; power-of-two-choices keeps the first
        // of its two draws when loads are equal.
        let slow = t(8_000, 900.0, 72.2);
        let fast = t(8_000, 500.0, 72.2);
        let pick = |draws: [usize; 2]| {
            let mut d = draws.into_iter();
            order(caq, &[slow, fast], &w, Some(50.0), |_| {
                d.next().unwrap_or(0)
            })
        };
        assert_eq!(pick([0, 1]), [1, 0]);
        assert_eq!(pick([1, 0]), [0, 1]);
    }

    /// The order as first written: a stable sort of the keys, the leaders collected into
    /// a vector, the pick removed and inserted in front.
    fn stable_order(
        policy: Policy,
        all: &[Terms],
        w: &Weights,
        floor: Option<f64>,
        coin: impl FnMut(usize) -> usize,
    ) -> Vec<usize> {
        let u = utilities(all, w);
        let key = |i: usize| sort_key(policy, &all[i], u[i], floor);
        let mut idx: Vec<usize> = (0..all.len()).collect();
        idx.sort_by(|&a, &b| cmp_keys(&key(a), &key(b)));
        let Some(&best) = idx.first() else {
            return idx;
        };
        let leaders: Vec<usize> = idx
            .iter()
            .copied()
            .take_while(|&i| {
                ties_with_best(policy, w, u[i], u[best], &|n| {
                    same_floats(&key(i)[..n], &key(best)[..n])
                })
            })
            .collect();
        if leaders.len() >= 2 {
            let pick = power_of_two(policy, &leaders, all, coin);
            idx.retain(|&i| i != pick);
            idx.insert(0, pick);
        }
        idx
    }

    fn terms() -> impl Strategy<Value = Terms> {
        (
            proptest::option::weighted(0.9, 0u64..1_000_000),
            1.0f64..10_000.0,
            0.0f64..100.0,
            0i64..10,
        )
            .prop_map(|(cost_nanos, latency_ms, quality, in_flight)| Terms {
                cost_nanos,
                latency_ms,
                quality,
                in_flight,
            })
    }

    /// The chance (over the power-of-two draw) that `order` puts candidate `i` first
    /// under `balanced`: every pair of draws is enumerated.
    fn chance_first(all: &[Terms], w: &Weights, i: usize) -> f64 {
        let mut n = 0;
        let first = order(Policy::Balanced, all, w, None, |k| {
            n = k;
            0
        })[0];
        if n == 0 {
            return if first == i { 1.0 } else { 0.0 };
        }
        let mut hits = 0;
        for a in 0..n {
            for b in 0..n {
                let mut draws = [a, b].into_iter();
                let pick = order(Policy::Balanced, all, w, None, |_| {
                    draws.next().unwrap_or(0)
                })[0];
                hits += usize::from(pick == i);
            }
        }
        hits as f64 / (n * n) as f64
    }

    #[test]
    fn balanced_weighs_gaps_in_absolute_units() {
        // $0.002 a call ($2 per 1,000 calls) dearer; 1.5 s slower.
        let cheap = t(1_000_000, 1000.0, 70.0);
        let w = Weights::default();
        // A 2-point gap is worth less than $2 per 1,000 calls and 0.75 points of latency.
        let dear = t(3_000_000, 2500.0, 72.0);
        assert_eq!(
            order(Policy::Balanced, &[cheap, dear], &w, None, |_| 0)[0],
            0
        );
        // A 20-point gap is worth it.
        let better = t(3_000_000, 2500.0, 90.0);
        assert_eq!(
            order(Policy::Balanced, &[cheap, better], &w, None, |_| 0)[0],
            1
        );
        let u = utilities(&[cheap, better], &w);
        assert!((u[0] - (70.0 - 1.0 - 0.5)).abs() < 1e-9, "{u:?}");
        assert!((u[1] - (90.0 - 3.0 - 1.25)).abs() < 1e-9, "{u:?}");
    }

    proptest! {
        /// Doubling a candidate's price never raises its chance of being picked.
        #[test]
        fn doubling_a_price_never_raises_the_chance_of_being_picked(
            all in proptest::collection::vec(terms(), 1..7),
            pick in any::<proptest::sample::Index>(),
            cost in 0.0f64..5.0, latency in 0.0f64..5.0, quality in 0.0f64..5.0,
        ) {
            prop_assume!(cost + latency + quality > 0.0);
            let w = Weights { cost, latency, quality };
            let i = pick.index(all.len());
            let mut dearer = all.clone();
            dearer[i].cost_nanos = all[i].cost_nanos.map(|c| c.saturating_mul(2));
            prop_assert!(chance_first(&dearer, &w, i) <= chance_first(&all, &w, i));
        }

        /// With cost and latency fixed, a quality gap flips `balanced` to the dearer
        /// candidate exactly when it outweighs the cost and latency gaps.
        #[test]
        fn a_bigger_quality_gap_can_flip_the_choice(
            cost_gap in 1_000u64..10_000_000,
            latency_gap in 0.0f64..3000.0,
            q in 10.0f64..40.0,
        ) {
            let w = Weights::default();
            let cheap = t(1_000, 500.0, q);
            let price = w.cost * cost_gap as f64 / 1e6 + w.latency * latency_gap / 1000.0;
            let dear = |gap: f64| t(1_000 + cost_gap, 500.0 + latency_gap, q + gap);
            let small = price * 0.5;
            let big = price * 1.5 + 1.0;
            prop_assert_eq!(order(Policy::Balanced, &[cheap, dear(small)], &w, None, |_| 0)[0], 0);
            prop_assert_eq!(order(Policy::Balanced, &[cheap, dear(big)], &w, None, |_| 0)[0], 1);
        }
    }

    #[test]
    fn integer_keys_order_as_the_floats_do() {
        let keys = [
            f64::NEG_INFINITY,
            -1e300,
            -1.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.5,
            1e300,
            f64::INFINITY,
        ];
        for a in keys {
            for b in keys {
                let (x, y) = (ordered_key(&[a; 4]), ordered_key(&[b; 4]));
                assert_eq!(x.cmp(&y), cmp_f64(a, b), "{a} {b}");
            }
        }
        assert_eq!(ordered_key(&[0.0, 1.0, f64::NAN, 2.0]), None);
    }

    #[test]
    fn a_nan_term_orders_as_the_floats_do() {
        let mut odd = t(10, 100.0, 50.0);
        odd.latency_ms = f64::NAN;
        let all = [
            t(10, 200.0, 50.0),
            odd,
            t(5, 300.0, 70.0),
            t(10, 100.0, 50.0),
        ];
        for policy in Policy::ALL {
            for floor in [None, Some(60.0)] {
                let w = Weights::default();
                assert_eq!(
                    order(policy, &all, &w, floor, |n| n / 2),
                    stable_order(policy, &all, &w, floor, |n| n / 2),
                    "{policy}"
                );
            }
        }
    }

    proptest! {
        /// The unstable sort with the index as last term, the leaders as a prefix and the
        /// pick rotated to the front order exactly as the stable sort did, ties included
        /// (few distinct values make many).
        #[test]
        fn order_is_the_stable_sort(
            all in proptest::collection::vec(
                (0u64..4, 0u8..3, 0u8..4, 0i64..3).prop_map(|(c, l, q, f)| Terms {
                    cost_nanos: Some(c * 1000).filter(|_| c < 3),
                    latency_ms: 100.0 * f64::from(l),
                    quality: 20.0 * f64::from(q),
                    in_flight: f,
                }),
                0..12,
            ),
            floor in proptest::option::of(0.0f64..80.0),
            seed in any::<u64>(),
        ) {
            for policy in Policy::ALL {
                let w = Weights::default();
                let draw = |mut state: u64| move |n: usize| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 33) as usize % n.max(1)
                };
                prop_assert_eq!(
                    order(policy, &all, &w, floor, draw(seed)),
                    stable_order(policy, &all, &w, floor, draw(seed)),
                    "{}", policy
                );
            }
        }

        /// `cmp_keyed` is the derived order of `([u64; 4], usize)`.
        #[test]
        fn cmp_keyed_is_the_derived_order(
            a in (proptest::array::uniform4(0u64..3), 0usize..3),
            b in (proptest::array::uniform4(0u64..3), 0usize..3),
        ) {
            prop_assert_eq!(cmp_keyed(&a, &b), a.cmp(&b));
        }

        /// A policy never picks a candidate that another dominates on every term it weighs.
        #[test]
        fn never_picks_a_dominated_candidate(all in proptest::collection::vec(terms(), 1..12), seed in any::<u64>()) {
            let mut state = seed;
            for policy in Policy::ALL {
                let chosen = order(policy, &all, &Weights::default(), None, |n| { state = state.wrapping_mul(6364136223846793005).wrapping_add(1); (state >> 33) as usize % n.max(1) })[0];
                for other in &all {
                    prop_assert!(!dominates(policy, other, &all[chosen]), "{policy} chose {:?} dominated by {:?}", all[chosen], other);
                }
            }
        }
    }
}
