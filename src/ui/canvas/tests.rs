//! Tests of the canvas: the CPU composite pixel by pixel, and the GPU path against it where an
//! adapter exists.

use super::*;
use super::cpu::*;
use super::gpu::*;
use std::time::{Duration, Instant};

const G: usize = 4;
const S: usize = 8;
const OUT: usize = 64; // 16 px per cell, 8 px per image texel

struct Fixture {
    image: Vec<u8>,
    labels: Vec<u32>,
    lock: Vec<bool>,
    pending: Vec<bool>,
}

/// Left half label 0, right half label 1 (stage 1); a varied image.
fn fixture() -> Fixture {
    let image = (0..S * S * 3).map(|i| (i * 37 % 251) as u8).collect();
    let labels = (0..G * G).map(|i| u32::from(i % G >= G / 2)).collect();
    Fixture {
        image,
        labels,
        lock: vec![false; G * G],
        pending: vec![false; G * G],
    }
}

fn layers(f: &Fixture) -> CanvasLayers<'_> {
    CanvasLayers {
        image: &f.image,
        image_side: S,
        labels: &f.labels,
        grid_side: G,
        stage: 1,
        lock: &f.lock,
        pending: &f.pending,
        class_tint: None,
        hovered: None,
        overlay_opacity: 0.0,
        boundaries: true,
    }
}

fn px(img: &egui::ColorImage, x: usize, y: usize) -> [u8; 3] {
    let c = img.pixels[y * img.width() + x];
    [c.r(), c.g(), c.b()]
}

fn image_px(f: &Fixture, x: usize, y: usize) -> [u8; 3] {
    let (tx, ty) = (x * S / OUT, y * S / OUT);
    let i = (ty * S + tx) * 3;
    [f.image[i], f.image[i + 1], f.image[i + 2]]
}

/// One frame of a 64×64-point canvas; what it uploaded to the canvas texture, if anything.
fn canvas_frame(ctx: &egui::Context, canvas: &mut CpuCanvas, layers: &CanvasLayers) -> Option<egui::ColorImage> {
    let out = ctx.run_ui(egui::RawInput::default(), |ui| {
        let rect = egui::Rect::from_min_size(egui::pos2(0.0, 0.0), egui::vec2(OUT as f32, OUT as f32));
        canvas.show(ui, rect, layers);
    });
    let id = canvas.texture_id()?;
    let delta = out.textures_delta.set.get(&id)?.last()?;
    match &delta.image {
        egui::ImageData::Color(c) => {
            let img: &egui::ColorImage = c;
            Some(img.clone())
        }
    }
}

/// Frames until the canvas shows its newest layers; the last picture uploaded on the way.
fn until_current(ctx: &egui::Context, canvas: &mut CpuCanvas, layers: &CanvasLayers) -> egui::ColorImage {
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < Duration::from_secs(20) {
        if let Some(img) = canvas_frame(ctx, canvas, layers) {
            last = Some(img);
        }
        if canvas.is_current() {
            return last.expect("a picture was uploaded");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the compositor did not deliver within 20 s");
}

#[test]
fn cpu_canvas_composites_off_the_frame_and_shows_the_newest_request() {
    let ctx = egui::Context::default();
    let mut canvas = CpuCanvas::new();
    let f = fixture();
    let a = layers(&f);
    // The first picture is composited at once (there is nothing to show meanwhile).
    let first = canvas_frame(&ctx, &mut canvas, &a).expect("the first picture is uploaded in its frame");
    assert_eq!(first, composite_cpu_sized(&a, [OUT, OUT]));
    assert!(canvas.is_current());
    // Unchanged layers: no new composite.
    assert!(canvas_frame(&ctx, &mut canvas, &a).is_none());
    assert!(canvas.is_current());
    // From then on the frame that sees new layers only asks for them: nothing is composited
    // or uploaded in it, and the frames until the picture arrives keep what was there.
    let mut e = fixture();
    e.lock[3] = true;
    let a2 = layers(&e);
    assert!(canvas_frame(&ctx, &mut canvas, &a2).is_none());
    assert!(!canvas.is_current());
    let shown = until_current(&ctx, &mut canvas, &a2);
    assert_eq!(shown, composite_cpu_sized(&a2, [OUT, OUT]), "the compositor's picture is the reference composite");

    // Two changes in a row (a brush stroke growing): what ends up shown is the newest.
    let mut g = fixture();
    g.pending[1] = true;
    let b = layers(&g);
    assert!(canvas_frame(&ctx, &mut canvas, &b).is_none(), "no upload in the frame that asks");
    let mut h = fixture();
    h.pending[1] = true;
    h.pending[2] = true;
    h.lock[7] = true;
    let c = layers(&h);
    canvas_frame(&ctx, &mut canvas, &c);
    let shown = until_current(&ctx, &mut canvas, &c);
    assert_eq!(shown, composite_cpu_sized(&c, [OUT, OUT]));
    assert_ne!(shown, composite_cpu_sized(&b, [OUT, OUT]));

    // A change undone before its composite arrives: the picture up stays, and the outdated
    // composite is never shown when it lands.
    assert!(canvas_frame(&ctx, &mut canvas, &b).is_none());
    assert!(!canvas.is_current());
    assert!(canvas_frame(&ctx, &mut canvas, &c).is_none());
    assert!(canvas.is_current(), "back to the picture that is up");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(300) {
        assert!(canvas_frame(&ctx, &mut canvas, &c).is_none(), "the outdated composite must not be uploaded");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn dimensions() {
    let f = fixture();
    let img = composite_cpu(&layers(&f), OUT);
    assert_eq!(img.size, [OUT, OUT]);
    assert_eq!(img.pixels.len(), OUT * OUT);
    assert_eq!(composite_cpu_sized(&layers(&f), [40, 24]).size, [40, 24]);
}

#[test]
fn opacity_zero_shows_the_image_exactly() {
    let f = fixture();
    let img = composite_cpu(&layers(&f), OUT);
    // Inside cell (0, 0), away from every edge; and everywhere off the boundary.
    for (x, y) in [(5, 5), (7, 9), (20, 40), (60, 60)] {
        assert_eq!(px(&img, x, y), image_px(&f, x, y), "pixel ({x}, {y})");
    }
}

#[test]
fn opacity_one_shows_the_cluster_colour() {
    let f = fixture();
    let img = composite_cpu(
        &CanvasLayers {
            overlay_opacity: 1.0,
            ..layers(&f)
        },
        OUT,
    );
    assert_eq!(px(&img, 5, 5), cluster_colour(0, 1));
    assert_eq!(px(&img, 60, 5), cluster_colour(1, 1));
}

#[test]
fn boundary_only_between_different_labels() {
    let f = fixture();
    let img = composite_cpu(&layers(&f), OUT);
    let line = BOUNDARY_RGB.map(|v| v as u8);
    // Cells 1 and 2 (labels 0 | 1) meet at x = 32: pixels 31 and 32 form the line.
    assert_eq!(px(&img, 31, 5), line);
    assert_eq!(px(&img, 32, 5), line);
    assert_ne!(px(&img, 30, 5), line);
    // Cells 0 and 1 (both label 0) meet at x = 16: no line.
    assert_eq!(px(&img, 15, 5), image_px(&f, 15, 5));
    assert_eq!(px(&img, 16, 5), image_px(&f, 16, 5));
    // Switched off: no line.
    let off = composite_cpu(
        &CanvasLayers {
            boundaries: false,
            ..layers(&f)
        },
        OUT,
    );
    assert_eq!(px(&off, 31, 5), image_px(&f, 31, 5));
}

#[test]
fn locked_positions_are_hatched() {
    let mut f = fixture();
    f.lock[0] = true;
    let plain = composite_cpu(&layers(&f.clone_unlocked()), OUT);
    let locked = composite_cpu(&layers(&f), OUT);
    let (mut darker, mut lighter) = (0, 0);
    for y in 0..16 {
        for x in 0..16 {
            let (a, b) = (px(&plain, x, y), px(&locked, x, y));
            let (sa, sb) = (
                a.iter().map(|&v| v as u32).sum::<u32>(),
                b.iter().map(|&v| v as u32).sum::<u32>(),
            );
            if sb < sa {
                darker += 1;
            }
            if sb > sa {
                lighter += 1;
            }
        }
    }
    assert!(
        darker > 50 && lighter > 50,
        "hatch: {darker} darker, {lighter} lighter pixels"
    );
    // Unlocked cells are untouched.
    assert_eq!(px(&plain, 20, 20), px(&locked, 20, 20));
}

impl Fixture {
    fn clone_unlocked(&self) -> Fixture {
        Fixture {
            image: self.image.clone(),
            labels: self.labels.clone(),
            lock: vec![false; self.lock.len()],
            pending: self.pending.clone(),
        }
    }
}

#[test]
fn hovered_cluster_is_brightened_and_outlined() {
    let f = fixture();
    let base = CanvasLayers {
        overlay_opacity: 0.5,
        ..layers(&f)
    };
    let plain = composite_cpu(&base, OUT);
    let hover = composite_cpu(
        &CanvasLayers {
            hovered: Some(1),
            ..base
        },
        OUT,
    );
    let sum = |p: [u8; 3]| p.iter().map(|&v| v as u32).sum::<u32>();
    // Inside the hovered cluster: brighter in every channel that can be.
    let (a, b) = (px(&plain, 50, 20), px(&hover, 50, 20));
    assert!(sum(b) > sum(a), "{a:?} -> {b:?}");
    // The other cluster is untouched away from the edge.
    assert_eq!(px(&plain, 10, 20), px(&hover, 10, 20));
    // Outline: 2 px each side of the edge at x = 32 and along the canvas border.
    let outline = HOVER_OUTLINE_RGB.map(|v| v as u8);
    for x in 30..34 {
        assert_eq!(px(&hover, x, 20), outline, "x = {x}");
    }
    assert_eq!(px(&hover, 63, 20), outline);
    assert_ne!(px(&hover, 29, 20), outline);
}

#[test]
fn pending_stroke_is_tinted() {
    let mut f = fixture();
    f.pending[G + 1] = true; // cell (1, 1): pixels 16..32
    let img = composite_cpu(&layers(&f), OUT);
    let (a, b) = (image_px(&f, 24, 24), px(&img, 24, 24));
    assert_eq!(
        b,
        mix8(a.map(u32::from), [255; 3], PENDING_TINT).map(|v| v as u8)
    );
    assert_eq!(px(&img, 16, 24), [255, 255, 255]); // outline
}

#[test]
fn inconsistent_layers_give_a_placeholder() {
    let f = fixture();
    let bad = CanvasLayers {
        labels: &f.labels[..3],
        ..layers(&f)
    };
    assert!(layers(&f).is_consistent());
    assert!(!bad.is_consistent());
    let no_tint = [[0u8; 3]; 2];
    assert!(
        !CanvasLayers {
            class_tint: Some(&no_tint),
            ..layers(&f)
        }
        .is_consistent()
    );
    assert!(
        !CanvasLayers {
            image: &f.image[1..],
            ..layers(&f)
        }
        .is_consistent()
    );
    assert!(
        !CanvasLayers {
            grid_side: 0,
            ..layers(&f)
        }
        .is_consistent()
    );
    // Drawing them gives the placeholder (debug builds assert first).
    if !cfg!(debug_assertions) {
        let img = composite_cpu(&bad, 16);
        assert!(img.pixels.iter().all(|&c| c == PLACEHOLDER));
    }
}

/// Renders `layers` with the shader into an offscreen Rgba8Unorm target of `target` pixels,
/// the canvas at `origin` with `size` pixels (egui-style: viewport = rect clamped to the
/// target), and reads the target back as RGB rows.
#[cfg(feature = "wgpu")]
fn render_offscreen(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    layers: &CanvasLayers,
    target: [u32; 2],
    origin: [i32; 2],
    size: [u32; 2],
) -> Vec<[u8; 3]> {
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut renderer = CanvasRenderer::new(device, format, 1, None);
    let id = egui::Id::unique("gpu-test");
    let data = GpuData::new(layers).expect("valid layers");
    renderer.update(device, queue, id, &data);
    renderer.write_uniforms(queue, id, &data, origin, size);

    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: target[0],
            height: target[1],
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = texture.create_view(&Default::default());
    let row = (target[0] * 4).div_ceil(256) * 256;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (row * target[1]) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: None,
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color {
                        r: 1.0,
                        g: 0.0,
                        b: 1.0,
                        a: 1.0,
                    }),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        let clamp = |v: i32, hi: u32| v.clamp(0, hi as i32) as f32;
        let (l, t) = (clamp(origin[0], target[0]), clamp(origin[1], target[1]));
        let r = clamp(origin[0] + size[0] as i32, target[0]);
        let b = clamp(origin[1] + size[1] as i32, target[1]);
        pass.set_viewport(l, t, r - l, b - t, 0.0, 1.0);
        renderer.draw(&mut pass, id);
    }
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &texture,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: Some(target[1]),
            },
        },
        wgpu::Extent3d {
            width: target[0],
            height: target[1],
            depth_or_array_layers: 1,
        },
    );
    queue.submit([encoder.finish()]);
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map readback buffer"));
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("poll");
    let bytes = buffer
        .slice(..)
        .get_mapped_range()
        .expect("mapped readback buffer");
    let mut out = Vec::with_capacity((target[0] * target[1]) as usize);
    for y in 0..target[1] {
        for x in 0..target[0] {
            let i = (y * row + x * 4) as usize;
            out.push([bytes[i], bytes[i + 1], bytes[i + 2]]);
        }
    }
    out
}

/// The shader gives the same pixels as `composite_cpu_sized`, for several sizes (cells of
/// unequal width included) and a canvas partly off the target. Skipped (passes) when wgpu
/// finds no adapter; with Mesa's lavapipe installed it runs on the CPU.
#[cfg(feature = "wgpu")]
#[test]
fn gpu_matches_cpu_when_an_adapter_exists() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = match pollster::block_on(instance.request_adapter(&Default::default())) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skipped: no wgpu adapter ({e})");
            return;
        }
    };
    let Ok((device, queue)) = pollster::block_on(adapter.request_device(&Default::default()))
    else {
        eprintln!("skipped: no wgpu device");
        return;
    };
    eprintln!("adapter: {:?}", adapter.get_info().name);

    let mut f = fixture();
    f.lock[5] = true;
    f.lock[6] = true;
    f.pending[9] = true;
    f.pending[10] = true;
    let tint: Vec<[u8; 3]> = (0..G * G).map(|i| [(i * 40) as u8, 90, 200]).collect();
    let base = layers(&f);
    let variants = [
        CanvasLayers {
            overlay_opacity: 0.4,
            hovered: Some(1),
            ..base
        },
        CanvasLayers {
            overlay_opacity: 0.0,
            boundaries: false,
            ..base
        },
        CanvasLayers {
            overlay_opacity: 1.0,
            class_tint: Some(&tint),
            hovered: Some(0),
            ..base
        },
    ];
    // (target size, canvas origin, canvas size)
    let placements: [([u32; 2], [i32; 2], [u32; 2]); 4] = [
        ([64, 64], [0, 0], [64, 64]),
        ([90, 80], [7, 3], [70, 70]),
        ([120, 50], [5, 2], [101, 45]),
        ([60, 60], [-13, -7], [64, 64]),
    ];
    for (v, layers) in variants.iter().enumerate() {
        for &(target, origin, size) in &placements {
            let gpu = render_offscreen(&device, &queue, layers, target, origin, size);
            let cpu = composite_cpu_sized(layers, [size[0] as usize, size[1] as usize]);
            let mut mismatches = 0;
            let mut first = None;
            for ty in 0..target[1] as i32 {
                for tx in 0..target[0] as i32 {
                    let (x, y) = (tx - origin[0], ty - origin[1]);
                    let inside = x >= 0 && y >= 0 && x < size[0] as i32 && y < size[1] as i32;
                    let want = if inside {
                        px(&cpu, x as usize, y as usize)
                    } else {
                        [255, 0, 255]
                    };
                    let got = gpu[(ty * target[0] as i32 + tx) as usize];
                    if got != want {
                        mismatches += 1;
                        first.get_or_insert((tx, ty, got, want));
                    }
                }
            }
            assert_eq!(
                mismatches, 0,
                "variant {v}, target {target:?}, origin {origin:?}, size {size:?}: first (x, y, gpu, cpu) = {first:?}"
            );
        }
    }
}
