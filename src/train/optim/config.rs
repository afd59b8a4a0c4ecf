//! kohya's optimizer choice: `--optimizer_type NAME` (case-insensitive, or `--use_8bit_adam`) and
//! `--optimizer_args key=value …`, values as Python literals (`True`, `None`, `0.01`, `0.9,0.99`, `(0.9, 0.99)`).

use super::{
    Adafactor, AdafactorConfig, AdamW, AdamW8bit, AdamW8bitConfig, AdamWConfig, DAdaptAdam,
    DAdaptAdamConfig, OptimError, Optimizer, Prodigy, ProdigyConfig,
};

/// An optimizer and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerConfig {
    AdamW(AdamWConfig),
    AdamW8bit(AdamW8bitConfig),
    Adafactor(AdafactorConfig),
    DAdaptAdam(DAdaptAdamConfig),
    Prodigy(ProdigyConfig),
}

/// A parsed Python literal of an optimizer argument.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Bool(bool),
    None,
    Num(f64),
    Tuple(Vec<f64>),
}

impl OptimizerConfig {
    /// kohya's name of the optimizer.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AdamW(_) => "AdamW",
            Self::AdamW8bit(_) => "AdamW8bit",
            Self::Adafactor(_) => "Adafactor",
            Self::DAdaptAdam(_) => "DAdaptAdam",
            Self::Prodigy(_) => "Prodigy",
        }
    }

    /// The optimizer of `--optimizer_type` (kohya's default `AdamW`, or `AdamW8bit` with `--use_8bit_adam`) with
    /// its `--optimizer_args`; the defaults are the reference packages'.
    pub fn from_kohya(optimizer_type: &str, args: &[String]) -> Result<Self, OptimError> {
        let mut config = match optimizer_type.to_ascii_lowercase().as_str() {
            "" | "adamw" => Self::AdamW(AdamWConfig::default()),
            "adamw8bit" => Self::AdamW8bit(AdamW8bitConfig::default()),
            "adafactor" => Self::Adafactor(AdafactorConfig::default()),
            "dadaptadam" | "dadaptation" => Self::DAdaptAdam(DAdaptAdamConfig::default()),
            "prodigy" => Self::Prodigy(ProdigyConfig::default()),
            _ => return Err(OptimError::UnknownOptimizer(optimizer_type.to_string())),
        };
        let mut warmup_init = false;
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| bad(arg, "expected key=value"))?;
            let value =
                parse_literal(value.trim()).ok_or_else(|| bad(arg, "not a Python literal"))?;
            let key = key.trim();
            warmup_init |= key == "warmup_init" && value == Literal::Bool(true);
            config
                .set(key, &value)
                .map_err(|reason| bad(arg, &reason))?;
        }
        if let Self::Adafactor(c) = &mut config {
            c.relative_step |= warmup_init;
        }
        Ok(config)
    }

    /// The optimizer, checked.
    pub fn build(&self) -> Result<Box<dyn Optimizer>, OptimError> {
        Ok(match *self {
            Self::AdamW(c) => Box::new(AdamW::new(c)?),
            Self::AdamW8bit(c) => Box::new(AdamW8bit::new(c)?),
            Self::Adafactor(c) => Box::new(Adafactor::new(c)?),
            Self::DAdaptAdam(c) => Box::new(DAdaptAdam::new(c)?),
            Self::Prodigy(c) => Box::new(Prodigy::new(c)?),
        })
    }

    /// Sets one argument; the error is the reason.
    fn set(&mut self, key: &str, v: &Literal) -> Result<(), String> {
        match self {
            Self::AdamW(c) => set_adam(key, v, &mut c.betas, &mut c.eps, &mut c.weight_decay)?,
            Self::AdamW8bit(c) => match key {
                "min_8bit_size" => c.min_8bit_size = count(v)?,
                _ => set_adam(key, v, &mut c.betas, &mut c.eps, &mut c.weight_decay)?,
            },
            Self::Adafactor(c) => set_adafactor(c, key, v)?,
            Self::DAdaptAdam(c) => match key {
                "decouple" => c.decouple = flag(v)?,
                "use_bias_correction" => c.use_bias_correction = flag(v)?,
                "d0" => c.d0 = num(v)?,
                "growth_rate" => c.growth_rate = num(v)?,
                _ => set_adam(key, v, &mut c.betas, &mut c.eps, &mut c.weight_decay)?,
            },
            Self::Prodigy(c) => set_prodigy(c, key, v)?,
        }
        Ok(())
    }
}

fn set_adam(
    key: &str,
    v: &Literal,
    betas: &mut (f64, f64),
    eps: &mut f64,
    wd: &mut f64,
) -> Result<(), String> {
    match key {
        "betas" => *betas = pair(v)?,
        "eps" => *eps = num(v)?,
        "weight_decay" => *wd = num(v)?,
        _ => return Err(format!("not an argument of this optimizer ({key})")),
    }
    Ok(())
}

fn set_adafactor(c: &mut AdafactorConfig, key: &str, v: &Literal) -> Result<(), String> {
    match key {
        "eps" => c.eps = pair(v)?,
        "clip_threshold" => c.clip_threshold = num(v)?,
        "decay_rate" => c.decay_rate = num(v)?,
        "beta1" => {
            c.beta1 = if *v == Literal::None {
                None
            } else {
                Some(num(v)?)
            }
        }
        "weight_decay" => c.weight_decay = num(v)?,
        "scale_parameter" => c.scale_parameter = flag(v)?,
        "relative_step" => c.relative_step = flag(v)?,
        "warmup_init" => c.warmup_init = flag(v)?,
        _ => return Err(format!("not an argument of Adafactor ({key})")),
    }
    Ok(())
}

fn set_prodigy(c: &mut ProdigyConfig, key: &str, v: &Literal) -> Result<(), String> {
    match key {
        "beta3" => {
            c.beta3 = if *v == Literal::None {
                None
            } else {
                Some(num(v)?)
            }
        }
        "decouple" => c.decouple = flag(v)?,
        "use_bias_correction" => c.use_bias_correction = flag(v)?,
        "safeguard_warmup" => c.safeguard_warmup = flag(v)?,
        "d0" => c.d0 = num(v)?,
        "d_coef" => c.d_coef = num(v)?,
        "growth_rate" => c.growth_rate = num(v)?,
        "slice_p" => c.slice_p = count(v)?,
        _ => set_adam(key, v, &mut c.betas, &mut c.eps, &mut c.weight_decay)?,
    }
    Ok(())
}

fn bad(arg: &str, reason: &str) -> OptimError {
    OptimError::BadArg {
        arg: arg.to_string(),
        reason: reason.to_string(),
    }
}

fn num(v: &Literal) -> Result<f64, String> {
    match v {
        Literal::Num(x) => Ok(*x),
        Literal::Bool(b) => Ok(f64::from(u8::from(*b))),
        other => Err(format!("expected a number, got {other:?}")),
    }
}

fn count(v: &Literal) -> Result<usize, String> {
    let x = num(v)?;
    if x >= 0.0 && x.fract() == 0.0 {
        Ok(x as usize)
    } else {
        Err(format!("expected a non-negative integer, got {x}"))
    }
}

fn flag(v: &Literal) -> Result<bool, String> {
    match v {
        Literal::Bool(b) => Ok(*b),
        other => Err(format!("expected True or False, got {other:?}")),
    }
}

fn pair(v: &Literal) -> Result<(f64, f64), String> {
    match v {
        Literal::Tuple(x) if x.len() == 2 => Ok((x[0], x[1])),
        other => Err(format!("expected two numbers, got {other:?}")),
    }
}

/// `True`/`False`/`None`, a number (`inf` as `float('inf')`), or numbers separated by commas, optionally in
/// brackets.
fn parse_literal(s: &str) -> Option<Literal> {
    match s {
        "True" => return Some(Literal::Bool(true)),
        "False" => return Some(Literal::Bool(false)),
        "None" => return Some(Literal::None),
        _ => {}
    }
    let inner = s
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .or_else(|| s.strip_prefix('[').and_then(|x| x.strip_suffix(']')));
    if inner.is_some() || s.contains(',') {
        let items = inner
            .unwrap_or(s)
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty());
        return items
            .map(parse_number)
            .collect::<Option<Vec<_>>>()
            .map(Literal::Tuple);
    }
    parse_number(s).map(Literal::Num)
}

fn parse_number(s: &str) -> Option<f64> {
    match s {
        "float('inf')" | "float(\"inf\")" | "inf" => Some(f64::INFINITY),
        _ => s.replace('_', "").parse().ok(),
    }
}
