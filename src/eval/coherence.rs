//! Structure coherence (issue 18): how much a structure map looks like shapes rather than
//! speckle. Per map, the mean number of 4-connected components per non-empty cluster: 1 when
//! every cluster is one solid region, up to the cluster size when every position of a cluster
//! sits apart from its mates. Per stage, the mean over a set of maps; stage 0 (one cluster, the
//! whole grid) is always 1 and is left out.
//!
//! The figure is read next to the same figure for the tokenizer's maps of real images: those are
//! what the structure branch learns to reproduce, so "within 1.2× of real" is the goal, not 1.

/// Mean number of 4-connected components per non-empty cluster of `labels`, a `side × side`
/// map in raster order. Errors when the map does not have `side²` labels.
pub fn components_per_cluster(labels: &[u32], side: usize) -> Result<f64, String> {
    if side == 0 || labels.len() != side * side {
        return Err(format!("a structure map of {} labels is not {side}×{side}", labels.len()));
    }
    let n = labels.len();
    let mut seen = vec![false; n];
    let mut components = 0usize;
    let mut clusters: Vec<u32> = labels.to_vec();
    clusters.sort_unstable();
    clusters.dedup();
    let mut stack = Vec::new();
    for start in 0..n {
        if seen[start] {
            continue;
        }
        components += 1;
        seen[start] = true;
        stack.push(start);
        while let Some(p) = stack.pop() {
            let (r, c) = (p / side, p % side);
            let mut visit = |q: usize| {
                if !seen[q] && labels[q] == labels[p] {
                    seen[q] = true;
                    stack.push(q);
                }
            };
            if r > 0 {
                visit(p - side);
            }
            if r + 1 < side {
                visit(p + side);
            }
            if c > 0 {
                visit(p - 1);
            }
            if c + 1 < side {
                visit(p + 1);
            }
        }
    }
    Ok(components as f64 / clusters.len() as f64)
}

/// Per stage 1..S−1: the mean components per cluster over `maps` (each a full set of stage maps
/// of one image, `maps[image][stage]`). Errors name the image and stage of a malformed map.
pub fn stage_coherence(maps: &[Vec<Vec<u32>>], side: usize) -> Result<Vec<(usize, f64)>, String> {
    let stages = maps.iter().map(|m| m.len()).min().unwrap_or(0);
    let mut out = Vec::new();
    for s in 1..stages {
        let mut sum = 0.0;
        for (i, m) in maps.iter().enumerate() {
            sum += components_per_cluster(&m[s], side).map_err(|e| format!("image {i}, stage {s}: {e}"))?;
        }
        out.push((s, sum / maps.len() as f64));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solid_halves_are_one_component_each() {
        // Left half 0, right half 1 on a 4×4 grid.
        let m: Vec<u32> = (0..16).map(|p| u32::from(p % 4 >= 2)).collect();
        assert_eq!(components_per_cluster(&m, 4).unwrap(), 1.0);
    }

    #[test]
    fn a_checkerboard_is_all_speckle() {
        let m: Vec<u32> = (0..16).map(|p| ((p / 4 + p % 4) % 2) as u32).collect();
        assert_eq!(components_per_cluster(&m, 4).unwrap(), 8.0, "every position is its own component");
    }

    #[test]
    fn diagonal_neighbours_do_not_connect() {
        // Cluster 1 at (0,0) and (1,1): two components; cluster 0 the rest: one.
        let mut m = vec![0u32; 16];
        m[0] = 1;
        m[5] = 1;
        assert_eq!(components_per_cluster(&m, 4).unwrap(), 1.5);
    }

    #[test]
    fn stages_are_averaged_over_images_and_bad_maps_are_named() {
        let solid: Vec<u32> = (0..16).map(|p| u32::from(p >= 8)).collect();
        let checker: Vec<u32> = (0..16).map(|p| ((p / 4 + p % 4) % 2) as u32).collect();
        let maps = vec![vec![vec![0; 16], solid.clone()], vec![vec![0; 16], checker]];
        assert_eq!(stage_coherence(&maps, 4).unwrap(), vec![(1, 4.5)]);
        let bad = vec![vec![vec![0; 16], vec![0; 15]]];
        let e = stage_coherence(&bad, 4).unwrap_err();
        assert!(e.contains("image 0, stage 1") && e.contains("15 labels"), "{e}");
    }
}
