//! Exponential moving average of module weights (method §4.8: decay 0.9999, every step; the
//! sampler uses the EMA weights). The average lives on the plain (non-autodiff) device.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val().without_autodiff();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

struct Blend {
    values: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(cur) = self.values.next() else { return param };
        let decay = self.decay;
        param.map(|ema| {
            let dims = ema.dims();
            let ema = ema.without_autodiff();
            let cur = cur.to_device(&ema.device()).reshape(dims);
            ema.mul_scalar(decay) + cur.mul_scalar(1.0 - decay)
        })
    }
}

/// `ema ← decay·ema + (1 − decay)·current`, parameter by parameter (same module structure).
pub fn ema_update<M: Module>(ema: M, current: &M, decay: f64) -> M {
    let mut c = Collect(Vec::new());
    current.visit(&mut c);
    ema.map(&mut Blend { values: c.0.into_iter(), decay })
}
