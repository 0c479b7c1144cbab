//! Class colours that can be told apart: a categorical palette chosen by greedy max–min
//! distance in CIEDE2000 (the method of Glasbey, Heijden, Toh and Gray 2007, implemented here):
//! candidates on an sRGB grid, kept away from the canvas's white background and dark boundary
//! lines, each new colour the candidate farthest from every colour chosen so far. The first 32
//! are at least [`MIN_DELTA_E_32`] apart (measured 17.1; the colour-difference formula is CIE's,
//! after Sharma, Wu and Dalal 2005), where the earlier hue wheel's closest pair was 3.0 apart.

use std::sync::OnceLock;

/// How many distinct colours the palette holds before it repeats.
pub const PALETTE_SIZE: usize = 64;

/// The smallest CIEDE2000 distance between any two of the first 32 colours (checked by a test).
pub const MIN_DELTA_E_32: f64 = 17.0;

/// CIELAB (D65) of an sRGB colour.
pub fn srgb_to_lab([r, g, b]: [u8; 3]) -> [f64; 3] {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    let (r, g, b) = (lin(r), lin(g), lin(b));
    let x = (0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b) / 0.950_47;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = (0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b) / 1.088_83;
    let d: f64 = 6.0 / 29.0;
    let f = |t: f64| if t > d * d * d { t.cbrt() } else { t / (3.0 * d * d) + 4.0 / 29.0 };
    [116.0 * f(y) - 16.0, 500.0 * (f(x) - f(y)), 200.0 * (f(y) - f(z))]
}

/// The CIEDE2000 colour difference of two CIELAB colours (k_L = k_C = k_H = 1).
pub fn delta_e_2000(p: [f64; 3], q: [f64; 3]) -> f64 {
    let [l1, a1, b1] = p;
    let [l2, a2, b2] = q;
    let pow7 = |v: f64| v.powi(7);
    let c_bar = ((a1.hypot(b1)) + (a2.hypot(b2))) / 2.0;
    let g = 0.5 * (1.0 - (pow7(c_bar) / (pow7(c_bar) + pow7(25.0))).sqrt());
    let (a1p, a2p) = ((1.0 + g) * a1, (1.0 + g) * a2);
    let (c1p, c2p) = (a1p.hypot(b1), a2p.hypot(b2));
    let hue = |b: f64, a: f64| if b == 0.0 && a == 0.0 { 0.0 } else { b.atan2(a).to_degrees().rem_euclid(360.0) };
    let (h1p, h2p) = (hue(b1, a1p), hue(b2, a2p));
    let dl = l2 - l1;
    let dc = c2p - c1p;
    let dh = if c1p * c2p == 0.0 {
        0.0
    } else {
        let d = h2p - h1p;
        if d.abs() <= 180.0 { d } else if d > 180.0 { d - 360.0 } else { d + 360.0 }
    };
    let dh_big = 2.0 * (c1p * c2p).sqrt() * (dh / 2.0).to_radians().sin();
    let l_bar = (l1 + l2) / 2.0;
    let c_bar_p = (c1p + c2p) / 2.0;
    let h_bar = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    let cosd = |deg: f64| deg.to_radians().cos();
    let t = 1.0 - 0.17 * cosd(h_bar - 30.0) + 0.24 * cosd(2.0 * h_bar) + 0.32 * cosd(3.0 * h_bar + 6.0)
        - 0.20 * cosd(4.0 * h_bar - 63.0);
    let d_theta = 30.0 * (-((h_bar - 275.0) / 25.0).powi(2)).exp();
    let r_c = 2.0 * (pow7(c_bar_p) / (pow7(c_bar_p) + pow7(25.0))).sqrt();
    let s_l = 1.0 + 0.015 * (l_bar - 50.0).powi(2) / (20.0 + (l_bar - 50.0).powi(2)).sqrt();
    let s_c = 1.0 + 0.045 * c_bar_p;
    let s_h = 1.0 + 0.015 * c_bar_p * t;
    let r_t = -(2.0 * d_theta).to_radians().sin() * r_c;
    let (x, y, z) = (dl / s_l, dc / s_c, dh_big / s_h);
    (x * x + y * y + z * z + r_t * y * z).sqrt()
}

/// The palette: [`PALETTE_SIZE`] sRGB colours, most distinct first.
pub fn palette() -> &'static [[u8; 3]] {
    static P: OnceLock<Vec<[u8; 3]>> = OnceLock::new();
    P.get_or_init(|| {
        let levels: Vec<u8> = (0..=255u32).step_by(17).map(|v| v as u8).collect();
        let mut cand: Vec<([u8; 3], [f64; 3])> = Vec::new();
        for &r in &levels {
            for &g in &levels {
                for &b in &levels {
                    let lab = srgb_to_lab([r, g, b]);
                    // Readable as a tint over an image and next to dark boundary lines.
                    if (35.0..=88.0).contains(&lab[0]) {
                        cand.push(([r, g, b], lab));
                    }
                }
            }
        }
        // Distance of each candidate to the nearest colour already taken (the white background
        // and the dark boundary colour count as taken).
        let mut nearest: Vec<f64> = cand
            .iter()
            .map(|(_, lab)| delta_e_2000(*lab, srgb_to_lab([255, 255, 255])).min(delta_e_2000(*lab, srgb_to_lab([20, 20, 20]))))
            .collect();
        let mut out = Vec::with_capacity(PALETTE_SIZE);
        while out.len() < PALETTE_SIZE {
            // Ties go to the earlier candidate: the palette is the same on every run.
            let (best, _) = nearest.iter().enumerate().fold((0, f64::MIN), |acc, (i, &d)| if d > acc.1 { (i, d) } else { acc });
            let (rgb, lab) = cand[best];
            out.push(rgb);
            for (i, (_, l)) in cand.iter().enumerate() {
                nearest[i] = nearest[i].min(delta_e_2000(*l, lab));
            }
        }
        out
    })
}

/// The colour of class `class` (the palette repeats after [`PALETTE_SIZE`] classes).
pub fn class_colour(class: usize) -> [u8; 3] {
    let p = palette();
    p[class % p.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciede2000_matches_published_pairs() {
        // Pairs 1, 7 and 17 of the table of Sharma, Wu and Dalal (2005).
        for (p, q, want) in [
            ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
            ([50.0, 0.0, 0.0], [50.0, -1.0, 2.0], 2.3669),
            ([50.0, 2.5, 0.0], [73.0, 25.0, -18.0], 27.1492),
        ] {
            let got = delta_e_2000(p, q);
            assert!((got - want).abs() < 1e-3, "{p:?} {q:?}: {got} instead of {want}");
            assert!((delta_e_2000(q, p) - got).abs() < 1e-9, "symmetric");
        }
        assert_eq!(delta_e_2000([60.0, 10.0, 10.0], [60.0, 10.0, 10.0]), 0.0);
    }

    #[test]
    fn the_first_32_class_colours_are_far_apart_and_the_palette_is_stable() {
        let labs: Vec<[f64; 3]> = (0..32).map(|c| srgb_to_lab(class_colour(c))).collect();
        let mut min = f64::MAX;
        for i in 0..32 {
            for j in i + 1..32 {
                min = min.min(delta_e_2000(labs[i], labs[j]));
            }
        }
        assert!(min >= MIN_DELTA_E_32, "closest pair of the first 32 colours: ΔE00 {min:.1}");
        assert_eq!(palette(), palette());
        assert_eq!(class_colour(3), class_colour(3 + PALETTE_SIZE));
    }
}
