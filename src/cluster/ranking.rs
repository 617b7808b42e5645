//! Which replica should lead which app: rendezvous hashing over (app, live node ids), with
//! bounded loads so that the apps spread evenly.
//!
//! Every (app, node) pair gets a score, the first 8 bytes of SHA-256(`app` 0 `node`): every
//! replica computes the same scores from the same names, with no coordination. Pure rendezvous
//! would give each app to its top-scoring node, but with few apps the top choices bunch up (six
//! apps on three nodes land 4/1/1 about a third of the time). So the pairs are taken in score
//! order and an app goes to its best node that leads fewer than ⌈apps / nodes⌉ apps: its
//! *preferred* node. An app's ranking is its preferred node, then the others by score.
//!
//! Rankings only decide who campaigns first (and which leader hands an app over when the spread
//! is uneven); safety rests on the election's fencing alone, so replicas that briefly disagree
//! (a node list seen at different moments, different configured apps) cost spread, never
//! correctness.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The score of `node` for `app`.
pub fn score(app: &str, node: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(app.as_bytes());
    hash.update([0]);
    hash.update(node.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The most apps one node is preferred for: ⌈apps / nodes⌉ (0 without nodes).
pub fn capacity(apps: usize, nodes: usize) -> usize {
    if nodes == 0 { 0 } else { apps.div_ceil(nodes) }
}

/// Every app's ranking of `nodes` (see the module docs); `nodes` may be in any order and hold
/// duplicates.
pub fn rankings(apps: &[String], nodes: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut pairs: Vec<(u64, &str, &str)> = apps
        .iter()
        .flat_map(|app| {
            nodes
                .iter()
                .map(move |node| (score(app, node), app.as_str(), *node))
        })
        .collect();
    // Best score first; ties (never in practice) by name, so every replica orders alike.
    pairs.sort_unstable_by(|a, b| b.cmp(a));
    let cap = capacity(apps.len(), nodes.len());
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    let mut preferred: BTreeMap<&str, &str> = BTreeMap::new();
    for &(_, app, node) in &pairs {
        if preferred.contains_key(app) {
            continue;
        }
        let count = load.entry(node).or_default();
        if *count < cap {
            *count += 1;
            preferred.insert(app, node);
        }
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (app, node) in &preferred {
        out.insert((*app).to_owned(), vec![(*node).to_owned()]);
    }
    for &(_, app, node) in &pairs {
        if let Some(ranking) = out.get_mut(app)
            && ranking[0] != node
        {
            ranking.push(node.to_owned());
        }
    }
    out
}

/// `node`'s place in `app`'s ranking (0: preferred); one past the end when it is not ranked.
pub fn rank(rankings: &BTreeMap<String, Vec<String>>, app: &str, node: &str) -> usize {
    rankings.get(app).map_or(0, |ranking| {
        ranking
            .iter()
            .position(|n| n == node)
            .unwrap_or(ranking.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn scores_are_pinned() {
        // Every replica of every version must agree: a change here is a protocol change.
        assert_eq!(score("rides", "node-a"), 0xe4c6_3533_bf2a_5699);
        assert_ne!(score("rides", "node-a"), score("rides", "node-b"));
        assert_ne!(
            score("ab", "c"),
            score("a", "bc"),
            "the separator keeps pairs apart"
        );
    }

    #[test]
    fn every_app_ranks_every_node_once_and_preferences_respect_the_capacity() {
        for (apps, nodes) in [(6, 3), (7, 3), (1, 3), (3, 1), (10, 4), (40, 7)] {
            let apps = names("app-", apps);
            let nodes = names("node-", nodes);
            let rankings = rankings(&apps, &nodes);
            assert_eq!(rankings.len(), apps.len());
            let mut load: BTreeMap<&str, usize> = BTreeMap::new();
            for ranking in rankings.values() {
                let mut sorted = ranking.clone();
                sorted.sort();
                assert_eq!(sorted, nodes, "{ranking:?}");
                *load.entry(ranking[0].as_str()).or_default() += 1;
            }
            let cap = capacity(apps.len(), nodes.len());
            assert!(load.values().all(|&l| l <= cap), "{load:?} over {cap}");
        }
    }

    #[test]
    fn the_same_names_in_any_order_give_the_same_rankings() {
        let apps = names("app-", 6);
        let nodes = names("node-", 3);
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        shuffled.push(nodes[0].clone());
        assert_eq!(rankings(&apps, &nodes), rankings(&apps, &shuffled));
    }

    #[test]
    fn a_lone_node_is_first_for_everything_and_strangers_rank_last() {
        let apps = names("app-", 4);
        let alone = rankings(&apps, &names("n", 1));
        assert!(apps.iter().all(|app| rank(&alone, app, "n0") == 0));
        assert_eq!(rank(&alone, "app-0", "stranger"), 1);
        assert!(rankings(&apps, &[]).is_empty());
    }
}
