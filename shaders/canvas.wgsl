// Main-canvas compositor of nvg-studio: one full-rect draw inside egui's render pass.
//
// This file is the GPU twin of `composite_cpu` in src/ui/canvas.rs; the two follow the same steps
// in the same order with the same integer arithmetic, so both paths give the same 8-bit pixels
// (exactly, on a non-sRGB target such as eframe's default Bgra8Unorm). Change them together.
//
// Inputs:
//   * `image`: the decoded stage image, image_side², RGB in .rgb (Rgba8Uint, read with
//     textureLoad: nearest-neighbour by construction, no sampler or filtering involved).
//   * `cells`: one texel per latent position, grid_side² (Rgba32Uint):
//       x = cluster label, y = cluster colour 0xBBGGRR, z = class tint 0xBBGGRR,
//       w = flags (bit 0 locked, bit 1 pending, bit 2 hovered cluster, bit 3 has class tint).
//   * `u`: where the canvas lies in framebuffer pixels and the global settings.
//
// Geometry is worked out on whole output pixels: a pixel (ix, iy) of a W×H canvas belongs to
// latent cell (ix·g / W, iy·g / H) and image texel (ix·s / W, iy·s / H) (integer division), and
// its distance to a cell edge is counted in whole pixels. Blends are `mix8`: 8-bit channels and a
// weight out of 256.

struct Uniforms {
    /// Top-left corner of the canvas in framebuffer pixels (may be negative when scrolled off).
    origin_px: vec2<i32>,
    /// Canvas size W×H in framebuffer pixels.
    size_px: vec2<u32>,
    grid_side: u32,
    image_side: u32,
    /// Weight of the cluster-colour fill, 0..=256.
    opacity256: u32,
    /// Bit 0: draw cluster boundaries. Bit 1: the target is sRGB (write linear values).
    flags: u32,
};

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var image: texture_2d<u32>;
@group(0) @binding(2) var cells: texture_2d<u32>;

const CELL_LOCKED: u32 = 1u;
const CELL_PENDING: u32 = 2u;
const CELL_HOVERED: u32 = 4u;
const CELL_TINTED: u32 = 8u;

const DRAW_BOUNDARIES: u32 = 1u;
const SRGB_TARGET: u32 = 2u;

// Keep in sync with the constants of the same names in src/ui/canvas.rs.
const HOVER_BRIGHTEN: u32 = 64u;   // 25 % white over the hovered cluster
const TINT_MIX: u32 = 128u;        // 50 % class-map colour
const HATCH_STRIPE: u32 = 4u;      // stripe width along an axis, pixels
const HATCH_DARK: u32 = 115u;      // 45 % black on dark stripes
const HATCH_LIGHT: u32 = 51u;      // 20 % white on light stripes
const PENDING_TINT: u32 = 90u;     // 35 % white over the stroke being drawn
const LINE_HALF: u32 = 1u;         // boundary / pending outline: 1 px each side of the edge
const HOVER_HALF: u32 = 2u;        // hovered outline: 2 px each side
const BOUNDARY_RGB: vec3<u32> = vec3<u32>(20u, 20u, 20u);
const PENDING_OUTLINE_RGB: vec3<u32> = vec3<u32>(255u, 255u, 255u);
const HOVER_OUTLINE_RGB: vec3<u32> = vec3<u32>(255u, 220u, 60u);

/// Vertex pass: one triangle that covers the whole viewport egui set for this callback (the
/// canvas rect clamped to the screen); the fragment pass works from framebuffer coordinates, so
/// no varyings are needed.
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let x = f32(i32(i & 1u) * 4 - 1);
    let y = f32(i32(i >> 1u) * 4 - 1);
    return vec4<f32>(x, y, 0.0, 1.0);
}

fn mix8(a: vec3<u32>, b: vec3<u32>, t: u32) -> vec3<u32> {
    return (a * (256u - t) + b * t + vec3<u32>(128u)) >> vec3<u32>(8u);
}

fn unpack_rgb(c: u32) -> vec3<u32> {
    return vec3<u32>(c & 0xffu, (c >> 8u) & 0xffu, (c >> 16u) & 0xffu);
}

/// First output pixel of cell `c` along an axis of `n` pixels split into `g` cells.
fn first_px(c: u32, n: u32, g: u32) -> u32 {
    return (c * n + g - 1u) / g;
}

fn cell_at(cx: u32, cy: u32) -> vec4<u32> {
    return textureLoad(cells, vec2<u32>(cx, cy), 0);
}

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let lo = c / 12.92;
    let hi = pow((c + 0.055) / 1.055, vec3<f32>(2.4));
    return select(hi, lo, c <= vec3<f32>(0.04045));
}

/// Fragment pass, per output pixel, in this order:
///   1. image texel (nearest), 2. cluster-colour fill at `opacity256`, 3. hovered cluster
///   brightened, 4. class-map tint, 5. locked cells hatched (45° dark/light stripes),
///   6. pending stroke tinted white, 7. edges: dark cluster boundaries (if enabled), white
///   outline around the pending stroke, thick yellow outline around the hovered cluster
///   (later ones win). Canvas borders count as "outside" for the last two outlines only.
@fragment
fn fs_main(@builtin(position) frag: vec4<f32>) -> @location(0) vec4<f32> {
    let local = vec2<i32>(floor(frag.xy)) - u.origin_px;
    let w = u.size_px.x;
    let h = u.size_px.y;
    if (local.x < 0 || local.y < 0 || u32(local.x) >= w || u32(local.y) >= h) {
        discard;
    }
    let ix = u32(local.x);
    let iy = u32(local.y);
    let g = u.grid_side;
    let s = u.image_side;

    let cx = ix * g / w;
    let cy = iy * g / h;
    let texel = textureLoad(image, vec2<u32>(ix * s / w, iy * s / h), 0);
    let cell = cell_at(cx, cy);
    let flags = cell.w;

    var out = mix8(texel.rgb, unpack_rgb(cell.y), u.opacity256);
    if ((flags & CELL_HOVERED) != 0u) {
        out = mix8(out, vec3<u32>(255u), HOVER_BRIGHTEN);
    }
    if ((flags & CELL_TINTED) != 0u) {
        out = mix8(out, unpack_rgb(cell.z), TINT_MIX);
    }
    if ((flags & CELL_LOCKED) != 0u) {
        if (((ix + iy) / HATCH_STRIPE) % 2u == 0u) {
            out = mix8(out, vec3<u32>(0u), HATCH_DARK);
        } else {
            out = mix8(out, vec3<u32>(255u), HATCH_LIGHT);
        }
    }
    if ((flags & CELL_PENDING) != 0u) {
        out = mix8(out, vec3<u32>(255u), PENDING_TINT);
    }

    // Distances (whole pixels) to the four edges of this cell, and the neighbour across each.
    var dist = array<u32, 4>(
        ix - first_px(cx, w, g),              // left
        first_px(cx + 1u, w, g) - 1u - ix,    // right
        iy - first_px(cy, h, g),              // top
        first_px(cy + 1u, h, g) - 1u - iy,    // bottom
    );
    var has = array<bool, 4>(cx > 0u, cx + 1u < g, cy > 0u, cy + 1u < g);
    var boundary = false;
    var pending_edge = false;
    var hover_edge = false;
    for (var k = 0u; k < 4u; k++) {
        var n = vec4<u32>(cell.x, 0u, 0u, 0u); // outside the canvas: same label, no flags
        if (has[k]) {
            var nx = cx;
            var ny = cy;
            switch k {
                case 0u: { nx = cx - 1u; }
                case 1u: { nx = cx + 1u; }
                case 2u: { ny = cy - 1u; }
                default: { ny = cy + 1u; }
            }
            n = cell_at(nx, ny);
        }
        let d = dist[k];
        let differ = n.w ^ flags;
        if ((u.flags & DRAW_BOUNDARIES) != 0u && n.x != cell.x && d < LINE_HALF) {
            boundary = true;
        }
        if ((differ & CELL_PENDING) != 0u && d < LINE_HALF) {
            pending_edge = true;
        }
        if ((differ & CELL_HOVERED) != 0u && d < HOVER_HALF) {
            hover_edge = true;
        }
    }
    if (boundary) { out = BOUNDARY_RGB; }
    if (pending_edge) { out = PENDING_OUTLINE_RGB; }
    if (hover_edge) { out = HOVER_OUTLINE_RGB; }

    var rgb = vec3<f32>(out) / 255.0;
    if ((u.flags & SRGB_TARGET) != 0u) {
        rgb = srgb_to_linear(rgb);
    }
    return vec4<f32>(rgb, 1.0);
}
