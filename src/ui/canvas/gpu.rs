//! The GPU path: `shaders/canvas.wgsl` through egui's wgpu paint callback, one set of
//! textures and uniforms per canvas id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;
use eframe::egui_wgpu;
use eframe::wgpu;

use super::*;
use super::cpu::rect_px;

pub(super) const SHADER: &str = include_str!("../../../shaders/canvas.wgsl");

/// Size of the shader's `Uniforms` (8 × 4 bytes).
pub(super) const UNIFORM_SIZE: usize = 32;

/// Instances not painted for this long are dropped (their textures freed).
pub(super) const INSTANCE_TTL: Duration = Duration::from_secs(10);

/// The GPU path's shared resources, kept in egui-wgpu's `callback_resources`: the pipeline and
/// bind group layout, plus per-canvas textures and uniforms (one [`Instance`] per canvas id, so
/// several canvases can be painted in one frame). Images are read with `textureLoad` (exact
/// nearest-neighbour), so no sampler is needed.
pub struct CanvasRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    srgb_target: bool,
    instances: HashMap<egui::Id, Instance>,
}

/// One canvas's GPU data.
pub(super) struct Instance {
    uniform: wgpu::Buffer,
    image: wgpu::Texture,
    cells: wgpu::Texture,
    bind_group: wgpu::BindGroup,
    image_key: Option<u64>,
    cells_key: Option<u64>,
    uniform_bytes: Option<[u8; UNIFORM_SIZE]>,
    last_used: Instant,
}

/// Registers the GPU path with eframe's wgpu renderer; call once (e.g. in the app's creation
/// with `cc.wgpu_render_state`). Assumes eframe's default render pass: no MSAA, no depth buffer
/// (`NativeOptions::multisampling` and `depth_buffer` left at 0); otherwise use [`register_with`].
pub fn register(render_state: &egui_wgpu::RenderState) {
    register_with(render_state, 1, None);
}

/// [`register`] for a render pass with `msaa_samples` samples and the given depth format (they
/// must match eframe's `NativeOptions::multisampling` / `depth_buffer`).
pub fn register_with(
    render_state: &egui_wgpu::RenderState,
    msaa_samples: u32,
    depth_stencil_format: Option<wgpu::TextureFormat>,
) {
    let renderer = CanvasRenderer::new(
        &render_state.device,
        render_state.target_format,
        msaa_samples,
        depth_stencil_format,
    );
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(renderer);
}

impl CanvasRenderer {
    pub(super) fn new(
        device: &wgpu::Device,
        target_format: wgpu::TextureFormat,
        msaa_samples: u32,
        depth_stencil_format: Option<wgpu::TextureFormat>,
    ) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("nvg_canvas"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let texture_entry = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Uint,
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("nvg_canvas"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(UNIFORM_SIZE as u64),
                    },
                    count: None,
                },
                texture_entry(1),
                texture_entry(2),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("nvg_canvas"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("nvg_canvas"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: Default::default(),
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: depth_stencil_format.map(|format| wgpu::DepthStencilState {
                format,
                depth_write_enabled: Some(false),
                depth_compare: Some(wgpu::CompareFunction::Always),
                stencil: Default::default(),
                bias: Default::default(),
            }),
            multisample: wgpu::MultisampleState {
                count: msaa_samples.max(1),
                mask: !0,
                alpha_to_coverage_enabled: false,
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
                compilation_options: Default::default(),
            }),
            multiview_mask: None,
            cache: None,
        });
        Self {
            pipeline,
            layout,
            srgb_target: target_format.is_srgb(),
            instances: HashMap::new(),
        }
    }

    fn make_texture(
        device: &wgpu::Device,
        side: u32,
        format: wgpu::TextureFormat,
        label: &str,
    ) -> wgpu::Texture {
        device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width: side,
                height: side,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
    }

    fn make_bind_group(
        &self,
        device: &wgpu::Device,
        uniform: &wgpu::Buffer,
        image: &wgpu::Texture,
        cells: &wgpu::Texture,
    ) -> wgpu::BindGroup {
        let image_view = image.create_view(&Default::default());
        let cells_view = cells.create_view(&Default::default());
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("nvg_canvas"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&image_view),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(&cells_view),
                },
            ],
        })
    }

    /// Brings the instance `id` up to date with `data`: (re)creates textures whose size changed
    /// and uploads only what changed since the last frame.
    pub(super) fn update(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, id: egui::Id, data: &GpuData) {
        let now = Instant::now();
        self.instances
            .retain(|k, inst| *k == id || now.duration_since(inst.last_used) < INSTANCE_TTL);

        let sizes_ok = self.instances.get(&id).is_some_and(|inst| {
            inst.image.width() == data.image_side && inst.cells.width() == data.grid_side
        });
        if !sizes_ok {
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("nvg_canvas_uniforms"),
                size: UNIFORM_SIZE as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let image = Self::make_texture(
                device,
                data.image_side,
                wgpu::TextureFormat::Rgba8Uint,
                "nvg_canvas_image",
            );
            let cells = Self::make_texture(
                device,
                data.grid_side,
                wgpu::TextureFormat::Rgba32Uint,
                "nvg_canvas_cells",
            );
            let bind_group = self.make_bind_group(device, &uniform, &image, &cells);
            self.instances.insert(
                id,
                Instance {
                    uniform,
                    image,
                    cells,
                    bind_group,
                    image_key: None,
                    cells_key: None,
                    uniform_bytes: None,
                    last_used: now,
                },
            );
        }
        let Some(inst) = self.instances.get_mut(&id) else {
            return;
        };
        inst.last_used = now;

        let write = |texture: &wgpu::Texture, bytes: &[u8], bytes_per_texel: u32| {
            let side = texture.width();
            queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                bytes,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(bytes_per_texel * side),
                    rows_per_image: Some(side),
                },
                wgpu::Extent3d {
                    width: side,
                    height: side,
                    depth_or_array_layers: 1,
                },
            );
        };
        if inst.image_key != Some(data.image_key) {
            write(&inst.image, &data.image_rgba, 4);
            inst.image_key = Some(data.image_key);
        }
        if inst.cells_key != Some(data.cells_key) {
            write(&inst.cells, &data.cells, 16);
            inst.cells_key = Some(data.cells_key);
        }
    }

    pub(super) fn write_uniforms(
        &mut self,
        queue: &wgpu::Queue,
        id: egui::Id,
        data: &GpuData,
        origin: [i32; 2],
        size: [u32; 2],
    ) {
        let srgb = self.srgb_target;
        let Some(inst) = self.instances.get_mut(&id) else {
            return;
        };
        let flags =
            if data.boundaries { DRAW_BOUNDARIES } else { 0 } | if srgb { SRGB_TARGET } else { 0 };
        let words: [u32; 8] = [
            origin[0] as u32,
            origin[1] as u32,
            size[0],
            size[1],
            data.grid_side,
            data.image_side,
            data.opacity256,
            flags,
        ];
        let mut bytes = [0u8; UNIFORM_SIZE];
        for (chunk, w) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        if inst.uniform_bytes != Some(bytes) {
            queue.write_buffer(&inst.uniform, 0, &bytes);
            inst.uniform_bytes = Some(bytes);
        }
    }
}

impl CanvasRenderer {
    /// Draws instance `id` into the current viewport (the canvas rect, clamped to the target).
    pub(super) fn draw(&self, render_pass: &mut wgpu::RenderPass<'_>, id: egui::Id) {
        let Some(inst) = self.instances.get(&id) else {
            return;
        };
        render_pass.set_pipeline(&self.pipeline);
        render_pass.set_bind_group(0, &inst.bind_group, &[]);
        render_pass.draw(0..3, 0..1);
    }
}

/// Owned, packed copy of the layers for one frame's callback.
pub(super) struct GpuData {
    image_rgba: Vec<u8>,
    image_side: u32,
    image_key: u64,
    /// `grid_side²` texels of 4 little-endian u32 (label, colour, tint, flags).
    cells: Vec<u8>,
    grid_side: u32,
    cells_key: u64,
    opacity256: u32,
    boundaries: bool,
}

impl GpuData {
    pub(super) fn new(layers: &CanvasLayers) -> Option<Self> {
        validate(layers)?;
        let cells = pack_cells(layers);
        let mut image_rgba = Vec::with_capacity(layers.image.len() / 3 * 4);
        for px in layers.image.chunks_exact(3) {
            image_rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
        let mut cell_bytes = Vec::with_capacity(cells.len() * 16);
        for c in &cells {
            for w in [c.label, c.colour, c.tint, c.flags] {
                cell_bytes.extend_from_slice(&w.to_le_bytes());
            }
        }
        Some(Self {
            image_rgba,
            image_side: layers.image_side as u32,
            image_key: image_key(layers),
            cells_key: cells_key(layers, &cells),
            cells: cell_bytes,
            grid_side: layers.grid_side as u32,
            opacity256: opacity256(layers.overlay_opacity),
            boundaries: layers.boundaries,
        })
    }
}

/// The paint callback: uploads in `prepare`, draws one triangle in `paint`.
pub struct CanvasCallback {
    id: egui::Id,
    rect: egui::Rect,
    data: Arc<GpuData>,
}

impl egui_wgpu::CallbackTrait for CanvasCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(renderer) = resources.get_mut::<CanvasRenderer>() {
            let (origin, size) = rect_px(self.rect, screen.pixels_per_point);
            renderer.update(device, queue, self.id, &self.data);
            renderer.write_uniforms(queue, self.id, &self.data, origin, size);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(renderer) = resources.get::<CanvasRenderer>() {
            renderer.draw(render_pass, self.id);
        }
    }
}

/// Paints the canvas into `rect` with the GPU path (requires [`register`] and the wgpu renderer;
/// without them nothing is drawn). Uses `ui.scope_id()` to tell canvases apart; for more than one
/// canvas in the same `Ui` use [`paint_gpu_with_id`]. Inconsistent layers give a grey placeholder.
pub fn paint_gpu(ui: &mut egui::Ui, rect: egui::Rect, layers: &CanvasLayers) {
    let id = ui.scope_id();
    paint_gpu_with_id(ui, id, rect, layers);
}

/// [`paint_gpu`] with an explicit id for this canvas's GPU resources.
pub fn paint_gpu_with_id(ui: &mut egui::Ui, id: egui::Id, rect: egui::Rect, layers: &CanvasLayers) {
    match GpuData::new(layers) {
        Some(data) => {
            let callback = CanvasCallback {
                id,
                rect,
                data: Arc::new(data),
            };
            ui.painter()
                .add(egui_wgpu::Callback::new_paint_callback(rect, callback));
        }
        None => {
            ui.painter().rect_filled(rect, 0.0, PLACEHOLDER);
        }
    }
}

